"""whisperx as an optional ASR engine, for GPU clusters only.

whisperx pins torch~=2.8 and pulls pyannote, so it cannot share the vLLM
environment; the pipeline runs it in its own Ray runtime_env (asr.runtime_env).
It is not part of the CPU lock and is imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ray_ser.models.base import Transcript

if TYPE_CHECKING:
    from ray_ser.config import AsrConfig

__all__ = ["WhisperXAsr"]

# whisperx batches the 30 s VAD chunks of ONE file; this is its internal batch, not a Ray batch.
_CHUNKS_PER_CALL = 16


class WhisperXAsr:
    """AsrModel: whisperx transcription followed by wav2vec2 word alignment."""

    def __init__(self, model, align_model, align_metadata, device: str, language: str | None) -> None:
        self.model = model
        self.align_model = align_model
        self.align_metadata = align_metadata
        self.device = device
        self.language = language

    @classmethod
    def load(cls, options: AsrConfig, cache_dir: str | Path) -> WhisperXAsr:
        try:
            import whisperx
        except ImportError:
            raise ImportError(
                "the whisperx engine needs whisperx in the ASR actors' runtime_env, e.g. "
                "asr.runtime_env: {pip: [whisperx==3.8.6]} (see configs/production.yaml)"
            ) from None
        device = "cuda" if options.device == "auto" else options.device
        model = whisperx.load_model(options.model, device, compute_type=options.compute_type,
                                    language=options.language, download_root=str(Path(cache_dir) / "hf"))
        align_model, metadata = whisperx.load_align_model(language_code=options.language or "en", device=device)
        return cls(model, align_model, metadata, device, options.language)

    def predict_batch(self, audios: Sequence[np.ndarray],
                      languages: Sequence[str | None] | None = None) -> list[Transcript]:
        import whisperx

        out = []
        for i, audio in enumerate(audios):
            # A clip's known language steers transcription; alignment keeps the configured language's model.
            hint = languages[i] if languages is not None else None
            result = self.model.transcribe(np.asarray(audio, dtype=np.float32), batch_size=_CHUNKS_PER_CALL,
                                           **({"language": hint} if hint else {}))
            aligned = whisperx.align(result["segments"], self.align_model, self.align_metadata,
                                     audio, self.device, return_char_alignments=False)
            text = " ".join(seg["text"].strip() for seg in aligned["segments"]).strip()
            scores = [w.get("score", 0.0) for seg in aligned["segments"] for w in seg.get("words", [])]
            avg = float(np.log(np.clip(np.mean(scores), 1e-6, 1.0))) if scores else 0.0
            out.append(Transcript(text=text, language=result.get("language") or self.language or "",
                                  avg_logprob=avg, no_speech_prob=0.0))
        return out
