"""Models built from a sampling and a graph recipe: a classifier (:class:`SphericalCNN`),
a segmenter (:class:`SphericalUNet`) and a per-vertex regressor (:class:`StationRegressor`)."""
from ._common import DEFAULT_GRAPH
from .base import SphereModel
from .cnn import SphericalCNN
from .regressor import StationRegressor
from .unet import SphericalUNet

__all__ = ["SphereModel", "SphericalCNN", "SphericalUNet", "StationRegressor",
           "DEFAULT_GRAPH"]
