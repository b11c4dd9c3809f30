import pytest

from ray_ser.branches import FAMILIES
from ray_ser.models.asr import ASR_ENGINES
from ray_ser.registry import Registry


def test_duplicates_rejected_and_unknown_named():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    with pytest.raises(KeyError, match="known: \\['a'\\]"):
        reg.get("b")


def test_asr_engines():
    assert list(ASR_ENGINES) == ["faster-whisper", "whisperx"]


def test_branch_families():
    assert list(FAMILIES) == ["encoder_probe", "prosody", "speech_encoder", "speech_llm", "text_classifier"]
    for name in FAMILIES:
        assert FAMILIES.get(name).settings.model_fields["family"].default == name
