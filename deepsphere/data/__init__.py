"""Datasets for training on the sphere.

A dataset, as the trainer (:mod:`deepsphere.training`) uses it, is built as
``Dataset(sampling, **params)`` and exposes:

- ``task``: ``"classification"`` (one label per map), ``"segmentation"`` (one label per
  pixel) or ``"regression"`` (values per map or per pixel);
- ``in_channels`` and ``n_classes`` (classification, segmentation) or ``out_channels``
  (regression);
- ``split(name)`` for ``"train"``, ``"val"``, ``"test"``: a ``torch.utils.data.Dataset``
  whose items are ``(x, y)`` with ``x`` float32 ``[npix, in_channels]`` in the sampling's
  order;
- optionally ``set_epoch(epoch)`` on a split (noise redrawn each epoch),
  ``class_counts()`` (for ``class_weights: balanced``), ``class_names``, and
  ``input_transform()``: ``{"shift": [C floats], "scale": [C floats]}`` when the items are
  normalised, ``x = (raw - shift) / scale`` per channel (plus ``"target_shift"`` for
  regression targets stored as ``raw - target_shift``); ``deepsphere predict`` applies it
  to raw inputs and undoes the target shift.
"""
from .synthetic import SyntheticFields, SyntheticSegmentation, random_alm, power_law
from .climate import ClimateSegmentation, LatLonRegridder, read_climatenet, write_climatenet
from .stations import (GHCNDaily, SAOHourly, SyntheticStations, read_dly, read_ghcnd_stations,
                       read_sao, write_dly)

__all__ = ["SyntheticFields", "SyntheticSegmentation", "random_alm", "power_law",
           "ClimateSegmentation", "LatLonRegridder", "read_climatenet", "write_climatenet",
           "GHCNDaily", "SAOHourly", "SyntheticStations", "read_dly", "read_ghcnd_stations",
           "read_sao", "write_dly"]

# applications: cosmology (convergence maps, patches, real-map loader) and spherical digits,
# imported on first use (so `python -m deepsphere.data.cosmology` runs its module only once)
_LAZY = {"ConvergenceMapFiles": "cosmology", "CosmologyPatches": "cosmology",
         "read_healpix_maps": "cosmology", "SphericalDigits": "digits",
         "load_digit_images": "digits", "project": "digits"}
__all__ += list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
