r"""A constant sparse square matrix (a graph operator such as the rescaled Laplacian
:math:`\tilde L`) held by a module, and the conversion of any sparse input to the torch
sparse CSR view the layers compute with."""
from __future__ import annotations

import warnings
from typing import Optional, Union

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

__all__ = ["SparseOperator", "as_csr_operator", "describe_vertices"]

_INT32_MAX = 2**31 - 1


def _csr_tensor(crow: Tensor, col: Tensor, values: Tensor, n: int) -> Tensor:
    with warnings.catch_warnings():  # torch's one-time "sparse CSR is in beta" notice
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, col, values, size=(n, n), check_invariants=False)


def _index_dtype(n: int, nnz: int) -> torch.dtype:
    # int32 wherever it fits: the CPU sparse kernels convert int64 indices to int32 on every
    # product (a copy of nnz indices each time); int64 only past 2**31 entries.
    return torch.int32 if max(n, nnz) <= _INT32_MAX else torch.int64


def describe_vertices(n: int) -> str:
    """``"3072 vertices (a full HEALPix sphere at nside=16)"``, or just the count."""
    nside = int(round(np.sqrt(n / 12))) if n > 0 else 0
    if nside > 0 and 12 * nside * nside == n and (nside & (nside - 1)) == 0:
        return f"{n} vertices (a full HEALPix sphere at nside={nside})"
    return f"{n} vertices"


def _csr_parts(matrix) -> tuple:
    """(crow_indices, col_indices, values, n) of a square sparse matrix, sorted CSR."""
    if isinstance(matrix, SparseOperator):
        return matrix.crow_indices, matrix.col_indices, matrix.values, matrix.n
    if sp.issparse(matrix):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"the operator must be a square matrix, got shape {matrix.shape}")
        M = sp.csr_matrix(matrix)
        M.sum_duplicates()
        M.sort_indices()
        n = M.shape[0]
        idx = _index_dtype(n, M.nnz)
        np_idx = np.int32 if idx == torch.int32 else np.int64
        crow = torch.from_numpy(M.indptr.astype(np_idx, copy=True))
        col = torch.from_numpy(M.indices.astype(np_idx, copy=True))
        values = torch.from_numpy(np.array(M.data, copy=True))
        return crow, col, values, n
    if isinstance(matrix, Tensor):
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"the operator must be a square matrix, got shape {tuple(matrix.shape)}"
            )
        if matrix.layout == torch.sparse_coo:
            matrix = matrix.coalesce().to_sparse_csr()
        elif matrix.layout != torch.sparse_csr:
            raise TypeError(
                f"the operator must be sparse (torch sparse CSR or COO, scipy.sparse, or a "
                f"SparseOperator); got a torch tensor with layout {matrix.layout}. Use "
                "tensor.to_sparse_csr() if a dense matrix is really meant."
            )
        return (matrix.crow_indices(), matrix.col_indices(), matrix.values(),
                int(matrix.shape[0]))
    raise TypeError(
        "the operator must be a scipy.sparse matrix, a torch sparse CSR/COO tensor or a "
        f"deepsphere.nn.SparseOperator; got {type(matrix).__name__}"
    )


def as_csr_operator(matrix, n: Optional[int] = None, dtype: Optional[torch.dtype] = None,
                    device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """The torch sparse CSR tensor a layer computes with, from any supported operator.

    Parameters
    ----------
    matrix : scipy.sparse matrix, torch sparse CSR or COO tensor, or SparseOperator
        A square matrix.
    n : int, optional
        Required size; a clear error says which graph ``matrix`` and ``n`` belong to if they
        differ.
    dtype, device : optional
        Required dtype / device. A scipy matrix (which has neither) is converted to them; a
        torch operator that differs is an error (move it once with ``.to()`` rather than on
        every call).

    Returns
    -------
    Tensor
        Sparse CSR, int32 indices where they fit (int64 otherwise), never requiring grad.
    """
    crow, col, values, size = _csr_parts(matrix)
    if n is not None and size != n:
        raise ValueError(
            f"size mismatch: the signal has {describe_vertices(n)} but the operator is "
            f"{size} x {size}, i.e. built for {describe_vertices(size)}. Pass the operator "
            "of the graph the signal lives on (after pooling, the coarser level's operator)."
        )
    if values.requires_grad:
        raise ValueError(
            "the operator requires grad, but it is a constant of the layer (gradients with "
            "respect to it are not computed); pass it detached: L.detach()"
        )
    from_scipy = sp.issparse(matrix)
    if dtype is not None and values.dtype != dtype:
        if not from_scipy:
            raise TypeError(
                f"dtype mismatch: the signal is {dtype} but the operator is {values.dtype}; "
                f"convert the operator once with .to({dtype}) (or the model with .to())"
            )
        values = values.to(dtype)
    if device is not None and values.device != torch.device(device):
        if not from_scipy:
            raise TypeError(
                f"device mismatch: the signal is on {torch.device(device)} but the operator "
                f"is on {values.device}; move the operator once with .to({str(device)!r}) "
                "(or the model with .to())"
            )
        crow, col, values = crow.to(device), col.to(device), values.to(device)
    idx = _index_dtype(size, values.numel())
    if crow.dtype != idx:
        crow, col = crow.to(idx), col.to(idx)
    return _csr_tensor(crow, col, values, size)


class SparseOperator(nn.Module):
    r"""A constant sparse square matrix held as non-persistent CSR buffers.

    ``crow_indices``, ``col_indices`` and ``values`` are plain dense buffers, so
    ``.to(device)`` / ``.double()`` move and cast the matrix, :func:`copy.deepcopy` works
    (torch sparse CSR tensors cannot be deep-copied), and the matrix is left out of the
    ``state_dict`` (a checkpoint keeps the graph recipe, not the matrix). Indices are int32
    where they fit and int64 past :math:`2^{31}` entries.

    Parameters
    ----------
    matrix : scipy.sparse matrix, torch sparse CSR or COO tensor, or SparseOperator
        A square matrix, typically :math:`\tilde L = 2L/\lambda_{max} - I`.
    dtype : torch.dtype, optional
        Value dtype (default: float32 for a scipy matrix, the tensor's own otherwise).
    check_symmetric : bool
        Raise if the matrix is not symmetric (to rounding). :class:`~deepsphere.nn.ChebConv`
        relies on :math:`\tilde L^\top = \tilde L` in its backward pass.

    Calling the module (or :meth:`csr`) returns the torch sparse CSR view.
    """

    def __init__(self, matrix, dtype: Optional[torch.dtype] = None, check_symmetric: bool = True):
        super().__init__()
        if check_symmetric:
            _check_symmetric(matrix)
        crow, col, values, n = _csr_parts(matrix)
        if not bool(torch.isfinite(values).all()):
            raise ValueError(
                "the operator has NaN or infinite values; build it from a graph with finite "
                "weights (SphereGraph.chebyshev_operator) and a positive finite lmax"
            )
        if dtype is None:
            dtype = torch.get_default_dtype() if sp.issparse(matrix) else values.dtype
        idx = _index_dtype(n, values.numel())
        self.n = int(n)
        self.register_buffer("crow_indices", crow.detach().to(idx).clone(), persistent=False)
        self.register_buffer("col_indices", col.detach().to(idx).clone(), persistent=False)
        self.register_buffer("values", values.detach().to(dtype).clone(), persistent=False)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, self.n))

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def csr(self) -> Tensor:
        """The torch sparse CSR view (shares memory with the buffers)."""
        return _csr_tensor(self.crow_indices, self.col_indices, self.values, self.n)

    def forward(self) -> Tensor:
        return self.csr()

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.values.detach().cpu().numpy(),
                              self.col_indices.cpu().numpy(), self.crow_indices.cpu().numpy()),
                             shape=(self.n, self.n))

    def extra_repr(self) -> str:
        return f"{describe_vertices(self.n)}, nnz={self.nnz}, dtype={self.dtype}"


def _check_symmetric(matrix) -> None:
    if isinstance(matrix, SparseOperator):
        return
    if isinstance(matrix, Tensor) and matrix.layout in (torch.sparse_csr, torch.sparse_coo):
        if matrix.dim() != 2:
            return  # _csr_parts raises the shape error
        M = matrix.to_sparse_coo().coalesce().cpu()
        i = M.indices().numpy()
        M = sp.csr_matrix((M.values().detach().numpy(), (i[0], i[1])), shape=tuple(M.shape))
    elif sp.issparse(matrix):
        M = sp.csr_matrix(matrix)
    else:
        return
    if M.shape[0] != M.shape[1]:
        return
    asym = abs(M - M.T).max() if M.nnz else 0.0
    scale = abs(M).max() if M.nnz else 1.0
    if asym > 1e-5 * max(scale, 1e-30):
        raise ValueError(
            f"the operator is not symmetric (max |L - L^T| = {asym:.3g}); Chebyshev filters "
            "here need a symmetric L~ = 2L/lmax - I, e.g. from a symmetric adjacency with the "
            "'normalized' or 'combinatorial' Laplacian. Pass check_symmetric=False only for a "
            "matrix you know to be symmetric."
        )
