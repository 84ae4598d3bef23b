"""Plots of a run: learning curves, confusion matrix, Mollweide maps (HEALPix).

matplotlib is optional (the ``plot`` extra): without it every function warns once and
returns without drawing.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..io import atomic_path

_warned = False


def _pyplot():
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            warnings.warn("matplotlib is not installed: plots are skipped (pip install "
                          "'deepsphere[plot]')", stacklevel=3)
            _warned = True
        return None
    return plt


def _save(fig, path: Path) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")


def learning_curves(history: List[dict], monitor: str, path: Path) -> None:
    """Training and validation loss, and the monitored metric, against epochs."""
    plt = _pyplot()
    if plt is None or not history:
        return
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].plot(epochs, [r["train_loss"] for r in history], label="train")
    axes[0].plot(epochs, [r["val_loss"] for r in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    axes[1].plot(epochs, [r.get(monitor, np.nan) for r in history], color="C1")
    axes[1].set(xlabel="epoch", ylabel=monitor, title=monitor)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def confusion(matrix: np.ndarray, class_names: Optional[list], path: Path) -> None:
    plt = _pyplot()
    if plt is None:
        return
    m = np.asarray(matrix)
    k = m.shape[0]
    names = class_names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(1.2 * k + 2, 1.2 * k + 1.5))
    ax.imshow(m, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center")
    ax.set(xticks=range(k), yticks=range(k), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def full_sky(values: np.ndarray, sampling) -> np.ndarray:
    """A full-sky NESTED map with ``values`` on the sampling's pixels, UNSEEN elsewhere."""
    import healpy as hp

    m = np.full(12 * sampling.nside**2, hp.UNSEEN)
    m[sampling.pixels] = values
    return m


def example_maps(sampling, inputs, outputs, targets, task: str, class_names, path: Path) -> None:
    """Mollweide views (``healpy.mollview(nest=True)``) of a few examples: input,
    prediction and target for per-pixel tasks; the input titled with the true and
    predicted class for classification. HEALPix samplings only."""
    from ..sampling import HEALPix

    plt = _pyplot()
    if plt is None or inputs is None or not isinstance(sampling, HEALPix):
        return
    import healpy as hp

    if task != "classification" and np.ndim(outputs) != 3:
        return  # one value per map: nothing to draw on the sphere but the input
    with warnings.catch_warnings():  # healpy's colormap calls are deprecated in matplotlib
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        _draw_maps(plt, hp, sampling, inputs, outputs, targets, task, class_names, path)


def _draw_maps(plt, hp, sampling, inputs, outputs, targets, task, class_names, path):
    n = len(inputs)
    names = class_names or [str(c) for c in range(outputs.shape[-1])]
    cols = 1 if task == "classification" else 3
    fig = plt.figure(figsize=(4.5 * cols, 3.0 * n))
    for i in range(n):
        x = full_sky(inputs[i][:, 0], sampling)
        if task == "classification":
            z = outputs[i] - outputs[i].max()
            p = np.exp(z) / np.exp(z).sum()
            c = int(p.argmax())
            title = f"true {names[int(targets[i])]}, predicted {names[c]} (p={p[c]:.2f})"
            hp.mollview(x, nest=True, fig=fig.number, sub=(n, 1, i + 1), title=title, cbar=True)
            continue
        if task == "segmentation":
            pred, tgt = outputs[i].argmax(-1), targets[i]
            # one colour per class on every panel: a per-panel range gave the same colour to
            # class 1 in a map without class 2 and to class 2 elsewhere
            scale = dict(min=0, max=len(names) - 1,
                         cmap=plt.get_cmap("viridis", len(names)))
            legend = ", ".join(f"{c} {name}" for c, name in enumerate(names))
        else:  # per-pixel regression: the first output channel, one range for both panels
            pred = outputs[i][..., 0]
            tgt = np.asarray(targets[i]).reshape(pred.shape[0], -1)[:, 0]
            both = np.concatenate([np.ravel(pred), np.ravel(tgt)])
            scale = dict(min=float(np.nanmin(both)), max=float(np.nanmax(both)))
            legend = ""
        panels = ((x, "input", {}),
                  (full_sky(pred, sampling), "prediction", scale),
                  (full_sky(tgt, sampling), f"target ({legend})" if legend else "target", scale))
        for j, (m, t, kw) in enumerate(panels):
            hp.mollview(m, nest=True, fig=fig.number, sub=(n, 3, 3 * i + j + 1), title=t, cbar=True,
                        **kw)
    _save(fig, path)
    plt.close(fig)
