"""Turn a :class:`~deepsphere.training.config.Config` into objects: sampling, dataset,
model, loss, optimizer and learning-rate schedule."""
from __future__ import annotations

import inspect
import math
import os
from typing import List, Optional

import numpy as np
import torch

from . import registry
from .config import Config, ConfigError
from .losses import DEFAULTS as DEFAULT_LOSS, balanced_weights

# Arguments the trainer supplies; a config may not set them.
SAMPLING_INJECTED = ()
GRAPH_INJECTED = ("sampling",)
DATA_INJECTED = ("sampling",)
MODEL_INJECTED = ("sampling", "in_channels", "n_classes", "out_channels", "graph", "laplacian")

_TASKS = ("classification", "segmentation", "regression")


# ---- samplings that need more than their constructor --------------------------------
def healpix_sampling(nside: int, levels: int = 0, base_pixels: Optional[List[int]] = None):
    """HEALPix, full sky or the union of some of the 12 base pixels (``base_pixels``:
    indices in 0..11; each is a NESTED block of ``nside**2`` pixels, closed for pooling
    down to nside 1)."""
    from ..sampling import HEALPix

    if base_pixels is None:
        return HEALPix(nside, levels=levels)
    base = sorted(int(b) for b in base_pixels)
    if not base or base[0] < 0 or base[-1] > 11 or len(set(base)) != len(base):
        raise ValueError(f"base_pixels must be distinct integers in 0..11, got {base_pixels!r}")
    pix = (np.asarray(base)[:, None] * nside**2 + np.arange(nside**2)[None, :]).ravel()
    return HEALPix(nside, pix, levels=levels)


def irregular_from_csv(path: str, units: str, lon: str = "lon", lat: str = "lat",
                       id_column: Optional[str] = None):
    """Points (e.g. stations) from a CSV file with lon/lat columns; ``id_column`` names the
    column of station IDs (not ``name``, which a config section uses for the builder)."""
    from ..sampling import Irregular

    return Irregular.from_csv(path, units=units, lon=lon, lat=lat, name=id_column)


# ---- builders --------------------------------------------------------------------
def _construct(section: str, name: str, builder, **kwargs):
    """Call a builder; its argument errors come back prefixed with the config section."""
    try:
        return builder(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{section} ({name}): {e}") from e
    except FileNotFoundError as e:  # the OS's words named neither the config key nor the directory
        raise ConfigError(f"{section} ({name}): {_missing_file(e)}") from e


def _missing_file(e: FileNotFoundError) -> str:
    """A missing data file, and for a relative path where it was looked for: a run's
    config.yaml keeps paths as written, so evaluate and predict from another directory
    did not find them."""
    if e.filename is None:
        return str(e)
    text = f"no such file or directory: {str(e.filename)!r}"
    if not os.path.isabs(e.filename):
        text += (f" (relative paths are read from the current directory, {os.getcwd()}; a run's "
                 "config.yaml keeps them as written, so evaluate and predict a run from the "
                 "directory it was trained in, or give absolute paths)")
    return text


def build_sampling(config: Config):
    s = config.sampling
    return _construct("sampling", s.name, registry.SAMPLINGS.get(s.name), **s.params)


def build_dataset(config: Config, sampling):
    d = config.data
    ds = _construct("data", d.name, registry.DATASETS.get(d.name), sampling=sampling, **d.params)
    task = getattr(ds, "task", None)
    if task not in _TASKS:
        raise ConfigError(
            f"data: dataset {config.data.name!r} has task={task!r}; a dataset must declare "
            f"task as one of {', '.join(_TASKS)} (see deepsphere.data)"
        )
    for attr in ("in_channels", "split"):
        if not hasattr(ds, attr):
            raise ConfigError(f"data: dataset {config.data.name!r} has no {attr!r} (see deepsphere.data)")
    _check_first_item(config.data.name, ds, sampling)
    return ds


def _check_first_item(name: str, ds, sampling) -> None:
    """The first training item's ``x`` is float32 ``[npix, in_channels]``: a user's dataset
    that breaks the contract otherwise failed inside the model's first forward pass, with a
    traceback whose advice (add a batch axis, convert the layer) was about the model."""
    split = ds.split("train")
    if len(split) == 0:
        return
    x = split[0][0]
    shape, dtype = tuple(getattr(x, "shape", ())), getattr(x, "dtype", type(x).__name__)
    want = (sampling.npix, int(ds.in_channels))
    problem = None
    if shape != want:
        problem = f"has shape {shape}, expected {want}"
    elif dtype not in (torch.float32, np.dtype(np.float32)):  # the loader collates numpy too
        problem = f"is {dtype}, expected torch.float32 (convert it with torch.as_tensor(x, dtype=torch.float32))"
    if problem:
        raise ConfigError(
            f"data: dataset {name!r}: x of item 0 of the train split {problem}: items are "
            f"(x, y) with x float32 [npix, in_channels] = [{want[0]}, {want[1]}] in the sampling's "
            "order (see deepsphere.data)")


def n_outputs(dataset) -> int:
    if dataset.task == "regression":
        return int(getattr(dataset, "out_channels", 1))
    return int(dataset.n_classes)


def build_model(config: Config, sampling, dataset) -> torch.nn.Module:
    """The model named in ``config.model``, given what the trainer knows: the sampling,
    input channels, number of outputs and the graph recipe, each passed only if the
    model's constructor takes it."""
    builder = registry.MODELS.get(config.model.name)
    params = inspect.signature(builder).parameters
    offered = {
        "sampling": sampling,
        "in_channels": int(dataset.in_channels),
        "n_classes": n_outputs(dataset),
        "out_channels": n_outputs(dataset),
        "graph": config.graph.recipe(),
        "laplacian": config.graph.laplacian,
    }
    kwargs = {k: v for k, v in offered.items() if k in params}
    return _construct("model", config.model.name, builder, **kwargs, **config.model.params)


# the tasks each built-in loss applies to (plug-in losses are not checked)
_LOSS_TASKS = {"cross_entropy": ("classification", "segmentation"), "mse": ("regression",),
               "l1": ("regression",)}


def build_loss(config: Config, dataset) -> torch.nn.Module:
    t = config.trainer
    name = t.loss or DEFAULT_LOSS[dataset.task]
    if name in _LOSS_TASKS and dataset.task not in _LOSS_TASKS[name]:  # else: a shape error mid-epoch
        raise ConfigError(
            f"trainer.loss: {name!r} is a loss for {' or '.join(_LOSS_TASKS[name])}, but data "
            f"{config.data.name!r} is a {dataset.task} task; use "
            + " or ".join(repr(k) for k, v in _LOSS_TASKS.items() if dataset.task in v)
            + " (or leave trainer.loss out)"
        )
    weight = None
    if isinstance(t.class_weights, list):
        weight = np.asarray(t.class_weights, dtype=np.float64)
        if weight.size != n_outputs(dataset):
            raise ConfigError(
                f"trainer.class_weights: {weight.size} weights for {n_outputs(dataset)} classes"
            )
    elif t.class_weights == "balanced":
        if not hasattr(dataset, "class_counts"):
            raise ConfigError(
                f"trainer.class_weights: 'balanced' needs dataset {config.data.name!r} to give "
                "class_counts(); list the weights instead"
            )
        weight = balanced_weights(dataset.class_counts())
    if weight is not None and not np.any(weight > 0):
        raise ConfigError(
            f"trainer.class_weights: every weight is 0 ({weight.tolist()}), so the loss is 0 and "
            "nothing trains; give some class a positive weight"
        )
    return registry.LOSSES.get(name)(weight=None if weight is None else weight.tolist())


def build_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if len(o.betas) != 2:
        raise ConfigError(f"optim.betas: expected two numbers, got {o.betas!r}")
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


class WarmupCosine:
    """Multiplier of the base rate at epoch e: linear warm-up over ``warmup`` epochs, then
    (``cosine``) a half cosine down to ``min_ratio`` at the last epoch, or constant."""

    def __init__(self, warmup: int, epochs: int, cosine: bool, min_ratio: float):
        self.warmup, self.epochs, self.cosine, self.min_ratio = warmup, epochs, cosine, min_ratio

    def __call__(self, e: int) -> float:
        if e < self.warmup:
            return (e + 1) / (self.warmup + 1)
        if not self.cosine:
            return 1.0
        span = max(self.epochs - self.warmup, 1)
        progress = min((e - self.warmup) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(config: Config, optimizer, greater: bool = False):
    """A torch scheduler stepped once per epoch (``plateau``: with the monitored value,
    ``greater`` when larger is better), or None."""
    s, epochs = config.scheduler, config.trainer.epochs
    L = torch.optim.lr_scheduler
    if s.warmup_epochs < 0:
        raise ConfigError(f"scheduler.warmup_epochs: must be >= 0, got {s.warmup_epochs}")
    if s.name in ("none", "cosine"):
        if s.name == "none" and s.warmup_epochs == 0:
            return None
        if s.name == "cosine" and s.min_lr > config.optim.lr:  # the "decay" would raise the rate
            raise ConfigError(
                f"scheduler.min_lr: {s.min_lr} is above optim.lr {config.optim.lr}; the cosine "
                "schedule decays from optim.lr down to min_lr, so min_lr must be <= optim.lr"
            )
        f = WarmupCosine(s.warmup_epochs, epochs, s.name == "cosine", s.min_lr / config.optim.lr)
        return L.LambdaLR(optimizer, f)
    if s.warmup_epochs:
        raise ConfigError(f"scheduler.warmup_epochs: supported with 'cosine' and 'none' only, not {s.name!r}")
    if s.name == "step":
        return L.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    if s.name == "multistep":
        if not s.milestones:
            raise ConfigError("scheduler.milestones: give the epochs at which to decay, e.g. [30, 60]")
        return L.MultiStepLR(optimizer, milestones=s.milestones, gamma=s.gamma)
    if s.name == "exponential":
        return L.ExponentialLR(optimizer, gamma=s.gamma)
    if s.name == "plateau":
        # the direction is the scheduler's own: a negated value under "min" breaks its
        # relative threshold (best * (1 - 1e-4) lies above a negative best)
        return L.ReduceLROnPlateau(optimizer, mode="max" if greater else "min", factor=s.gamma,
                                   patience=s.patience, min_lr=s.min_lr)
    raise ConfigError(f"scheduler.name: unknown {s.name!r}")
