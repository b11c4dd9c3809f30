"""Who is speaking, for clips that do not say: a speaker embedding and a clustering of clips by voice.

Speaker normalisation needs every clip's speaker, and most real corpora (podcasts, call-centre
audio, scraped video) name none. Clips are grouped by voice instead and normalised per group.
Emotion features are the wrong representation for that: on EmoDB and RAVDESS, clusters of
Whisper's pooled states or of log-mel statistics follow the emotion, not the speaker (adjusted
Rand index 0.1 against the actors). A speaker encoder trained to ignore everything but the voice
is needed: GE2E (Wan et al., 2018), a 3-layer LSTM over 40-band mel frames trained on thousands
of speakers, whose published weights ship inside the ``resemblyzer`` package (Apache-2.0). This
module loads those weights into its own small copy of the network and computes the mel frames
itself, so neither librosa nor webrtcvad is needed.

A clip's embedding is the L2-normalised mean of the embeddings of 1.6 s windows (50% overlap).
Clips are grouped by agglomerative clustering (average linkage, cosine distance), the number of
groups chosen by silhouette, so the number of speakers is not needed in advance; beyond a few
thousand clips the clips are first gathered into small k-means groups, which the linkage then merges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["VoiceEncoder", "cluster_speakers", "EMBEDDING_DIM"]

EMBEDDING_DIM = 256
_WINDOW_FRAMES = 160        # 1.6 s of 10 ms frames
_RATE = 16_000


class VoiceEncoder:
    """GE2E speaker embeddings: [n, 256], L2-normalised (cosine similarity compares voices)."""

    def __init__(self, weights: str | Path | None = None) -> None:
        import torch
        from faster_whisper.feature_extractor import FeatureExtractor
        from torch import nn

        if weights is None:
            from ray_ser.models.weights import package_data_dir

            weights = package_data_dir("resemblyzer", "") / "pretrained.pt"

        class _Network(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
                self.linear = nn.Linear(256, EMBEDDING_DIM)

            def forward(self, mels: torch.Tensor) -> torch.Tensor:
                _, (hidden, _) = self.lstm(mels)
                raw = torch.relu(self.linear(hidden[-1]))
                return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)

        self._torch = torch
        self.network = _Network().eval()
        state = torch.load(weights, map_location="cpu")["model_state"]
        self.network.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        # The slaney mel filters librosa would build (faster-whisper carries a copy of that code).
        self.filters = FeatureExtractor.get_mel_filters(_RATE, 400, n_mels=40).astype(np.float32)
        self.window = np.hanning(401)[:-1].astype(np.float32)

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        """[frames, 40] power mel spectrogram: 25 ms windows every 10 ms, volume raised to -30 dBFS."""
        audio = np.asarray(audio, np.float32)
        rms = float(np.sqrt(np.mean(audio ** 2))) if audio.size else 0.0
        gain_db = -30.0 - 20.0 * np.log10(rms + 1e-9)
        if gain_db > 0:  # quiet clips are raised, loud ones left alone (as GE2E was trained)
            audio = audio * 10.0 ** (gain_db / 20.0)
        padded = np.pad(audio, 200, mode="reflect") if audio.size > 200 else np.pad(audio, 200)
        frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160]
        power = np.abs(np.fft.rfft(frames * self.window, n=400)) ** 2
        return (power @ self.filters.T).astype(np.float32)

    def __call__(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(audios), EMBEDDING_DIM), np.float32)
        step = int(round(_RATE / 1.3 / 160))  # 1.3 windows a second
        with torch.inference_mode():
            for i, audio in enumerate(audios):
                mel = self._mel(audio)
                starts = range(0, max(1, len(mel) - _WINDOW_FRAMES + step + 1), step)
                windows = [np.pad(mel[s:s + _WINDOW_FRAMES], ((0, max(0, _WINDOW_FRAMES - len(mel[s:s + _WINDOW_FRAMES]))),
                                                                (0, 0))) for s in starts]
                mean = self.network(torch.from_numpy(np.stack(windows))).mean(0)
                out[i] = (mean / mean.norm().clamp_min(1e-8)).numpy()
        return out


def cluster_speakers(embeddings: np.ndarray, max_groups: int = 8, min_separation: float = 0.35,
                     max_direct: int = 4000, seed: int = 0) -> np.ndarray:
    """A voice group per clip (0..k-1), k not known in advance.

    Agglomerative clustering (average linkage, cosine distance) for every k from 2 to
    min(max_groups, clips / 10); the k with the best silhouette wins, and when no k separates the
    clips by at least min_separation they are one group. Emotion moves a voice's embedding too,
    so the rule leans towards few groups: one speaker split into an angry and a calm group has
    its emotion normalised away, while two speakers in one group only lose part of their
    normalisation. Above max_direct clips, k-means first gathers them into max_direct small groups.
    """
    from sklearn.cluster import AgglomerativeClustering, MiniBatchKMeans
    from sklearn.metrics import silhouette_score

    embeddings = np.asarray(embeddings, np.float32)
    n = len(embeddings)
    largest = min(max_groups, n // 10)
    if largest < 2:
        return np.zeros(n, np.int64)
    points, members = embeddings, np.arange(n)
    if n > max_direct:
        km = MiniBatchKMeans(n_clusters=max_direct, random_state=seed, n_init=1, batch_size=4096).fit(embeddings)
        points, members = km.cluster_centers_, km.labels_
    best_score, best = min_separation, np.zeros(len(points), np.int64)
    for k in range(2, largest + 1):
        groups = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(points)
        score = silhouette_score(points, groups, metric="cosine")
        if score > best_score:
            best_score, best = score, groups
    return np.asarray(best, np.int64)[members]
