"""GE2E voice embeddings and voice groups on real speech (EmoDB and RAVDESS actors), for clips that name
no speaker."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ray_ser.models.features.speaker_embedding import EMBEDDING_DIM, VoiceEncoder, cluster_speakers
from tests.conftest import real_speech_rows


@pytest.fixture(scope="module")
def voices():
    """Two EmoDB actors (a man and a woman) and four RAVDESS actors, a spread of emotions each."""
    rows = real_speech_rows("emodb", speakers=2, per_speaker=12) + real_speech_rows("ravdess", speakers=4,
                                                                                   per_speaker=8)
    audios = [sf.read(r["path"], dtype="float32")[0] for r in rows]
    return VoiceEncoder()(audios), np.array([r["speaker"] for r in rows]), np.array([r["corpus"] for r in rows])


def test_a_voice_is_nearer_to_itself_than_to_another(voices):
    embeddings, speakers, _ = voices
    assert embeddings.shape == (len(speakers), EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = embeddings @ embeddings.T
    same = speakers[:, None] == speakers[None, :]
    off_diagonal = ~np.eye(len(speakers), dtype=bool)
    assert similarity[same & off_diagonal].mean() > similarity[~same].mean() + 0.1


def test_groups_lean_to_few_a_mixed_batch_splits_by_recording(voices):
    """Emotion moves a voice's embedding too (an actor's shout and whisper differ), so within one
    corpus the grouping stays whole rather than split an actor by emotion; a batch of two corpora,
    whose recordings differ plainly, splits along them."""
    from sklearn.metrics import adjusted_rand_score

    embeddings, speakers, corpora = voices
    emodb = corpora == "emodb"
    assert set(cluster_speakers(embeddings[emodb])) == {0}
    groups = cluster_speakers(embeddings)
    assert len(set(groups)) >= 2 and adjusted_rand_score(corpora, groups) > 0.5
    assert set(cluster_speakers(embeddings[:9])) == {0}  # fewer than 20 clips: nothing to split
