"""Training losses, built by name from the config (``trainer.loss``).

Model outputs are ``[batch, channels]`` (one prediction per map) or
``[batch, vertices, channels]`` (one per pixel); targets are class indices of shape
``[batch]`` / ``[batch, vertices]`` or values of the output's shape.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


class CrossEntropy(torch.nn.Module):
    r"""Cross-entropy with optional class weights :math:`w_c`:
    :math:`\ell = -\sum_i w_{y_i} \log p_{i, y_i} / \sum_i w_{y_i}` (0 on a batch whose
    items all have weight 0).

    Weights counter class imbalance in segmentation (e.g. background 97 % vs rare
    events); :func:`balanced_weights` gives :math:`w_c = n / (C\, n_c)` over the C classes present.
    """

    def __init__(self, weight: Optional[Sequence[float]] = None):
        super().__init__()
        w = None if weight is None else torch.as_tensor(np.asarray(weight, dtype=np.float32))
        self.register_buffer("weight", w)

    def _prepare(self, output: torch.Tensor):
        if output.dim() == 3:  # [B, N, C] -> [B, C, N], torch's layout
            output = output.transpose(1, 2)
        if self.weight is not None and self.weight.numel() != output.shape[1]:
            raise ValueError(
                f"{self.weight.numel()} class weights for a model with {output.shape[1]} outputs"
            )
        return output, None if self.weight is None else self.weight.to(output.dtype)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, w = self._prepare(output)
        if w is None:
            return F.cross_entropy(output, target.long())
        # torch's weighted mean is 0/0 = NaN on a batch of zero-weight classes only: such a
        # batch carries no weight, so it contributes 0 (and no gradient), not NaN
        target = target.long()
        num = F.cross_entropy(output, target, weight=w, reduction="sum")
        return num / w[target].sum().clamp_min(torch.finfo(num.dtype).tiny)

    def sums(self, output: torch.Tensor, target: torch.Tensor):
        r"""Numerator :math:`\sum_i w_{y_i} \ell_i` and denominator :math:`\sum_i w_{y_i}`
        of the loss on a batch: summed over batches they give the loss of their union,
        which the mean of per-batch losses is not when the weights differ."""
        output, w = self._prepare(output)
        target = target.long()
        num = F.cross_entropy(output, target, weight=w, reduction="sum")
        den = target.numel() if w is None else w[target].sum()
        return float(num), float(den)

    def extra_repr(self) -> str:
        return "" if self.weight is None else f"weight={self.weight.tolist()}"


def loss_sums(loss_fn: torch.nn.Module, output: torch.Tensor, target: torch.Tensor,
              loss: Optional[torch.Tensor] = None):
    """``(numerator, denominator)`` of ``loss_fn`` on a batch, to be summed over batches:
    the loss's own ``sums`` where it has one, else the batch mean times the batch size
    (exact for a mean over items of equal size). ``loss``, the batch's loss when already
    computed, spares computing it again."""
    if hasattr(loss_fn, "sums"):
        return loss_fn.sums(output, target)
    if loss is None:
        loss = loss_fn(output, target)
    return float(loss) * len(output), len(output)


def balanced_weights(counts: Sequence[int]) -> np.ndarray:
    r"""Inverse-frequency class weights :math:`w_c = n / (C\, n_c)` over the :math:`C`
    classes present (scikit-learn's ``class_weight='balanced'``), so that
    :math:`\sum_c n_c w_c = n`; absent classes get weight 0."""
    counts = np.asarray(counts, dtype=np.float64)
    w = np.zeros_like(counts)
    present = counts > 0
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def _regression_target(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if output.shape != target.shape:
        if output.numel() != target.numel():
            raise ValueError(f"output shape {tuple(output.shape)} does not match target {tuple(target.shape)}")
        target = target.reshape(output.shape)
    return target.to(output.dtype)


class MSE(torch.nn.Module):
    def forward(self, output, target):
        return F.mse_loss(output, _regression_target(output, target))


class L1(torch.nn.Module):
    def forward(self, output, target):
        return F.l1_loss(output, _regression_target(output, target))


def cross_entropy(weight: Optional[Sequence[float]] = None) -> torch.nn.Module:
    return CrossEntropy(weight)


def mse(weight=None) -> torch.nn.Module:
    if weight is not None:
        raise ValueError("class_weights apply to classification losses only, not mse")
    return MSE()


def l1(weight=None) -> torch.nn.Module:
    if weight is not None:
        raise ValueError("class_weights apply to classification losses only, not l1")
    return L1()


DEFAULTS = {"classification": "cross_entropy", "segmentation": "cross_entropy", "regression": "mse"}
