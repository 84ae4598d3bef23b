"""Predictions of a trained run on new maps, without rebuilding its dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from . import checkpoint as ckpt
from .builders import build_model, build_sampling
from .config import load_config
from .trainer import BEST, CONFIG_FILE, LAST, info_namespace, resolve_device


def load_model(run_dir: Union[str, Path], which: str = "best", device: Optional[str] = None):
    """``(model, sampling, data_info, device)`` of a run directory, the model in eval mode
    with the ``best`` or ``last`` checkpoint's weights."""
    if which not in ("best", "last"):  # anything else read as 'last' before
        raise ValueError(f"which={which!r}: choose 'best' (the best-validation checkpoint) "
                         "or 'last' (the last epoch's)")
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no {CONFIG_FILE})")
    config = load_config(run_dir / CONFIG_FILE)
    dev = resolve_device(device or config.trainer.device)
    state = ckpt.load(run_dir / (BEST if which == "best" else LAST))
    sampling = build_sampling(config)
    info = state["data_info"]
    model = build_model(config, sampling, info_namespace(info))
    model.load_state_dict(state["model"])
    return model.to(dev).eval(), sampling, info, dev


def as_batch(x: np.ndarray, sampling, in_channels: int, order: Optional[str] = None) -> np.ndarray:
    """Bring maps to ``[n, sampling.npix, in_channels]``: accepts ``(npix,)``,
    ``(n, npix)``, ``(npix, C)`` and ``(n, npix, C)``; full-sky HEALPix maps (in
    ``order``, 'NESTED' or 'RING', which they require) are restricted to the sampling's
    pixels. Maps of a partial sky's own pixels are in the sampling's order and need none."""
    from ..sampling import HEALPix

    x = np.asarray(x)
    if order not in (None, "NESTED", "RING"):
        raise ValueError(f"order must be 'NESTED' or 'RING', got {order!r}")
    if order not in (None, "NESTED") and not isinstance(sampling, HEALPix):  # would be ignored silently
        raise ValueError(f"order={order!r} is a HEALPix pixel ordering, but this run's sampling is "
                         f"{type(sampling).__name__}: give its points in the sampling's own order")
    if not np.issubdtype(x.dtype, np.floating):
        how = (": convert them with maps.astype(np.float32)"
               if np.issubdtype(x.dtype, np.integer) or x.dtype == bool else "")
        raise ValueError(f"maps must be floating point, got dtype {x.dtype}{how}")
    sizes = {sampling.npix}
    if isinstance(sampling, HEALPix):
        sizes.add(12 * sampling.nside**2)
    if x.ndim == 1:
        x = x[None, :, None]
    elif x.ndim == 2:
        if x.shape[1] in sizes:
            x = x[:, :, None]
        elif x.shape[0] in sizes and x.shape[1] == in_channels:
            x = x[None]
        else:
            raise ValueError(
                f"cannot read maps of shape {x.shape}: expected (n, {sampling.npix}) or "
                f"({sampling.npix}, {in_channels})" + (f"; full sky has {12 * sampling.nside**2} pixels"
                                                     if isinstance(sampling, HEALPix) else "")
            )
    if x.ndim != 3 or x.shape[1] not in sizes:
        raise ValueError(
            f"maps of shape {x.shape} do not match the run's sampling ({sampling!r}): expected "
            f"(n, {sampling.npix}, {in_channels})"
        )
    if x.shape[0] == 0:
        raise ValueError(f"no maps to predict on: the array has shape {x.shape}")
    if x.shape[2] != in_channels:
        raise ValueError(f"maps have {x.shape[2]} channels, the model takes {in_channels}")
    if isinstance(sampling, HEALPix):
        full = 12 * sampling.nside**2
        if order is None and x.shape[1] == full:
            # an array carries no ordering, and healpy's default is RING: a RING map read as
            # NESTED gives a confident wrong answer, detected only when it is very smooth
            raise ValueError(
                f"these are full-sky HEALPix maps ({full} pixels, nside {sampling.nside}), whose "
                "pixel ordering an array does not record: pass order='NESTED' or order='RING' "
                "(--order NESTED|RING). healpy.read_map returns RING unless nest=True; "
                "healpy.reorder(m, r2n=True) converts.")
        try:
            x = np.moveaxis(sampling.take(np.moveaxis(x, 1, -1), order or "NESTED"), -1, 1)
        except ValueError as e:
            if "UNSEEN" not in str(e):
                raise
            # take's advice (a new sampling, unseen='zero') is for building datasets; here
            # the run's pixels are fixed and every one of them needs a value
            where = str(e).split(". Restrict")[0]  # the count and first positions
            raise ValueError(
                f"{where}: predict needs a value at each of the run's pixels (positions "
                "count in the run's sampling order). Fill the missing ones "
                "(e.g. with the map's mean) or predict with a run trained on the observed "
                "pixels only") from None
    elif not np.all(np.isfinite(x)):
        raise ValueError("maps contain NaN or inf values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _with_time_features(x, sampling, info: dict, order: Optional[str], times) -> np.ndarray:
    """The batch of maps, with the known-feature channels of the target times appended when
    the run's dataset had them (station datasets: season, local hour) and ``times`` is given."""
    from ..data.stations import TIME_FEATURES, time_features

    C = info["in_channels"]
    feats = info.get("known_features")
    if times is not None and feats is None:
        raise ValueError("times were given, but this run's inputs have no time features (its "
                         "dataset appended no season or hour channels): leave times out")
    if feats is None:
        return as_batch(x, sampling, C, order)
    kind, n = feats["kind"], feats["channels"]
    what, how = TIME_FEATURES.get(kind, ("the target time", "the dataset's own code"))
    if times is None:
        try:  # maps holding the past values only: say which channels are missing
            as_batch(x, sampling, C - n, order)
        except ValueError:
            return as_batch(x, sampling, C, order)  # all channels given (or another problem)
        raise ValueError(
            f"this run's model takes {C} channels: {C - n} of past values, then {n} {kind} "
            f"features of the target time, which these maps lack. Give {what}, one per map, "
            f"as predict(..., times=[...]) or --times T1,T2,... and they are computed; or "
            f"append them yourself after the past values, unnormalised: {how}")
    batch = as_batch(x, sampling, C - n, order)
    t = np.atleast_1d(np.asarray(times))
    if t.ndim != 1 or len(t) != len(batch):
        raise ValueError(f"times must give one target time per map: {len(batch)} maps, "
                         f"{t.size} times")
    f = time_features(kind, t, sampling)
    return np.concatenate([batch, f.astype(np.float32)], axis=2)


@torch.no_grad()
def predict(model, sampling, info: dict, x: np.ndarray, order: Optional[str] = None, device=None,
            batch_size: int = 32, times=None) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` (classification), per-pixel labels
    ``(n, npix)`` (segmentation) or values (regression). ``x`` holds raw maps: the run's
    input normalisation (``info["input_transform"]``, if its dataset had one) is applied
    here, and regression values come back in the units of the data (target shift undone).

    Station regression runs take, per station, the past values (oldest first, in the data's
    units) and then the known features of the target time their dataset appended
    (``info["known_features"]``): with ``season: True`` (``ghcn_daily``,
    ``synthetic_stations``) the sine and cosine of the day of the year
    (:func:`~deepsphere.data.stations.day_of_year_features`), with ``local_time: True``
    (``sao_hourly``) those of the local solar time. Either give the maps with the past values
    only and ``times``, one per map (dates such as ``'2020-03-01'`` for the day predicted;
    hours of the day, UTC, for ``sao_hourly``), and the features are computed; or give all
    ``info["in_channels"]`` channels, features included (unnormalised), and no ``times``.

    Full-sky HEALPix maps need their ``order``, 'NESTED' or 'RING' (an array does not record
    it, and a RING map read as NESTED gives a confident wrong answer); maps of a partial-sky
    run's own pixels, in ``sampling.pixels`` order, and maps on other samplings need none.

    Per-pixel outputs (segmentation, per-pixel regression) of a full-sky HEALPix run come back
    in the input's ``order`` (a RING input gives RING labels); on a partial sky they follow the
    run's pixels, ``sampling.pixels`` (NESTED indices).

    ``device`` defaults to the model's (where :func:`load_model` put it).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if device is None:  # a "cpu" default failed on a CUDA model with torch's device mismatch
        device = next(iter(model.parameters()), torch.empty(0)).device
    batch = _with_time_features(x, sampling, info, order, times)
    tf = info.get("input_transform")  # the training data's normalisation, applied to raw maps
    if tf is not None:
        batch = ((batch - np.float32(tf["shift"])) / np.float32(tf["scale"])).astype(np.float32)
    outs = []
    for i in range(0, len(batch), batch_size):
        outs.append(model(torch.from_numpy(batch[i:i + batch_size]).to(device)).float().cpu())
    out = torch.cat(outs)
    if info["task"] == "classification":
        return out.softmax(-1).numpy()
    if info["task"] == "segmentation":
        return _in_input_order(out.argmax(-1).numpy(), sampling, order)
    return _in_input_order(out.numpy() + (0.0 if tf is None else np.float32(tf.get("target_shift", 0.0))),
                           sampling, order)


def _in_input_order(y: np.ndarray, sampling, order: Optional[str]) -> np.ndarray:
    """Per-pixel outputs ``(n, npix, ...)`` of a full-sky HEALPix run from NESTED to the
    input's ``order`` (they were returned NESTED for a RING input, scrambling any overlay)."""
    from ..sampling import HEALPix

    if order != "RING" or not isinstance(sampling, HEALPix) or not sampling.full_sky \
            or y.ndim < 2 or y.shape[1] != sampling.npix:
        return y
    import healpy as hp

    return y[:, hp.ring2nest(sampling.nside, np.arange(sampling.npix))]
