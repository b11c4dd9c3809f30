import numpy as np
import pytest

from ray_ser.io.audio import AudioDecodeError, decode_audio, from_bytes, slice_seconds, to_bytes
from tests.conftest import render_speech


@pytest.mark.parametrize("suffix,rate", [(".wav", 16000), (".wav", 22050), (".flac", 44100), (".mp3", 16000),
                                         (".ogg", 48000)])
def test_containers_decode_to_16k_mono(tmp_path, suffix, rate):
    path = render_speech("Testing one two three.", tmp_path / f"clip{suffix}", rate=rate)
    reference = decode_audio(render_speech("Testing one two three.", tmp_path / "ref.wav").read_bytes())
    audio = decode_audio(path.read_bytes())
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Same speech, whatever the container and rate: duration within codec padding.
    assert abs(audio.size - reference.size) / 16000 < 0.1
    assert np.abs(audio).max() > 0.05


def test_stereo_is_mixed_down(tmp_path):
    path = render_speech("Stereo.", tmp_path / "s.wav", fmt_args=())
    import soundfile as sf

    mono, _ = sf.read(path, dtype="float32")
    sf.write(tmp_path / "st.wav", np.stack([mono, mono], axis=1), 16000)
    assert np.allclose(decode_audio((tmp_path / "st.wav").read_bytes()), mono, atol=1e-4)


@pytest.mark.parametrize("data,reason", [(b"", "empty file"), (b"RIFF\x00\x00garbage" * 10, "not decodable"),
                                         (b"\x00" * 1000, "not decodable")])
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(AudioDecodeError, match=reason):
        decode_audio(data)


def test_slice_bounds():
    audio = np.arange(16000 * 3, dtype=np.float32)
    assert slice_seconds(audio, 1.0, 2.0).size == 16000
    assert slice_seconds(audio, 2.5, 99).size == 8000
    with pytest.raises(AudioDecodeError, match="past the end"):
        slice_seconds(audio, 5, 6)
    with pytest.raises(AudioDecodeError, match="bad segment bounds"):
        slice_seconds(audio, 2, 1)


def test_bytes_roundtrip():
    audio = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    assert np.array_equal(from_bytes(to_bytes(audio)), audio)
