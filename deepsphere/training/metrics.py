r"""Evaluation metrics on numpy arrays.

Classification-type metrics take ``scores`` of shape ``(n, n_classes)`` (probabilities or
any monotone score; segmentation outputs are flattened over pixels first) and integer
``target`` of shape ``(n,)``. Regression metrics take ``pred`` and ``target`` of equal
shape and are computed over all elements.

Definitions (``TP_c``, ``FP_c``, ``FN_c`` counted on the arg-max prediction):

- precision :math:`P_c = TP_c / (TP_c + FP_c)`, recall :math:`R_c = TP_c / (TP_c + FN_c)`,
  IoU :math:`= TP_c / (TP_c + FP_c + FN_c)`; 0 where the denominator is 0.
- average precision (one-vs-rest on the class score, as scikit-learn):
  :math:`AP_c = \sum_k (R_k - R_{k-1}) P_k` over decreasing score thresholds.
- mAP and mIoU: the mean over classes present in ``target`` (mIoU: classes with a
  non-empty union).
- :math:`R^2 = 1 - \sum (y - \hat y)^2 / \sum (y - \bar y)^2`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def _check(scores: np.ndarray, target: np.ndarray):
    scores = np.asarray(scores)
    target = np.asarray(target)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n, n_classes), got shape {scores.shape}")
    if target.shape != (scores.shape[0],):
        raise ValueError(f"target must be (n,) = ({scores.shape[0]},), got shape {target.shape}")
    bad = ~np.isfinite(scores).all(1)
    if bad.any():  # arg-max and ranking of NaN are undefined (numpy picks the first NaN)
        raise ValueError(
            f"scores must be finite: {int(bad.sum())} of {bad.size} rows contain NaN or inf "
            f"(first at row {int(np.argmax(bad))}); the model's outputs diverged or overflowed "
            "(lower the learning rate, or train without float16 autocast)"
        )
    if not np.issubdtype(target.dtype, np.integer) and np.any(target != np.round(target)):
        raise ValueError(
            "target labels must be integers (class indices); got non-integral values such as "
            f"{target[target != np.round(target)][:3].tolist()}"
        )
    if target.size and (target.min() < 0 or target.max() >= scores.shape[1]):
        raise ValueError(
            f"target labels must be in [0, {scores.shape[1]}), got range [{target.min()}, {target.max()}]"
        )
    return scores, target.astype(np.int64)


def confusion_matrix(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class i predicted as class j."""
    scores, target = _check(scores, target)
    k = scores.shape[1]
    pred = scores.argmax(1)
    return np.bincount(target * k + pred, minlength=k * k).reshape(k, k)


def accuracy(scores: np.ndarray, target: np.ndarray) -> float:
    scores, target = _check(scores, target)
    return float(np.mean(scores.argmax(1) == target)) if target.size else float("nan")


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class precision, shape ``(n_classes,)``."""
    c = confusion_matrix(scores, target)
    return _ratio(np.diag(c), c.sum(0))


def recall(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class recall, shape ``(n_classes,)``."""
    c = confusion_matrix(scores, target)
    return _ratio(np.diag(c), c.sum(1))


def mean_class_accuracy(scores: np.ndarray, target: np.ndarray) -> float:
    r"""Mean over classes of the per-class accuracy (recall), classes absent from ``target``
    left out: :math:`\frac{1}{|P|}\sum_{c \in P} C_{cc} / \sum_j C_{cj}` (sklearn's
    ``balanced_accuracy_score``).

    On imbalanced segmentation it is the accuracy that can be told from a constant
    prediction: predicting background everywhere on ClimateNet scores 97.7 % pixel accuracy
    but 33.3 % mean class accuracy. It is what DeepSphere's and UGSCNN's climate experiments
    report as "accuracy" (their evaluation code averages the per-class recalls).
    """
    c = confusion_matrix(scores, target)
    support = c.sum(1)
    present = support > 0
    return float(np.mean(np.diag(c)[present] / support[present])) if present.any() else float("nan")


def iou(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class intersection over union, shape ``(n_classes,)``."""
    c = confusion_matrix(scores, target)
    tp = np.diag(c)
    return _ratio(tp, c.sum(0) + c.sum(1) - tp)


def mean_iou(scores: np.ndarray, target: np.ndarray) -> float:
    c = confusion_matrix(scores, target)
    tp = np.diag(c)
    union = c.sum(0) + c.sum(1) - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")


def _binary_ap(score: np.ndarray, positive: np.ndarray) -> float:
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, p = score[order], positive[order]
    tp = np.cumsum(p)
    # one threshold per distinct score: the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = tp[last].astype(np.float64)
    prec = tp / (last + 1)
    rec = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


def average_precision(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class average precision (one-vs-rest), NaN for classes absent from ``target``."""
    scores, target = _check(scores, target)
    return np.array([_binary_ap(scores[:, c], target == c) for c in range(scores.shape[1])])


def mean_average_precision(scores: np.ndarray, target: np.ndarray) -> float:
    ap = average_precision(scores, target)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def _pair(pred, target):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    return pred.ravel(), target.ravel()


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    p, t = _pair(pred, target)
    return float(np.mean((p - t) ** 2))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    r"""Coefficient of determination :math:`R^2 = 1 - \sum (p - t)^2 / \sum (t - \bar t)^2`.

    NaN for a constant target, where :math:`R^2` is undefined (sklearn's ``r2_score``
    returns 1.0 or 0.0 there by convention).
    """
    p, t = _pair(pred, target)
    ss_tot = np.sum((t - t.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - np.sum((p - t) ** 2) / ss_tot)


def mean_r2(pred: np.ndarray, target: np.ndarray) -> float:
    r"""Mean over outputs (stations, pixels, channels) of each output's :math:`R^2` across
    the samples (days, maps):

    .. math:: \overline{R^2} = \frac{1}{V} \sum_v \Big(1 - \frac{\sum_n (p_{nv} - t_{nv})^2}
              {\sum_n (t_{nv} - \bar t_v)^2}\Big),

    sklearn's ``r2_score(target, pred, multioutput="uniform_average")`` on ``[samples,
    outputs]``, the figure of DeepSphere's GHCN experiments. Unlike :func:`r2`, which pools
    all values, it gives no credit for the differences between stations' means (a station
    always warmer than another). Outputs with a constant target are left out; NaN if all are.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    if p.ndim < 2:
        return r2(p, t)
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    ok = ss_tot > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(1.0 - np.sum((p - t) ** 2, axis=0)[ok] / ss_tot[ok]))


#: Metrics computed by default for each task (the first is monitored for early stopping
#: and the best checkpoint, except regression where the validation loss is). Segmentation
#: monitors the mean IoU: pixel accuracy is dominated by the background class, and picked a
#: near-background predictor as the best epoch once class weights made the model learn
#: the rare classes.
DEFAULTS = {
    "classification": ["accuracy", "mean_average_precision", "precision", "recall"],
    "segmentation": ["mean_iou", "accuracy", "mean_average_precision", "iou",
                     "mean_class_accuracy"],
    "regression": ["mse", "mae", "r2", "mean_r2"],
}
#: Whether larger is better, for picking the best checkpoint.
GREATER_IS_BETTER = {
    "accuracy": True, "mean_class_accuracy": True, "precision": True, "recall": True,
    "average_precision": True,
    "mean_average_precision": True, "iou": True, "mean_iou": True, "r2": True, "mean_r2": True,
    "mse": False, "mae": False, "loss": False,
}


def flatten_outputs(output: np.ndarray, target: np.ndarray, task: str):
    """Bring a model output ``[batch, (vertices,) channels]`` and its target to the
    ``(n, n_classes)`` / ``(n,)`` layout the classification metrics expect."""
    if task == "segmentation":
        return output.reshape(-1, output.shape[-1]), target.reshape(-1)
    return output, target


def softmax_log_odds(logits: np.ndarray) -> np.ndarray:
    r"""Per-class scores :math:`s_c = \log\frac{p_c}{1 - p_c} = z_c - \log\sum_{j \ne c} e^{z_j}`
    of the softmax probabilities :math:`p = \mathrm{softmax}(z)`, in float64.

    :math:`s_c` ranks the samples as :math:`p_c` does (:math:`p_c` is the logistic
    function of :math:`s_c`), so AP is that of the probabilities, and the arg-max is the
    same; but :math:`p_c` itself rounds to exactly 1 beyond a margin of about 17 (float32)
    or 37 (float64), which ties confident samples and changes AP. A logit of -inf
    (probability 0) counts as -1e300; rows with NaN or +inf give NaN (refused by the metrics).
    """
    z = np.asarray(logits, dtype=np.float64)
    k = z.shape[1]
    if k == 1:
        return np.zeros_like(z)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = (np.isnan(z) | (z == np.inf)).any(1, keepdims=True)
        z = np.where(bad, np.nan, np.maximum(z, -1e300))
        out = np.empty_like(z)
        for c in range(k):
            others = np.delete(z, c, axis=1)
            m = others.max(1)
            out[:, c] = z[:, c] - m - np.log(np.exp(others - m[:, None]).sum(1))
    return out


def compute(names, output: np.ndarray, target: np.ndarray, task: str,
            registry=None) -> dict:
    """Evaluate metric ``names`` (registry keys) and return ``{name: float or array}``."""
    from .registry import METRICS

    reg = registry or METRICS
    out, tgt = flatten_outputs(output, target, task)
    if task in ("classification", "segmentation"):
        out = softmax_log_odds(out)
    elif out.shape != tgt.shape and out.size == tgt.size:
        out = out.reshape(tgt.shape)
    return {n: reg.get(n)(out, tgt) for n in names}


def scalars(results: dict, prefix: str = "", class_names: Optional[list] = None) -> dict:
    """Flatten per-class arrays to ``name_<class>`` scalars for CSV logging; matrices
    (confusion) are left out."""
    flat = {}
    for k, v in results.items():
        v = np.asarray(v)
        if v.ndim == 0:
            flat[prefix + k] = float(v)
        elif v.ndim == 1:
            for i, x in enumerate(v):
                flat[f"{prefix}{k}_{i}"] = float(x)
    return flat
