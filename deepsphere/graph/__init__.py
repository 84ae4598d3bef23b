"""Who neighbours whom: graphs on samplings of the sphere, their Laplacians and
Chebyshev operators, and conversions to torch_geometric and pygsp."""
from .builders import build, equivalent_nside, healpix_neighbours, knn, radius
from .kernel import TUNED_SIGMA, heat_kernel, heuristic_t, sigma_to_t, t_to_sigma, tuned_sigma
from .sphere_graph import LAPLACIANS, SphereGraph, scipy_to_torch_csr

__all__ = ["SphereGraph", "build", "healpix_neighbours", "knn", "radius", "equivalent_nside",
           "TUNED_SIGMA", "tuned_sigma", "sigma_to_t", "t_to_sigma", "heat_kernel",
           "heuristic_t", "LAPLACIANS", "scipy_to_torch_csr"]
