import pytest

from ray_ser.registry import ASR_ENGINES, Registry


def test_duplicates_rejected_and_unknown_named():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    with pytest.raises(KeyError, match="known: \\['a'\\]"):
        reg.get("b")


def test_asr_engines():
    assert list(ASR_ENGINES) == ["faster-whisper", "whisperx"]
