"""A speech-LLM directory written on any torch.distributed rank holds its weights.

transformers' save_pretrained writes nothing on a rank other than 0; a Ray Train rank 1 that won the
cache lock for tiny-random:qwen2-audio left a directory marked complete with only the tokenizer in it.
Two real gloo ranks (separate processes) each build the tiny model through the production builder."""

from __future__ import annotations

import socket
import sys

import torch.multiprocessing as mp


def _build_on_rank(rank: int, port: int, root: str) -> None:
    import torch.distributed as dist

    from ray_ser.testing.tiny_models import tiny_speech_llm_checkpoint

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        tiny_speech_llm_checkpoint(f"{root}/rank{rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_every_rank_writes_the_weights(tmp_path):
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    mp.spawn(_build_on_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        written = {p.name for p in (tmp_path / f"rank{rank}").iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= written, (rank, written)
