"""Neural-network layers on the sphere: layout ``[batch, vertices, channels]``."""
from .pooling import (HEALPixPool, HEALPixUnpool, HierarchyPool, HierarchyUnpool,  # noqa: F401
                      RemapPool)
