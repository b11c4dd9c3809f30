"""Whisper base's CTranslate2 model.bin read without CTranslate2: torch encoders equal CTranslate2's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_ser.models.pretrained.ct2_whisper import (WINDOW_FRAMES, clip_window_frames, load_qwen2_audio_encoder,
                                                   load_whisper_encoder, read_ct2_model, tower_frame_states,
                                                   whisper_encoder_shape, whisper_encoder_state_dict)

# Measured (bench/selm_equality.py on 6 real clips, and these tests' clips): max |torch - ct2| 1.4e-3 to
# 1.8e-3 (30 s window) and 7e-4 to 9.5e-4 (clip + 2 s) on states whose largest value is ~24; mean
# |diff| 2.4e-6. CTranslate2 float32 and torch read the same float16 weights; the rest is summation order.
ATOL = 5e-3
MEAN_ATOL = 1e-4


def _window(mel: np.ndarray, frames: int) -> np.ndarray:
    """Pad or cut a log-mel to a window, as WhisperCT2 does."""
    padded = np.pad(mel, ((0, 0), (0, max(0, frames - mel.shape[-1]))))[:, :frames]
    return np.ascontiguousarray(padded[None], dtype=np.float32)


@pytest.fixture(scope="module")
def ct2_encoder(whisper_dir):
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    model = ctranslate2.models.Whisper(str(whisper_dir), compute_type="float32", intra_threads=2)

    def encode(mel: np.ndarray) -> np.ndarray:
        out = model.encode(ctranslate2.StorageView.from_array(mel))
        return np.array(out.to_device(ctranslate2.Device.cpu))

    return encode, FeatureExtractor(feature_size=80)


def test_the_reader_indexes_the_whole_file(whisper_dir):
    model = read_ct2_model(whisper_dir)
    assert (model.binary_version, model.spec, model.revision, len(model.variables)) == (6, "WhisperSpec", 3, 212)
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    last = max(model.variables.values(), key=lambda v: v.offset)
    assert last.offset + last.num_bytes + 4 + sum(2 + len(k) + 1 + 2 + len(v) + 1 for k, v in model.aliases.items()) \
        == model.path.stat().st_size
    assert len(model.names("encoder/")) == 80
    assert whisper_encoder_shape(model).__dict__ == dict(num_mel_bins=80, d_model=512, layers=6, heads=8,
                                                         ffn_dim=2048, max_source_positions=1500)
    assert model.array("decoder/projection/weight").shape == (51865, 512)  # the alias resolves


def test_fused_qkv_is_split_and_the_key_has_no_bias(whisper_dir):
    model = read_ct2_model(whisper_dir)
    state = whisper_encoder_state_dict(model, positions=300)
    fused = model.array("encoder/layer_3/self_attention/linear_0/weight")
    parts = [state[f"layers.3.self_attn.{p}_proj.weight"].numpy() for p in "qkv"]
    assert np.array_equal(np.concatenate(parts), fused)
    assert "layers.3.self_attn.k_proj.bias" not in state and "layers.3.self_attn.q_proj.bias" in state
    assert state["embed_positions.weight"].shape == (300, 512)
    assert state["layer_norm.weight"].dtype == torch.float32


@pytest.mark.parametrize("window", ["30s", "clip+2s"])
def test_torch_whisper_encoder_equals_ctranslate2(whisper_dir, ct2_encoder, speech_clips, window):
    encode, features = ct2_encoder
    for audio in speech_clips[:3]:
        mel = features(audio, padding=0)
        frames = WINDOW_FRAMES if window == "30s" else clip_window_frames(mel.shape[-1])
        x = _window(mel, frames)
        expected = encode(x)
        with torch.no_grad():
            got = load_whisper_encoder(whisper_dir, frames)(torch.from_numpy(x)).last_hidden_state.numpy()
        assert got.shape == expected.shape == (1, frames // 2, 512)
        diff = np.abs(got - expected)
        assert diff.max() < ATOL and diff.mean() < MEAN_ATOL, (diff.max(), diff.mean())


def test_qwen2_audio_tower_holds_the_same_encoder(whisper_dir, ct2_encoder, speech_clips):
    """The tower norms after its 2x pool; without the pool (tower_frame_states) it is Whisper's encoder."""
    _, features = ct2_encoder
    x = torch.from_numpy(_window(features(speech_clips[0], padding=0), 600))
    tower = load_qwen2_audio_encoder(whisper_dir, 600)
    with torch.no_grad():
        whisper = load_whisper_encoder(whisper_dir, 600)(x).last_hidden_state
        pooled = tower(x).last_hidden_state
    assert torch.allclose(tower_frame_states(tower, x), whisper, atol=1e-5)
    assert pooled.shape == (1, 150, 512)  # one audio token per 40 ms


def test_bad_windows_are_refused(whisper_dir):
    with pytest.raises(ValueError, match="even"):
        load_whisper_encoder(whisper_dir, 601)
    with pytest.raises(ValueError, match="even"):
        load_qwen2_audio_encoder(whisper_dir, 3002)
    assert clip_window_frames(387) == 600 and clip_window_frames(2900) == 3000
