import numpy as np
from ray_ser.config import DecodeConfig
from ray_ser.models.asr.vad import SileroSegmenter
from tests.conftest import long_recording


def test_long_audio_splits_into_bounded_speech_segments(tmp_path):
    audio = long_recording(tmp_path, 75)
    segments = SileroSegmenter.load(DecodeConfig(max_segment_s=20)).predict_batch([audio])[0]
    assert len(segments) >= 4
    assert all(0 < s.end - s.start <= 20 for s in segments)
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))
    assert segments[-1].end <= audio.size / 16000 + 1e-6


def test_silence_has_no_segments():
    assert SileroSegmenter.load(DecodeConfig()).predict_batch([np.zeros(16000 * 40, np.float32)]) == [[]]
