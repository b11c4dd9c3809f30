"""A CTranslate2 Whisper ``model.bin`` read without CTranslate2, placed into torch encoders.

The offline Whisper base ships only as a CTranslate2 directory. Its encoder is the audio
tower we want for a speech LLM, and CTranslate2 exposes only the last layer's states, so
the weights are read here straight from the file and loaded into

- ``transformers.WhisperEncoder`` (:func:`load_whisper_encoder`): the same function as
  ``ctranslate2.models.Whisper.encode``;
- ``transformers.Qwen2AudioEncoder`` (:func:`load_qwen2_audio_encoder`): Qwen2-Audio's
  audio tower, a Whisper encoder that average-pools the states 2x *before* its final
  layer norm (Whisper norms, and has no pool). :func:`tower_frame_states` gives its
  states in Whisper's form (all layers, final norm, no pool), the ones CTranslate2 returns.

The file format (CTranslate2 ``models/model.cc``, ``specs/model_spec.py``; little-endian):
uint32 binary version, string spec name, uint32 spec revision, uint32 variable count, then
per variable a string name, uint8 rank, rank x uint32 dims, uint8 dtype (0 float32, 1 int8,
2 int16, 3 int32, 4 float16, 5 bfloat16), uint32 byte count and the raw data; then a uint32
alias count and (alias, target) string pairs. A string is a uint16 length (including a
trailing NUL) and the bytes.

Variable mapping, per encoder layer ``i`` (CTranslate2 -> transformers):

====================================================  =========================================
``encoder/conv{1,2}/{weight,bias}``                   ``conv{1,2}.{weight,bias}`` (same layout)
``encoder/position_encodings/encodings``              ``embed_positions.weight`` (sliced for a
                                                      shorter window)
``encoder/layer_i/self_attention/layer_norm/gamma``   ``layers.i.self_attn_layer_norm.weight``
  (``beta`` -> ``.bias``)
``encoder/layer_i/self_attention/linear_0/weight``    ``q_proj``, ``k_proj``, ``v_proj`` weights
  [3 d, d]: q, k, v stacked                           (rows 0:d, d:2d, 2d:3d)
``encoder/layer_i/self_attention/linear_0/bias``      ``q_proj.bias``, ``v_proj.bias``; the k
                                                      third is zeros (Whisper's key has no bias,
                                                      the converter fused a zero one): checked
``encoder/layer_i/self_attention/linear_1``           ``self_attn.out_proj``
``encoder/layer_i/ffn/layer_norm``                    ``final_layer_norm``
``encoder/layer_i/ffn/linear_{0,1}``                  ``fc1``, ``fc2``
``encoder/layer_norm``                                ``layer_norm``
``encoder/num_heads`` (int16 scalar)                  ``encoder_attention_heads``
====================================================  =========================================
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["CT2Variable", "CT2ModelFile", "read_ct2_model", "WhisperEncoderShape", "whisper_encoder_shape",
           "whisper_encoder_state_dict", "load_whisper_encoder", "load_qwen2_audio_encoder",
           "tower_hidden_states", "tower_frame_states", "clip_window_frames", "WINDOW_FRAMES", "FRAMES_PER_SECOND"]

WINDOW_FRAMES = 3000        # Whisper's 30 s window in mel frames (10 ms hop)
FRAMES_PER_SECOND = 100
_MARGIN_FRAMES = 2 * FRAMES_PER_SECOND

_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<f2"),
           5: np.dtype("<u2")}  # 5 = bfloat16, widened to float32 on read
_BFLOAT16 = 5


@dataclass(frozen=True)
class CT2Variable:
    """One variable's entry: where its bytes lie in the file, its shape and dtype id."""

    name: str
    shape: tuple[int, ...]
    dtype_id: int
    offset: int
    num_bytes: int


@dataclass
class CT2ModelFile:
    """The index of a ``model.bin``; arrays are read on demand (the decoder is never loaded)."""

    path: Path
    binary_version: int
    spec: str
    revision: int
    variables: dict[str, CT2Variable]
    aliases: dict[str, str] = field(default_factory=dict)

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in list(self.variables) + list(self.aliases) if n.startswith(prefix)]

    def array(self, name: str) -> np.ndarray:
        """The variable as float32 (float types) or its integer dtype, in its stored shape."""
        var = self.variables[self.aliases.get(name, name)]
        dtype = _DTYPES[var.dtype_id]
        with open(self.path, "rb") as handle:
            handle.seek(var.offset)
            raw = handle.read(var.num_bytes)
        values = np.frombuffer(raw, dtype=dtype)
        if var.dtype_id == _BFLOAT16:
            values = (values.astype(np.uint32) << 16).view(np.float32)
        elif values.dtype.kind == "f":
            values = values.astype(np.float32)
        return values.reshape(var.shape)


def _string(handle) -> str:
    (length,) = struct.unpack("<H", handle.read(2))
    return handle.read(length).rstrip(b"\0").decode("utf-8")


def read_ct2_model(model_dir_or_file: str | Path) -> CT2ModelFile:
    """Index a CTranslate2 ``model.bin`` (a directory holding one, or the file itself)."""
    path = Path(model_dir_or_file)
    if path.is_dir():
        path = path / "model.bin"
    variables: dict[str, CT2Variable] = {}
    with open(path, "rb") as handle:
        (version,) = struct.unpack("<I", handle.read(4))
        if version < 4:
            raise ValueError(f"{path}: CTranslate2 binary version {version} < 4 is not supported (no dtype ids)")
        spec = _string(handle)
        (revision, count) = struct.unpack("<II", handle.read(8))
        for _ in range(count):
            name = _string(handle)
            (rank,) = struct.unpack("<B", handle.read(1))
            shape = struct.unpack(f"<{rank}I", handle.read(4 * rank)) if rank else ()
            dtype_id, num_bytes = struct.unpack("<BI", handle.read(5))
            if dtype_id not in _DTYPES:
                raise ValueError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype_id].itemsize
            if expected != num_bytes:
                raise ValueError(f"{path}: variable {name} shape {shape} needs {expected} bytes, file has {num_bytes}")
            variables[name] = CT2Variable(name, tuple(shape), dtype_id, handle.tell(), num_bytes)
            handle.seek(num_bytes, 1)
        (alias_count,) = struct.unpack("<I", handle.read(4))
        aliases = {}
        for _ in range(alias_count):
            alias = _string(handle)
            aliases[alias] = _string(handle)
    return CT2ModelFile(path, version, spec, revision, variables, aliases)


@dataclass(frozen=True)
class WhisperEncoderShape:
    """The encoder's hyper-parameters, all read from the weights."""

    num_mel_bins: int
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    max_source_positions: int


def whisper_encoder_shape(model: CT2ModelFile) -> WhisperEncoderShape:
    if not model.spec.startswith("Whisper"):
        raise ValueError(f"{model.path}: spec {model.spec!r} is not a Whisper model")
    if any(n.endswith("weight_scale") for n in model.names("encoder/")):
        raise ValueError(f"{model.path}: the encoder is int8-quantized; convert with --quantization float16/float32")
    layers = {int(m.group(1)) for n in model.names("encoder/") if (m := re.match(r"encoder/layer_(\d+)/", n))}
    d_model, num_mel_bins, _ = model.variables["encoder/conv1/weight"].shape
    return WhisperEncoderShape(
        num_mel_bins=num_mel_bins, d_model=d_model, layers=len(layers),
        heads=int(model.array("encoder/num_heads")),
        ffn_dim=model.variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=model.variables["encoder/position_encodings/encodings"].shape[0])


def _pairs(ct2_prefix: str, torch_prefix: str, norm: bool = False) -> Iterable[tuple[str, str]]:
    if norm:
        return ((f"{ct2_prefix}/gamma", f"{torch_prefix}.weight"), (f"{ct2_prefix}/beta", f"{torch_prefix}.bias"))
    return ((f"{ct2_prefix}/weight", f"{torch_prefix}.weight"), (f"{ct2_prefix}/bias", f"{torch_prefix}.bias"))


def whisper_encoder_state_dict(model: CT2ModelFile, positions: int | None = None) -> dict[str, torch.Tensor]:
    """The encoder's weights under transformers' Whisper/Qwen2-Audio encoder names (float32).

    ``positions`` keeps the first that many positional embeddings (a window of
    ``2 * positions`` mel frames); the default is the file's 1500 (30 s).
    """
    import torch

    shape = whisper_encoder_shape(model)
    positions = shape.max_source_positions if positions is None else positions
    if not 1 <= positions <= shape.max_source_positions:
        raise ValueError(f"positions must be in 1..{shape.max_source_positions}, got {positions}")
    pairs = [*_pairs("encoder/conv1", "conv1"), *_pairs("encoder/conv2", "conv2"),
             *_pairs("encoder/layer_norm", "layer_norm", norm=True)]
    for i in range(shape.layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        pairs += [*_pairs(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", norm=True),
                  *_pairs(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj"),
                  *_pairs(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", norm=True),
                  *_pairs(f"{src}/ffn/linear_0", f"{dst}.fc1"), *_pairs(f"{src}/ffn/linear_1", f"{dst}.fc2")]
    state = {dst: torch.from_numpy(model.array(src).copy()) for src, dst in pairs}
    state["embed_positions.weight"] = torch.from_numpy(
        model.array("encoder/position_encodings/encodings")[:positions].copy())
    d = shape.d_model
    for i in range(shape.layers):
        src, dst = f"encoder/layer_{i}/self_attention/linear_0", f"layers.{i}.self_attn"
        weight, bias = model.array(f"{src}/weight"), model.array(f"{src}/bias")
        if weight.shape != (3 * d, d):
            raise ValueError(f"{src}/weight has shape {weight.shape}, expected fused q/k/v {(3 * d, d)}")
        if np.any(bias[d:2 * d] != 0):
            raise ValueError(f"{src}/bias has a non-zero key bias; a Whisper key projection has none")
        for j, part in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{dst}.{part}.weight"] = torch.from_numpy(weight[j * d:(j + 1) * d].copy())
        state[f"{dst}.q_proj.bias"] = torch.from_numpy(bias[:d].copy())
        state[f"{dst}.v_proj.bias"] = torch.from_numpy(bias[2 * d:].copy())
    return state


def clip_window_frames(frames: int, margin_frames: int = _MARGIN_FRAMES) -> int:
    """The project's short window for a clip of ``frames`` mel frames: its length + 2 s, in whole
    seconds, at most 30 s (as ``WhisperCT2`` with ``pad_to_30s=False``)."""
    seconds = -(-(frames + margin_frames) // FRAMES_PER_SECOND)
    return min(WINDOW_FRAMES, seconds * FRAMES_PER_SECOND)


def _positions_for(window_frames: int | None, shape: WhisperEncoderShape) -> int:
    if window_frames is None:
        return shape.max_source_positions
    if window_frames % 2 or not 2 <= window_frames <= 2 * shape.max_source_positions:
        raise ValueError(f"window_frames must be even and in 2..{2 * shape.max_source_positions}, got {window_frames}")
    return window_frames // 2


def _load(encoder_cls, config, model: CT2ModelFile, positions: int):
    import torch

    encoder = encoder_cls(config)
    missing, unexpected = encoder.load_state_dict(whisper_encoder_state_dict(model, positions), strict=False)
    if unexpected or missing:
        raise RuntimeError(f"weights do not fit {encoder_cls.__name__}: missing {missing}, unexpected {unexpected}")
    return encoder.to(torch.float32).eval()


def load_whisper_encoder(model_dir: str | Path, window_frames: int | None = None):
    """A ``transformers.WhisperEncoder`` holding the file's encoder, float32, in eval mode.

    ``window_frames`` (even; default 3000 = 30 s) is the mel length it takes: a shorter
    window keeps the first ``window_frames / 2`` positional embeddings, as CTranslate2 does
    for a shorter input.
    """
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    model = read_ct2_model(model_dir)
    shape = whisper_encoder_shape(model)
    positions = _positions_for(window_frames, shape)
    config = WhisperConfig(num_mel_bins=shape.num_mel_bins, d_model=shape.d_model, encoder_layers=shape.layers,
                           encoder_attention_heads=shape.heads, encoder_ffn_dim=shape.ffn_dim,
                           max_source_positions=positions, activation_function="gelu", scale_embedding=False)
    return _load(WhisperEncoder, config, model, positions)


def qwen2_audio_encoder_config(model: CT2ModelFile, window_frames: int | None = None):
    from transformers import Qwen2AudioEncoderConfig

    shape = whisper_encoder_shape(model)
    return Qwen2AudioEncoderConfig(num_mel_bins=shape.num_mel_bins, d_model=shape.d_model,
                                   encoder_layers=shape.layers, encoder_attention_heads=shape.heads,
                                   encoder_ffn_dim=shape.ffn_dim, max_source_positions=_positions_for(window_frames,
                                                                                                      shape),
                                   activation_function="gelu", scale_embedding=False)


def load_qwen2_audio_encoder(model_dir: str | Path, window_frames: int | None = None):
    """A ``transformers.Qwen2AudioEncoder`` (Qwen2-Audio's audio tower) with the file's encoder."""
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    model = read_ct2_model(model_dir)
    config = qwen2_audio_encoder_config(model, window_frames)
    return _load(Qwen2AudioEncoder, config, model, config.max_source_positions)


def tower_hidden_states(tower, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """A Whisper-style tower's last-layer output, before its final norm (and Qwen2-Audio's pool).

    The same modules in the same order as ``WhisperEncoder`` / ``Qwen2AudioEncoder.forward``,
    for any even window up to the tower's positions (the stock forwards insist on their
    configured window): the first ``window / 2`` positional embeddings are used.
    """
    from torch import nn

    x = nn.functional.gelu(tower.conv1(input_features.to(tower.conv1.weight.dtype)))
    x = nn.functional.gelu(tower.conv2(x)).permute(0, 2, 1)
    if x.shape[1] > tower.embed_positions.weight.shape[0]:
        raise ValueError(f"features of {input_features.shape[-1]} frames exceed the tower's window of "
                         f"{2 * tower.embed_positions.weight.shape[0]}")
    x = x + tower.embed_positions.weight[:x.shape[1]]
    for layer in tower.layers:
        x = layer(x, attention_mask)
        x = x[0] if isinstance(x, tuple) else x
    return x


def tower_frame_states(tower, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """A Qwen2-Audio tower's per-frame states in Whisper's form: [B, window / 2, d_model].

    The tower's own output is ``layer_norm(avg_pool(h))``, h the last layer's output;
    Whisper's (and CTranslate2's) is ``layer_norm(h)``. This runs the same modules and
    returns the latter, so it can be compared with ``ctranslate2.models.Whisper.encode``.
    ``attention_mask`` is passed to the layers as the tower receives it inside Qwen2-Audio
    (None: every frame attends to every frame, as in Whisper).
    """
    import torch

    with torch.no_grad():
        return tower.layer_norm(tower_hidden_states(tower, input_features, attention_mask))
