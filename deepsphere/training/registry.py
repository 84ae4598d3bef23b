"""Named registries, so a YAML config can say ``model: {name: cnn}`` or point at a user's
own class as ``name: package.module:ClassName``.

A registry maps a short name to a *builder* (a class or a function) and is lazy: the
built-in entries name their import path, so looking up a model does not import healpy
or the graph code until the name is used.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Iterable, Union

Builder = Callable[..., Any]


def import_object(path: str) -> Any:
    """Import ``"package.module:Name"`` (or ``"package.module:Outer.Inner"``).

    The colon form is required so a typo in the module and a typo in the attribute give
    different, precise errors.
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(
            f"{path!r} is not an import path: write it as 'package.module:ClassName'"
        )
    module_name, attr = path.split(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"cannot import module {module_name!r} named in {path!r} ({e}). Is the package "
            "installed, or its folder on PYTHONPATH?"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = sorted(n for n in dir(obj) if not n.startswith("_"))
            raise ValueError(
                f"module {module_name!r} has no attribute {attr!r} (from {path!r}); it defines: "
                f"{', '.join(public[:30])}"
            ) from None
    return obj


class Registry:
    """Name -> builder, for one kind of thing (``"model"``, ``"sampling"``, ...).

    Parameters
    ----------
    kind : str
        What the entries are, used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Union[str, Builder]] = {}

    def register(self, name: str, builder: Union[str, Builder, None] = None):
        """Register ``builder`` under ``name``; usable as a decorator.

        ``builder`` may be an import path ``"package.module:Name"``, resolved on first use.
        """
        if not isinstance(name, str) or not name or ":" in name:
            raise ValueError(f"a {self.kind} name must be a non-empty string without ':', got {name!r}")

        def add(b):
            if name in self._entries and self._entries[name] is not b:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = b
            return b

        return add if builder is None else add(builder)

    def names(self) -> Iterable[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or (isinstance(name, str) and ":" in name)

    def get(self, name: str) -> Builder:
        """The builder for ``name``: a registered name or an import path."""
        if isinstance(name, str) and ":" in name:
            obj = import_object(name)
        elif name in self._entries:
            obj = self._entries[name]
            if isinstance(obj, str):
                obj = import_object(obj)
                self._entries[name] = obj
        else:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}, or give "
                "your own as 'package.module:ClassName'"
            )
        if not callable(obj):
            raise ValueError(f"{self.kind} {name!r} resolves to {obj!r}, which is not callable")
        return obj

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self.names())})"


SAMPLINGS = Registry("sampling")
GRAPHS = Registry("graph builder")
DATASETS = Registry("dataset")
MODELS = Registry("model")
LOSSES = Registry("loss")
METRICS = Registry("metric")

SAMPLINGS.register("healpix", "deepsphere.training.builders:healpix_sampling")
SAMPLINGS.register("equiangular", "deepsphere.sampling:Equiangular")
SAMPLINGS.register("irregular_csv", "deepsphere.training.builders:irregular_from_csv")
SAMPLINGS.register("ghcn_stations", "deepsphere.data.stations:ghcn_sampling")
SAMPLINGS.register("random_stations", "deepsphere.data.stations:random_stations")
SAMPLINGS.register("sao_stations", "deepsphere.data.stations:sao_sampling")

# names as deepsphere.graph.build knows them (a plugin is passed through as its path)
GRAPHS.register("knn", "deepsphere.graph:knn")
GRAPHS.register("healpix", "deepsphere.graph:healpix_neighbours")
GRAPHS.register("radius", "deepsphere.graph:radius")

DATASETS.register("synthetic_fields", "deepsphere.data.synthetic:SyntheticFields")
DATASETS.register("synthetic_segmentation", "deepsphere.data.synthetic:SyntheticSegmentation")
DATASETS.register("climate", "deepsphere.data.climate:ClimateSegmentation")
DATASETS.register("ghcn", "deepsphere.data.stations:GHCNDaily")
DATASETS.register("synthetic_stations", "deepsphere.data.stations:SyntheticStations")
DATASETS.register("sao_hourly", "deepsphere.data.stations:SAOHourly")

MODELS.register("cnn", "deepsphere.models:SphericalCNN")
MODELS.register("unet", "deepsphere.models:SphericalUNet")
MODELS.register("station", "deepsphere.models:StationRegressor")

LOSSES.register("cross_entropy", "deepsphere.training.losses:cross_entropy")
LOSSES.register("mse", "deepsphere.training.losses:mse")
LOSSES.register("l1", "deepsphere.training.losses:l1")

for _m in ("accuracy", "mean_class_accuracy", "confusion_matrix", "precision", "recall",
           "average_precision", "mean_average_precision", "iou", "mean_iou", "mse", "mae", "r2", "mean_r2"):
    METRICS.register(_m, f"deepsphere.training.metrics:{_m}")

# applications (deepsphere.data.cosmology, deepsphere.data.digits)
SAMPLINGS.register("healpix_patch", "deepsphere.data.cosmology:healpix_patch")
DATASETS.register("cosmology", "deepsphere.data.cosmology:CosmologyPatches")
DATASETS.register("cosmology_files", "deepsphere.data.cosmology:ConvergenceMapFiles")
DATASETS.register("digits", "deepsphere.data.digits:SphericalDigits")
MODELS.register("patch_cnn2d", "deepsphere.data.cosmology:PatchCNN2d")
MODELS.register("patch_spectral", "deepsphere.data.cosmology:EmbeddedSpectralClassifier")
MODELS.register("patch_zonal", "deepsphere.data.cosmology:EmbeddedZonalClassifier")
MODELS.register("planar_cnn", "deepsphere.data.digits:PlanarCNN")
MODELS.register("spectral_classifier", "deepsphere.spectral:SpectralClassifier")
MODELS.register("spectral_segmenter", "deepsphere.spectral:SpectralSegmenter")
MODELS.register("zonal_classifier", "deepsphere.spectral:ZonalClassifier")
