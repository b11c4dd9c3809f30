"""Training transcripts for SELM's speech-text variant when the manifest carries none (``transcripts: asr``).

The labeling job puts the Whisper transcript in the speech-text branch's prompt; a checkpoint
meant to serve that branch should be trained on the same kind of transcript. Acted corpora
(EmoDB, RAVDESS) ship no text, so the profile's own ASR (its ``asr`` section, the model and
settings the job runs) transcribes each training clip once. Transcripts are kept on disk
under the cache, keyed by the clip's samples and the ASR settings, so later runs (other folds,
`ray-ser adapt`) read them back; the workers of one run share the work out and read each
other's from there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["fill_transcripts"]


def _key(audio: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()


def _read(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["text"]
    except (OSError, ValueError, KeyError):
        return None


def _write(path: Path, text: str) -> None:
    temp = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp")
    temp.write_text(json.dumps({"text": text}))
    temp.replace(path)  # atomic: a worker reading it sees all of it or nothing


def fill_transcripts(audios: Sequence[np.ndarray], texts: Sequence[str | None], asr, cache_dir: str | Path,
                     rank: int = 0, world: int = 1, gather: Callable[[list], list] = lambda values: values,
                     batch: int = 16) -> list[str | None]:
    """``texts`` with each missing one (None) replaced by the ASR's transcript of its clip ("" for silence).

    ``asr`` is the profile's AsrConfig; the model loads only when a transcript is not on disk.
    Every worker must call this together (``gather`` is a collective): each transcribes its share
    (every world-th missing clip), then reads the others' from disk, and transcribes itself
    whatever another worker did not have (workers whose lists differ, as validation shards do).
    """
    directory = Path(cache_dir) / "selm-transcripts" / hashlib.sha1(
        asr.model_dump_json().encode()).hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    missing = [i for i, t in enumerate(texts) if t is None]
    paths = {i: directory / f"{_key(audios[i])}.json" for i in missing}
    found = {i: text for i in missing if (text := _read(paths[i])) is not None}
    model = None

    def transcribe(indices: list[int]) -> None:
        nonlocal model
        if not indices:
            return
        if model is None:
            from ray_ser.models.asr import load_asr

            model = load_asr(asr, cache_dir)
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            for i, transcript in zip(chunk, model.predict_batch([audios[i] for i in chunk])):
                found[i] = transcript.text.strip()
                _write(paths[i], found[i])

    todo = [i for i in missing if i not in found]
    transcribe(todo[rank::world])
    gather([len(todo)])  # a barrier: every worker's share is on disk after it
    rest = [i for i in todo if i not in found]
    for i in rest:
        if (text := _read(paths[i])) is not None:
            found[i] = text
    transcribe([i for i in rest if i not in found])
    return [found.get(i, t) for i, t in enumerate(texts)]
