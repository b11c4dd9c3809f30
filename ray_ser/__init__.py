"""ray_ser: distributed speech-emotion annotation on Ray.

Importing this package is cheap: it imports neither torch, vllm nor ray. The
public entry points live in their modules (``ray_ser.pipeline.run_label_job``,
``ray_ser.config.load_config``, ``ray_ser.synth.synthesize_corpus``).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
