"""The project's ASR against faster-whisper itself, on the same clips, model, compute type and threads.

    PYTHONPATH=. .venv/bin/python bench/asr_vs_faster_whisper.py [--n-espeak 200] [--n-ravdess 100] \
        [--n-emodb 100] [--n-long 3] [--long-minutes 3] [--config demo] [--beam-size N] [--out DIR]

Three systems, one after another, each warmed up on one clip first:

- ``ray_ser``: ``WhisperCT2.predict_batch`` (the labeling job's ASR stage) over batches of
  ``asr.resources.batch_size`` clips in input order, with the profile's window and guards; a long
  recording is first cut by the job's VAD segmenter (decode stage) and its segments batched;
- ``fw_transcribe``: faster-whisper's ``WhisperModel.transcribe``, one file at a time, its defaults
  (30 s windows, timestamps, temperature fallback) except the beam size;
- ``fw_batched``: faster-whisper's ``BatchedInferencePipeline.transcribe``, one file at a time,
  batching that file's VAD chunks (``batch_size`` = the profile's ASR batch size).

Same model directory (the profile's ``asr.model``: the offline Whisper base by default), compute
type, ``cpu_threads`` and beam size (the profile's; faster-whisper's default is 5: pass
``--beam-size 5`` to compare at that). Clip sets: espeak clips (English, their sentences), RAVDESS
and EmoDB (language detected per clip, as in a multilingual corpus; the sentence read off the file
name) and long espeak recordings. Prints audio-seconds per second, WER and repetition loops per
system and set; writes everything, each clip's transcript included, to OUT/asr_vs_faster_whisper.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (Clip, corpus_wer, espeak_clips, long_recordings, looped, machine, real_clips,  # noqa: E402
                     table, write_json)

SYSTEMS = ("ray_ser", "fw_transcribe", "fw_batched")


def project_system(cfg, cache_dir):
    """transcribe(clips) -> texts, with the package's ASR and (for long recordings) its VAD segmenter."""
    from ray_ser.models.asr.vad import SileroSegmenter
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    models: dict = {}
    segmenter = SileroSegmenter.load(cfg.decode)
    batch = cfg.asr.resources.batch_size

    def model_for(language):
        if language not in models:
            models[language] = WhisperCT2.load(cfg.asr.model_copy(update={"language": language}), cache_dir)
        return models[language]

    def pieces(clip: Clip) -> list:
        """The decode stage's rule: a recording longer than a segment is cut by VAD."""
        if clip.seconds <= cfg.decode.max_segment_s:
            return [clip.audio]
        spans = segmenter.predict_batch([clip.audio])[0]
        return [clip.audio[int(s.start * 16000):int(s.end * 16000)] for s in spans]

    def transcribe(clips: list[Clip]) -> list[str]:
        owners, audios = [], []
        for k, clip in enumerate(clips):
            for piece in pieces(clip):
                owners.append(k)
                audios.append(piece)
        model = model_for(clips[0].language) if clips else None
        texts: list[list[str]] = [[] for _ in clips]
        for i in range(0, len(audios), batch):
            for owner, t in zip(owners[i:i + batch], model.predict_batch(audios[i:i + batch])):
                texts[owner].append(t.text)
        return [" ".join(t for t in parts if t) for parts in texts]

    return transcribe


def faster_whisper_system(cfg, model_dir: str, batched: bool, beam_size: int):
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(model_dir, device=cfg.asr.device, compute_type=cfg.asr.compute_type,
                         cpu_threads=cfg.asr.cpu_threads, num_workers=1)
    pipeline = BatchedInferencePipeline(model) if batched else None

    def transcribe(clips: list[Clip]) -> list[str]:
        out = []
        for clip in clips:
            if pipeline is not None:
                segments, _ = pipeline.transcribe(clip.audio, language=clip.language, beam_size=beam_size,
                                                  batch_size=cfg.asr.resources.batch_size)
            else:
                segments, _ = model.transcribe(clip.audio, language=clip.language, beam_size=beam_size)
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out

    return transcribe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", action="append", default=[], help="section.field=value profile overrides")
    parser.add_argument("--n-espeak", type=int, default=200)
    parser.add_argument("--n-ravdess", type=int, default=100)
    parser.add_argument("--n-emodb", type=int, default=100)
    parser.add_argument("--n-long", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=3.0)
    parser.add_argument("--beam-size", type=int, default=None, help="all three systems (default: the profile's)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()

    from ray_ser.config import load_config
    from ray_ser.models.asr.whisper_ct2 import resolve_whisper_model

    overrides = list(args.set) + ([f"asr.beam_size={args.beam_size}"] if args.beam_size else [])
    cfg = load_config(args.config, overrides)
    cache_dir = cfg.resolved_cache_dir()
    model_dir = resolve_whisper_model(cfg.asr.model, cache_dir)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_asr_bench_"))
    sets = {
        "espeak": espeak_clips(work, args.n_espeak),
        "ravdess": real_clips("ravdess", args.n_ravdess),
        "emodb": real_clips("emodb", args.n_emodb),
        "long": long_recordings(work, args.n_long, args.long_minutes),
    }
    sets = {name: clips for name, clips in sets.items() if clips}
    for name, clips in sets.items():
        print(f"{name}: {len(clips)} clips, {sum(c.seconds for c in clips):.0f} audio-s, "
              f"mean {sum(c.seconds for c in clips) / len(clips):.1f} s, language "
              f"{clips[0].language or 'detected per clip'}")
    print(f"model {cfg.asr.model} ({model_dir}), {cfg.asr.compute_type}, {cfg.asr.cpu_threads} threads, "
          f"beam {cfg.asr.beam_size}, batch {cfg.asr.resources.batch_size}, pad_to_30s={cfg.asr.pad_to_30s}")

    builders = {
        "ray_ser": lambda: project_system(cfg, cache_dir),
        "fw_transcribe": lambda: faster_whisper_system(cfg, model_dir, False, cfg.asr.beam_size),
        "fw_batched": lambda: faster_whisper_system(cfg, model_dir, True, cfg.asr.beam_size),
    }
    results = []
    transcripts: dict = {}
    for system in args.systems.split(","):
        transcribe = builders[system]()
        for name, clips in sets.items():
            transcribe(clips[:1])  # warm-up: first-call allocations, the VAD session
            started = time.perf_counter()
            texts = transcribe(clips)
            elapsed = time.perf_counter() - started
            audio_s = sum(c.seconds for c in clips)
            refs = [c.text for c in clips]
            results.append({"system": system, "set": name, "clips": len(clips), "audio_s": round(audio_s, 1),
                            "wall_s": round(elapsed, 2), "audio_s_per_s": audio_s / elapsed,
                            "wer": corpus_wer(refs, texts),
                            "loops": sum(looped(r, t) for r, t in zip(refs, texts))})
            transcripts[f"{system}/{name}"] = [{"id": c.id, "ref": c.text, "hyp": t} for c, t in zip(clips, texts)]
            print(table(results[-1:], ["system", "set", "clips", "audio_s_per_s", "wer", "loops"]).splitlines()[-1],
                  flush=True)
        del transcribe

    for system in {r["system"] for r in results}:
        mine = [r for r in results if r["system"] == system]
        audio, wall = sum(r["audio_s"] for r in mine), sum(r["wall_s"] for r in mine)
        refs = [x["ref"] for r in mine for x in transcripts[f"{system}/{r['set']}"]]
        hyps = [x["hyp"] for r in mine for x in transcripts[f"{system}/{r['set']}"]]
        results.append({"system": system, "set": "all", "clips": sum(r["clips"] for r in mine), "audio_s": audio,
                        "wall_s": wall, "audio_s_per_s": audio / wall, "wer": corpus_wer(refs, hyps),
                        "loops": sum(r["loops"] for r in mine)})
    ratios = {}
    for name in [*sets, "all"]:
        row = {r["system"]: r for r in results if r["set"] == name}
        if "ray_ser" in row:
            for other in ("fw_transcribe", "fw_batched"):
                if other in row:
                    ratios[f"{name}: ray_ser / {other}"] = {
                        "speed": row["ray_ser"]["audio_s_per_s"] / row[other]["audio_s_per_s"],
                        "wer_delta": row["ray_ser"]["wer"] - row[other]["wer"]}
    print()
    print(table(sorted(results, key=lambda r: (r["set"], r["system"])),
                ["set", "system", "clips", "audio_s", "wall_s", "audio_s_per_s", "wer", "loops"]))
    print()
    for key, value in ratios.items():
        print(f"{key}: {value['speed']:.2f}x the speed, WER {value['wer_delta']:+.3f}")
    path = write_json(Path(args.out) / "asr_vs_faster_whisper.json", {
        "command": " ".join(sys.argv), "machine": machine(), "config": args.config, "overrides": overrides,
        "asr": cfg.asr.model_dump(mode="json"), "model_dir": model_dir, "results": results, "ratios": ratios,
        "transcripts": transcripts})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
