"""Neural-network layers on the sphere: layout ``[batch, vertices, channels]``."""
from .cheb_conv import ChebConv, cheb_conv  # noqa: F401
from .operator import SparseOperator, as_csr_operator  # noqa: F401
from .spmm import sparse_addmm_  # noqa: F401
from .blocks import ChebBlock, VertexBatchNorm  # noqa: F401
from .pooling import (HEALPixPool, HEALPixUnpool, HierarchyPool, HierarchyUnpool,  # noqa: F401
                      RemapPool)

__all__ = ["ChebConv", "cheb_conv", "SparseOperator", "as_csr_operator", "sparse_addmm_",
           "ChebBlock", "VertexBatchNorm", "HEALPixPool", "HEALPixUnpool", "HierarchyPool", "HierarchyUnpool",
           "RemapPool"]
