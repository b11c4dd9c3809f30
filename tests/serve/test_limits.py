"""The endpoint's guards without Ray: bounded decoding, tokens, the media-URL rule and the Serve settings.

The same guards run behind real HTTP in test_safety.py; here each is pinned down case by case.
"""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
import soundfile as sf

from ray_ser.serve.http import ClientError
from tests.conftest import traced_peak_in_fresh_process


def _wav(rate: int, seconds: float, channels: int = 1, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        frames = int(rate * seconds)
        rng = np.random.default_rng(0)
        handle.writeframes((rng.standard_normal(frames * channels) * 3000).astype("<i2").tobytes())
    return buffer.getvalue()


def _encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("rate,channels,fmt", [(16_000, 1, "WAV"), (44_100, 2, "WAV"), (22_050, 1, "FLAC"),
                                               (48_000, 2, "OGG"), (16_000, 1, "MP3")])
def test_bounded_decoding_gives_the_labeling_jobs_samples(rate, channels, fmt):
    from ray_ser.io.audio import decode_audio
    from ray_ser.serve.audio import decode_clip

    t = np.arange(int(rate * 2.5)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    data = _encoded(np.stack([tone] * channels, axis=1) if channels > 1 else tone, rate, fmt,
                    "VORBIS" if fmt == "OGG" else None)
    served, job = decode_clip(data, max_seconds=20), decode_audio(data)
    if fmt == "MP3":  # mpg123 read block by block rounds a few samples differently, by one float32 step
        np.testing.assert_allclose(served, job, rtol=0, atol=1e-7)
    else:
        np.testing.assert_array_equal(served, job)


def test_a_wav_declaring_100_hz_is_refused_from_its_header_without_decoding(tmp_path):
    from ray_ser.serve.audio import decode_clip

    data = _wav(100, 2000)  # 400 KB that would be 2,000 s of 16 kHz audio (128 MB as float32)
    assert len(data) < 410_000
    (tmp_path / "slow.wav").write_bytes(data)
    (tmp_path / "short.wav").write_bytes(_wav(8000, 1))
    peak, outcome = traced_peak_in_fresh_process(
        "from ray_ser.serve.audio import decode_clip\n"
        f"decode_clip(open({str(tmp_path / 'short.wav')!r}, 'rb').read(), max_seconds=60)\n"  # one-time setup
        f"data = open({str(tmp_path / 'slow.wav')!r}, 'rb').read()",
        "decode_clip(data, max_seconds=60)")
    assert "status=413" in outcome and "2000.0 s" in outcome, outcome
    assert peak < 2_000_000, f"allocated {peak} bytes before refusing"
    with pytest.raises(ClientError) as err:
        decode_clip(_wav(100, 3), max_seconds=60)
    assert err.value.status == 422 and "100 Hz" in err.value.reason


def _streamed_webm(seconds: float) -> bytes:
    """Opus in WebM written as a live stream writes it: no duration anywhere in the file."""
    import av

    class Sink:  # not seekable, so the muxer cannot go back to write a duration
        def __init__(self):
            self.data = bytearray()

        def write(self, chunk):
            self.data += chunk
            return len(chunk)

    sink = Sink()
    with av.open(sink, mode="w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48_000)
        stream.layout = "mono"
        signal = (0.3 * np.sin(np.arange(int(48_000 * seconds)) / 7)).astype(np.float32)
        for i in range(0, signal.size, 960):
            frame = av.AudioFrame.from_ndarray(signal[None, i:i + 960], format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48_000, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(sink.data)


def test_a_file_without_a_duration_is_stopped_by_counting_what_it_decodes(tmp_path):
    import av

    from ray_ser.serve.audio import decode_clip

    data = _streamed_webm(30)
    with av.open(io.BytesIO(data)) as container:
        assert container.duration is None  # nothing to check before decoding
    (tmp_path / "long.webm").write_bytes(data)
    (tmp_path / "short.webm").write_bytes(_streamed_webm(1))
    peak, outcome = traced_peak_in_fresh_process(
        "from ray_ser.serve.audio import decode_clip\n"
        f"decode_clip(open({str(tmp_path / 'short.webm')!r}, 'rb').read(), max_seconds=10)\n"  # one-time setup
        f"data = open({str(tmp_path / 'long.webm')!r}, 'rb').read()",
        "decode_clip(data, max_seconds=10)")
    assert "status=413" in outcome and "longer than 10 s" in outcome, outcome
    assert peak < 10 * 16_000 * 4 * 1.5, f"allocated {peak} bytes for at most 10 s of samples"
    assert decode_clip(data, max_seconds=40).size == 30 * 16_000


def test_undecodable_silent_and_short_audio_are_422():
    from ray_ser.serve.audio import decode_clip

    for data, reason in ((b"RIFF\x00\x00not really a wav file at all", "could not be decoded"),
                         (_wav(16_000, 0.05), "at least 100 ms")):
        with pytest.raises(ClientError) as err:
            decode_clip(data, max_seconds=20)
        assert err.value.status == 422 and reason in err.value.reason, err.value.reason


def test_tokens_come_from_a_file_or_the_environment_and_are_never_shown(tmp_path, monkeypatch):
    from ray_ser.config import ConfigError
    from ray_ser.serve.auth import TokenGate, TokenSource

    monkeypatch.delenv("RS_TEST_TOKEN", raising=False)
    assert TokenSource("RS_TEST_TOKEN", None, required=False).resolve() is None
    with pytest.raises(ConfigError, match=r"\$RS_TEST_TOKEN holds no token"):
        TokenSource("RS_TEST_TOKEN", None, required=True).resolve()
    monkeypatch.setenv("RS_TEST_TOKEN", " from-env ")
    assert TokenSource("RS_TEST_TOKEN", None, required=True).resolve() == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert TokenSource("RS_TEST_TOKEN", str(tmp_path / "token"), required=True).resolve() == "from-file"
    with pytest.raises(ConfigError) as err:
        TokenSource("RS_TEST_TOKEN", str(tmp_path / "missing"), required=True).resolve()
    assert "missing" not in str(err.value)  # no path leaves, and certainly no token

    gate = TokenGate("from-file")
    assert "from-file" not in repr(gate)
    gate.check({"authorization": "Bearer from-file"})
    gate.check({"authorization": "bearer   from-file "})
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic from-file"},
                    {"authorization": "Bearer"}):
        with pytest.raises(ClientError) as err:
            gate.check(headers)
        assert err.value.status == 401 and "from-file" not in err.value.reason
    TokenGate(None).check({})  # no token configured: open


@pytest.mark.parametrize("url,allowed,ok", [
    ("data:audio/wav;base64,UklGRg==", (), True),
    ("file:///etc/passwd", ("etc",), False),
    ("ftp://media.example.org/a.wav", ("media.example.org",), False),
    ("http://media.example.org/a.wav", (), False),
    ("http://other.example.org/a.wav", ("media.example.org",), False),
    ("https://93.184.215.14/a.wav", ("93.184.215.14",), True),
    ("http://127.0.0.1:8000/a.wav", ("127.0.0.1",), False),
    ("http://[::1]/a.wav", ("::1",), False),
    ("http://169.254.169.254/latest/meta-data", ("169.254.169.254",), False),
    ("http://10.0.0.7/a.wav", ("10.0.0.7",), False),
    ("http://[::ffff:10.0.0.7]/a.wav", ("::ffff:10.0.0.7",), False),
    ("https://media.example.org/a.wav", ("media.example.org",), True),     # resolves to a public address
    ("https://internal.example.org/a.wav", ("internal.example.org",), False),  # resolves to a private one
])
def test_media_urls_are_fetched_only_from_listed_public_hosts(url, allowed, ok):
    from ray_ser.serve.media_urls import MediaUrlRefused, check_media_urls

    addresses = {"media.example.org": ["93.184.215.14"], "internal.example.org": ["93.184.215.14", "192.168.1.20"]}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                       {"type": "audio_url", "audio_url": {"url": url}}]}]}
    if ok:
        check_media_urls(body, allowed, resolve=addresses.__getitem__)
    else:
        with pytest.raises(MediaUrlRefused):
            check_media_urls(body, allowed, resolve=addresses.__getitem__)


def test_serve_settings_are_validated_where_they_are_written():
    from ray_ser.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="serve.*require_token: true"):
        load_config("demo", ["serve.host=0.0.0.0"])
    assert load_config("demo", ["serve.host=0.0.0.0", "serve.require_token=true"]).serve.require_token
    production = load_config("production")
    assert production.serve.host == "0.0.0.0" and production.serve.require_token
    with pytest.raises(ConfigError, match="Serve replicas must not hold GPUs"):
        load_config("demo", ["branches.speech.serve.num_gpus=1"])
    with pytest.raises(ConfigError, match="no batch ever fills"):
        load_config("demo", ["serve.asr.max_batch_size=16", "serve.asr.max_ongoing_requests=8"])


def test_the_builder_reads_every_deployment_setting():
    from ray_ser.config import load_config
    from ray_ser.serve.app import batch_options, deployment_options, http_options

    cfg = load_config("production")
    options = deployment_options(cfg)
    assert set(options) == {"ingress", "asr", "probe", *(f"branch_{n}" for n in cfg.branches)}
    assert options["branch_selm"]["ray_actor_options"] == {"num_cpus": 4, "num_gpus": 2}
    assert options["asr"]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4,
                                                    "target_ongoing_requests": 16}
    assert options["ingress"]["max_queued_requests"] == 256
    assert batch_options(cfg.serve.asr) == {"max_batch_size": 32, "batch_wait_timeout_s": 0.02}
    assert http_options(cfg) == {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 60}
