"""How the Ray Train loop trains an encoder_probe branch: encode the corpus once, shared out over the
workers and kept on disk, then train the head on normalised pooled features."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ray_ser.branches.training import ClassifierLoss, ClipsWithSpeakers, Example

__all__ = ["EncoderProbeTraining", "cached_features"]


def cached_features(encoder, audios: list[np.ndarray], directory: Path | None) -> np.ndarray:
    """The encoder's features of each clip, read from directory when a run before computed them (the
    key is the clip's samples and the encoder's settings), computed and written there otherwise."""
    if directory is None:
        return encoder(audios)
    directory.mkdir(parents=True, exist_ok=True)
    keys = [hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest() for a in audios]
    found = {i: directory / f"{k}.npy" for i, k in enumerate(keys)}
    missing = [i for i, path in found.items() if not path.exists()]
    computed = encoder([audios[i] for i in missing]) if missing else None
    out = []
    for i, path in found.items():
        if computed is not None and i in missing:
            value = computed[missing.index(i)]
            temp = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npy")
            np.save(temp, value)
            temp.replace(path)  # atomic: a concurrent reader sees all of it or nothing
            out.append(value)
        else:
            out.append(np.load(path))
    return np.stack(out).astype(np.float32) if out else encoder(audios)


class EncoderProbeTraining(ClipsWithSpeakers, ClassifierLoss):
    def build(self, train, context):
        from ray_ser.branches.encoder_probe.model import FrozenEncoder, ProbeModel, pooled_width, resolve_encoder

        settings = resolve_encoder(train, context.asr)
        self.context = context
        self.encoder = FrozenEncoder(settings, context.cache_dir)
        spec = hashlib.sha1(settings.encoder.model_dump_json().encode() + str(settings.base_model).encode())
        self.cache = Path(context.cache_dir) / "probe-features" / spec.hexdigest()[:16]
        layers, width = self.encoder.shape
        return ProbeModel(settings, layers, pooled_width(settings, width), context.classes)

    def _features(self, audios: list[np.ndarray]) -> np.ndarray:
        """Every clip's features, each worker encoding its share and all of them gathering the rest."""
        rank, world = self.context.rank, self.context.world
        mine = cached_features(self.encoder, audios[rank::world], self.cache)
        parts = self.context.gather([(rank, mine)])
        values = np.zeros((len(audios), *mine.shape[1:]), np.float32)
        for worker, part in parts:
            values[worker::world] = part
        return values

    def prepare_examples(self, model, corpus, shard, val_shard, train):
        """Features of the whole training corpus (the statistics), then each example's normalised input."""
        from ray_ser.branches.encoder_probe.model import pooled, znorm_statistics
        from ray_ser.models.features.speaker_norm import add_statistics

        values = pooled(self._features([e.input[0] for e in corpus]), model.settings)
        model.fit_statistics(values)
        speakers = {}
        if model.settings.speaker_normalization:
            known = [i for i, e in enumerate(corpus) if e.input[1] is not None]
            speakers = add_statistics(zip([corpus[i].input[1] for i in known], znorm_statistics(values[known])))
            model.known_speakers = dict(speakers)  # saved with the checkpoint: see speakers.pool_known_speakers
        inputs = model.normalise(values, [speakers.get(e.input[1]) for e in corpus])
        by_example = {id(e): x for e, x in zip(corpus, inputs)}
        shard = [Example(by_example[id(e)], e.label, e.weight) for e in shard]
        val_values = pooled(cached_features(self.encoder, [e.input[0] for e in val_shard], self.cache), model.settings)
        val_inputs = model.normalise(val_values, [speakers.get(e.input[1]) for e in val_shard])
        return shard, [Example(x, e.label, e.weight) for x, e in zip(val_inputs, val_shard)]

    def inputs(self, model, items):
        import torch

        return {"features": torch.stack(list(items))}
