"""Metrics and class weights against scikit-learn on many random cases (ties in the scores,
classes absent from the targets), and their refusal of inputs they cannot score."""
import warnings

import numpy as np
import pytest

from deepsphere.training import metrics as M
from deepsphere.training.losses import balanced_weights

sk = pytest.importorskip("sklearn.metrics")


def _cases(rng, n_cases=60):
    for i in range(n_cases):
        n, k = int(rng.integers(1, 60)), int(rng.integers(2, 6))
        # every other case: scores from 4 levels, so ties are common
        raw = rng.integers(0, 4, (n, k)).astype(float) if i % 2 else rng.normal(size=(n, k))
        scores = np.exp(raw) / np.exp(raw).sum(1, keepdims=True)
        target = rng.integers(0, k - (i % 3 == 0), n)  # every third case: the last class absent
        yield scores, target, k


def test_classification_metrics_match_sklearn_with_ties_and_absent_classes(rng):
    for scores, target, k in _cases(rng):
        pred, labels = scores.argmax(1), np.arange(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns about absent classes
            assert M.accuracy(scores, target) == pytest.approx(sk.accuracy_score(target, pred))
            assert M.mean_class_accuracy(scores, target) == pytest.approx(
                sk.balanced_accuracy_score(target, pred))
            c = sk.confusion_matrix(target, pred, labels=labels)
            np.testing.assert_array_equal(M.confusion_matrix(scores, target), c)
            for mine, theirs in ((M.precision, sk.precision_score), (M.recall, sk.recall_score),
                                 (M.iou, sk.jaccard_score)):
                np.testing.assert_allclose(mine(scores, target), theirs(
                    target, pred, labels=labels, average=None, zero_division=0), atol=1e-12)
        union = c.sum(0) + c.sum(1) - np.diag(c)
        assert M.mean_iou(scores, target) == pytest.approx(np.mean((np.diag(c) / np.maximum(union, 1))[union > 0]))
        ap = M.average_precision(scores, target)
        present = [j for j in range(k) if (target == j).any()]
        expected = [sk.average_precision_score(target == j, scores[:, j]) for j in present]
        np.testing.assert_allclose(ap[present], expected, atol=1e-12)
        assert np.isnan(np.delete(ap, present)).all()  # AP of an absent class is undefined
        assert M.mean_average_precision(scores, target) == pytest.approx(np.mean(expected))


def test_balanced_weights_match_sklearn(rng):
    from sklearn.utils.class_weight import compute_class_weight

    for _ in range(20):
        k = int(rng.integers(2, 7))
        y = rng.integers(0, k, int(rng.integers(k, 200)))
        y[:k] = np.arange(k)  # sklearn needs every class present
        np.testing.assert_allclose(balanced_weights(np.bincount(y, minlength=k)),
                                   compute_class_weight("balanced", classes=np.arange(k), y=y))


def test_regression_metrics_pool_every_output(rng):
    """mse, mae and r2 of a [batch, stations, 1] output are over all elements pooled
    (sklearn on the flattened arrays), not a mean of per-station values."""
    y = rng.normal(size=(30, 5, 1)) + np.arange(5)[:, None]
    p = y + 0.5 * rng.normal(size=y.shape)
    assert M.mse(p, y) == pytest.approx(sk.mean_squared_error(y.ravel(), p.ravel()))
    assert M.mae(p, y) == pytest.approx(sk.mean_absolute_error(y.ravel(), p.ravel()))
    assert M.r2(p, y) == pytest.approx(sk.r2_score(y.ravel(), p.ravel()))
    assert np.isnan(M.r2(np.arange(3.0), np.ones(3)))  # constant target: undefined


def test_mean_r2_is_sklearns_uniform_average_over_stations(rng):
    """mean_r2 of a [days, stations, 1] output is the mean of each station's R^2 over the
    days (sklearn's multioutput='uniform_average' on [days, stations]): the GHCN protocol.
    Station offsets inflate the pooled r2 but not mean_r2."""
    days, stations = 40, 6
    y = rng.normal(size=(days, stations, 1)) + 10 * np.arange(stations)[None, :, None]
    p = y + 0.7 * rng.normal(size=y.shape)
    ref = sk.r2_score(y[..., 0], p[..., 0], multioutput="uniform_average")
    assert M.mean_r2(p, y) == pytest.approx(ref, rel=1e-12)
    assert M.r2(p, y) > 0.99 > ref                              # pooled: credits the offsets
    y[:, 2] = 3.0                                               # a constant station is left out
    keep = [0, 1, 3, 4, 5]
    assert M.mean_r2(p, y) == pytest.approx(
        sk.r2_score(y[:, keep, 0], p[:, keep, 0], multioutput="uniform_average"), rel=1e-12)
    assert M.mean_r2(np.arange(4.0), np.arange(4.0) + 1) == M.r2(np.arange(4.0), np.arange(4.0) + 1)
    assert np.isnan(M.mean_r2(np.zeros((3, 2)), np.ones((3, 2))))
    with pytest.raises(ValueError, match="differs from target shape"):
        M.mean_r2(np.zeros((3, 2)), np.zeros((3, 3)))
    assert "mean_r2" in M.DEFAULTS["regression"] and M.GREATER_IS_BETTER["mean_r2"]


def test_scores_must_be_finite_and_labels_integers():
    """A NaN row was scored as a prediction of class 0 (numpy's arg-max of NaN), and float
    labels were truncated (1.7 -> class 1); both are errors now."""
    s = np.array([[np.nan, 0.0], [0.0, 1.0]])
    for metric in (M.accuracy, M.confusion_matrix, M.average_precision, M.mean_iou):
        with pytest.raises(ValueError, match="scores must be finite: 1 of 2 rows"):
            metric(s, np.array([1, 1]))
    with pytest.raises(ValueError, match="target labels must be integers"):
        M.accuracy(np.eye(2), np.array([1.7, 0.2]))
    with pytest.raises(ValueError, match="target labels must be integers"):
        M.accuracy(np.eye(2), np.array([1.0, np.nan]))
    assert M.accuracy(np.eye(2), np.array([0.0, 1.0])) == 1.0  # integral floats are labels
    with pytest.raises(ValueError, match="scores must be finite"):  # inf logits: NaN softmax
        M.compute(["accuracy"], np.array([[0.0, np.inf], [1.0, 0.0]]), np.array([1, 0]), "classification")


def test_average_precision_of_confident_outputs_is_not_flattened_by_rounding(rng):
    """compute() ranked the samples by float32 softmax probabilities, which round to exactly
    1.0 beyond a logit margin of about 17: thousands of ties, and AP off by 0.01. With two
    classes p_1 = sigmoid(z_1 - z_0), so the exact ranking is by the logit difference."""
    n = 5000
    target = (rng.random(n) < 0.2).astype(int)
    wrong = rng.random(n) < 0.1
    margin = rng.normal(30.0, 8.0, n) * np.where(target ^ wrong, 1, -1)
    logits = np.stack([np.zeros(n), margin], 1).astype(np.float32)
    got = M.compute(["average_precision"], logits, target, "classification")["average_precision"]
    d = logits[:, 1].astype(np.float64) - logits[:, 0]
    np.testing.assert_allclose(got, [sk.average_precision_score(target == 0, -d),
                                     sk.average_precision_score(target == 1, d)], rtol=1e-12)
    seg = M.compute(["mean_average_precision"], logits.reshape(50, 100, 2), target.reshape(50, 100),
                    "segmentation")["mean_average_precision"]
    assert seg == pytest.approx(np.mean(got), rel=1e-12)


def test_softmax_log_odds_is_the_logit_of_the_softmax(rng):
    from scipy.special import logit, softmax

    z = rng.normal(0, 3, (50, 4))
    np.testing.assert_allclose(M.softmax_log_odds(z), logit(softmax(z, axis=1)), rtol=1e-9, atol=1e-9)
    s = M.softmax_log_odds(np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0]]))
    assert np.isfinite(s[0]).all() and s[0, 1] < -1e299  # -inf: probability 0, still ranked
    assert np.isnan(s[1:]).all()


def test_mean_iou_leaves_out_classes_neither_predicted_nor_present(rng):
    """mIoU averages over the classes with a non-empty union, as sklearn's macro jaccard_score
    (labels from target and prediction): a class nobody predicts and no pixel has would count
    as IoU 0 and pull the mean down by a factor (present classes) / (all classes)."""
    for _ in range(20):
        n, k = int(rng.integers(5, 40)), int(rng.integers(3, 7))
        scores = rng.normal(size=(n, k))
        scores[:, -1] = -10.0  # the last class is never predicted ...
        target = rng.integers(0, k - 1, n)  # ... and never present
        pred = scores.argmax(1)
        assert M.mean_iou(scores, target) == pytest.approx(
            sk.jaccard_score(target, pred, average="macro"), rel=1e-12)


@pytest.mark.parametrize("name", sorted(set(M.GREATER_IS_BETTER) - {"loss"}))
def test_greater_is_better_is_the_direction_of_each_metric(name, rng):
    """GREATER_IS_BETTER picks the best checkpoint and the plateau scheduler's mode: each
    built-in metric must score a perfect prediction better than a poor one in its direction."""
    from deepsphere.training.registry import METRICS

    metric = METRICS.get(name)
    if name in ("mse", "mae", "r2", "mean_r2"):
        target = rng.normal(size=(30, 4))
        good, poor = target.copy(), target + rng.normal(size=target.shape)
    else:
        target = np.r_[np.arange(3), rng.integers(0, 3, 27)]
        good = np.eye(3)[target] + 0.01 * rng.random((30, 3))
        poor = rng.random((30, 3))
        poor[np.arange(30), target] = 0.0  # the true class is never first
    g, p = float(np.mean(metric(good, target))), float(np.mean(metric(poor, target)))
    assert g != p
    assert (g > p) == M.GREATER_IS_BETTER[name]
