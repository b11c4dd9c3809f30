import json
import re
from pathlib import Path

from ray_ser.metrics import METRICS

SUFFIX = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def test_every_query_names_a_defined_metric():
    dash = json.loads(Path("dashboards/ray_ser.json").read_text())
    exported = {f"ray_{name}{s}" for name, (kind, _, _) in METRICS.items() for s in SUFFIX[kind]}
    queried = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"ray_ser_[a-z_]+", target["expr"]))
    assert queried and queried <= exported, queried - exported
    assert {m.rsplit("_", 1)[0] for m in queried} >= {"ray_ser_rows", "ray_ser_audio_seconds", "ray_ser_batch_seconds"}
