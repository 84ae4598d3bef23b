"""Where the pixels are: HEALPix, equiangular and irregular samplings of the sphere."""
from .base import Sampling
from .healpix import HEALPix, UNSEEN, check_nside, closure, is_closed, to_nested
from .equiangular import Equiangular
from .irregular import Irregular

__all__ = ["Sampling", "HEALPix", "Equiangular", "Irregular", "UNSEEN", "check_nside",
           "closure", "is_closed", "to_nested"]
