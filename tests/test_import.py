import subprocess
import sys


def test_import_is_light():
    code = ("import sys, ray_ser, ray_ser.config, ray_ser.cli, ray_ser.pipeline, ray_ser.demo.synth, ray_ser.schema, ray_ser.branches;"
            "print(','.join(m for m in ('torch','ray','vllm','transformers','ctranslate2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
