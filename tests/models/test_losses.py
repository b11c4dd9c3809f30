import numpy as np
import pytest
import torch

from ray_ser.evaluate import emotion_metrics
from ray_ser.models.losses import EmotionLoss, build_loss, class_weights


def test_class_weights_follow_the_inverse_prior():
    w = class_weights([300, 100, 0, 50])
    assert w[2] == 0 and w[3] > w[1] > w[0] and w[[0, 1, 3]].mean() == pytest.approx(1.0)


def test_focal_loss_reduces_to_ce_at_gamma_zero_and_downweights_easy_examples():
    logits, targets = torch.randn(16, 8), torch.randint(0, 8, (16,))
    assert EmotionLoss(gamma=0)(logits, targets) == pytest.approx(torch.nn.functional.cross_entropy(logits, targets))
    easy = torch.full((4, 8), -5.0)
    easy[:, 0] = 5.0
    assert EmotionLoss(gamma=2)(easy, torch.zeros(4, dtype=torch.long)) < 1e-6 * 5
    weights = torch.tensor([2.0] * 8 + [1.0] * 8)
    doubled = torch.cat([logits[:8], logits[:8], logits[8:]]), torch.cat([targets[:8], targets[:8], targets[8:]])
    assert EmotionLoss()(logits, targets, weights) == pytest.approx(EmotionLoss()(*doubled))
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("hinge", [1] * 8)


def _imbalanced(seed, n_major=600, n_minor=40):
    """Two overlapping Gaussian classes, 15:1, like neutral vs fear in MSP-Podcast."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (n_major, 2)), rng.normal(1.2, 1, (n_minor, 2))])
    y = np.array([0] * n_major + [1] * n_minor)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _minority_recall(loss_kind):
    torch.manual_seed(0)
    x, y = _imbalanced(0)
    model = torch.nn.Linear(2, 2)
    loss_fn = build_loss(loss_kind, np.bincount(y.numpy(), minlength=2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    xt, yt = _imbalanced(1)
    pred = model(xt).argmax(-1).numpy()
    return float((pred[yt.numpy() == 1] == 1).mean()), emotion_metrics(yt.numpy(), pred, 2)["uar"]


def test_weighting_raises_minority_recall():
    plain, _ = _minority_recall("ce")
    weighted, uar = _minority_recall("weighted_ce")
    focal, _ = _minority_recall("weighted_focal")
    assert weighted > plain + 0.3 and focal > plain + 0.3
    assert uar > 0.6


def test_emotion_metrics_against_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    rng = np.random.default_rng(3)
    t, p = rng.integers(0, 8, 200), rng.integers(0, 8, 200)
    m = emotion_metrics(t, p, 8)
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro"))
    assert m["uar"] == pytest.approx(recall_score(t, p, average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(t, p))
