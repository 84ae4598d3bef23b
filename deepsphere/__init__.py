"""deepsphere: deep learning on the sphere with graphs.

The package is layered the way data flows through it::

    sampling  ->  graph  ->  nn  ->  models  ->  training
                (spectral and equivariance beside, as the exact reference)
"""
from . import sampling, graph, nn  # noqa: F401

__version__ = "0.1.0"

__all__ = ["sampling", "graph", "nn", "__version__"]
