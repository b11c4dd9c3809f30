"""encoder_probe: a frozen pretrained speech encoder (Whisper's, shared with ASR) and a small trained head."""

from __future__ import annotations

from ray_ser.branches.base import BranchFamily
from ray_ser.branches.encoder_probe.settings import EncoderProbeBranch


def _load_predictor(checkpoint, branch, context):
    from ray_ser.branches.encoder_probe.model import EncoderProbePredictor

    return EncoderProbePredictor.load(checkpoint, context.cache_dir, branch.device)


def _training():
    from ray_ser.branches.encoder_probe.training import EncoderProbeTraining

    return EncoderProbeTraining()


def _reuses_asr_encoder(manifest, asr) -> bool:
    from ray_ser.branches.encoder_probe.settings import EncoderProbeTrain

    settings = manifest.parse(EncoderProbeTrain)
    spec = settings.encoder
    # ASR hands over only its last layer's pooled states; a probe of earlier blocks runs its own encoder.
    return (not spec.layers and spec.backend == "ctranslate2" and asr.engine == "faster-whisper" and asr.model == settings.base_model
            and asr.compute_type == spec.compute_type and asr.pad_to_30s == spec.pad_to_30s)


FAMILY = BranchFamily("encoder_probe", EncoderProbeBranch, _load_predictor, _training, speaker_normalisable=True,
                      reuses_asr_encoder=_reuses_asr_encoder)
