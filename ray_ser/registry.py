"""Explicit name -> builder registries. Registering a name twice is an error."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry", "ASR_ENGINES", "BRANCH_PREDICTORS", "load_branch_predictor", "uses_speaker_statistics"]

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self._items)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


def _faster_whisper(cfg, cache_dir):
    from ray_ser.models.whisper_ct2 import WhisperCT2, WhisperOptions

    options = WhisperOptions(
        model=cfg.model, device=cfg.device, compute_type=cfg.compute_type, cpu_threads=cfg.cpu_threads,
        language=cfg.language, beam_size=cfg.beam_size, max_new_tokens=cfg.max_new_tokens,
        pad_to_30s=cfg.pad_to_30s,
    )
    return WhisperCT2.load(options, cache_dir)


def _whisperx(cfg, cache_dir):
    from ray_ser.models.whisperx_asr import WhisperXAsr

    return WhisperXAsr.load(cfg.model, cfg.device, cfg.compute_type, cfg.language)


# name -> (AsrConfig, cache_dir) -> AsrModel
ASR_ENGINES: Registry[Callable] = Registry("ASR engine")
ASR_ENGINES.register("faster-whisper", _faster_whisper)
ASR_ENGINES.register("whisperx", _whisperx)


def _speech_encoder(checkpoint, branch, storage):
    from ray_ser.models.speech_encoder import SpeechEncoderPredictor

    return SpeechEncoderPredictor.load(checkpoint, branch.device)


def _text_classifier(checkpoint, branch, storage):
    from ray_ser.models.text_classifier import TextClassifierPredictor

    return TextClassifierPredictor.load(checkpoint, branch.device)


def _speech_llm(checkpoint, branch, storage):
    from ray_ser.few_shot import load_shots
    from ray_ser.models.speech_llm import SpeechLLMPredictor

    shots = load_shots(branch.few_shot, storage) if branch.few_shot else ()
    return SpeechLLMPredictor.load(checkpoint, branch.llm_settings(), branch.device, shots)


def _prosody(checkpoint, branch, storage):
    from ray_ser.models.prosody import ProsodyPredictor

    return ProsodyPredictor.load(checkpoint, branch.device)


# branch family -> (local checkpoint dir, BranchConfig, StorageConfig) -> predictor with
# input_kind ("audio" | "text" | "audio_text": (audio, transcript) pairs) and
# predict_batch(inputs) -> probabilities [n, 8]
BRANCH_PREDICTORS: Registry[Callable] = Registry("branch family")
BRANCH_PREDICTORS.register("speech_encoder", _speech_encoder)
BRANCH_PREDICTORS.register("text_classifier", _text_classifier)
BRANCH_PREDICTORS.register("speech_llm", _speech_llm)
BRANCH_PREDICTORS.register("prosody", _prosody)


def uses_speaker_statistics(branch, storage) -> bool:
    """Whether the branch's checkpoint is speaker-normalised, read from its branch.json alone."""
    import json
    import posixpath

    from ray_ser.io.storage import FileReader

    from ray_ser.config import SPEAKER_NORMALISED_FAMILIES

    if branch.family not in SPEAKER_NORMALISED_FAMILIES:
        return False
    meta = json.loads(FileReader(storage).read(posixpath.join(branch.checkpoint, "branch.json")))
    return bool(meta.get("speaker_normalization", False))


def load_branch_predictor(branch, storage, cache_dir: str):
    """The predictor of a configured branch, its checkpoint fetched to this node first if remote."""
    from ray_ser.io.storage import localize_directory

    local = localize_directory(branch.checkpoint, storage, cache_dir)
    return BRANCH_PREDICTORS.get(branch.family)(local, branch, storage)
