r"""The sparse-dense products of the Chebyshev recursion,
:math:`\text{out} \leftarrow \beta\,\text{out} + \alpha\, \tilde L X`, on CPU.

On CPU the products run in a small C kernel (``spmm_kernel.c``) compiled once per machine
with the system's C compiler and cached on disk; everywhere else, and whenever the kernel
cannot be built, they run in torch (``out.addmm_(L, X)``, MKL on x86). On a HEALPix graph
at nside 256 with ``B·F = 64``–``2048`` columns the kernel is 1.5–2.5× faster than torch's
product (2 threads); ``BENCHMARKS.md`` ("Chebyshev layer at scale") has the measurements.

The kernel's rows are split between ``torch.get_num_threads()`` threads (balanced by
nonzeros) of torch's own OpenMP pool: the kernel is linked against the ``libgomp.so.1`` torch
has loaded, so the two never compete for the cores. Where the compiler lacks OpenMP, Python
threads run the shares instead. Each row is summed in the matrix's order by one thread, so the
result does not depend on the number of threads.

Environment
-----------
``DEEPSPHERE_SPMM``
    ``auto`` (default): the kernel on CPU where it builds, torch otherwise. ``torch``:
    always torch. ``native``: the kernel, and an error if it cannot be built or used.
``DEEPSPHERE_CACHE_DIR``
    Where the compiled kernel is kept (default ``$XDG_CACHE_HOME/deepsphere`` or
    ``~/.cache/deepsphere``). The file name hashes the source, the compiler and the CPU, so
    a cache shared between different machines never loads a kernel built for another CPU.
``CC``
    The C compiler (default ``cc``).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["sparse_addmm_", "native_available", "kernel_path", "backend"]

_SOURCE = Path(__file__).with_name("spmm_kernel.c")
_ABI_VERSION = 3
_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
# Tried first: with OpenMP the kernel runs on torch's own thread pool (the library links the
# libgomp.so.1 torch has loaded). Without it (e.g. a compiler lacking OpenMP) the rows are
# split between Python threads, whose waits compete with torch's spinning OpenMP workers.
_OPENMP_FLAGS = ("-fopenmp",)
_USE_OPENMP = True  # False: Python threads even where the build has OpenMP (for tests)
# Below this many multiply-adds a product runs on the calling thread alone: handing work to
# other threads costs more than it saves (sub-millisecond products on 2 cores: even).
# ChebConv runs its whole small calls on one thread below the same bound.
PARALLEL_WORK = 2**22
# Prefetch the first bytes of the neighbour rows of the row this far ahead: the hardware
# prefetchers follow a row once it has started, but not the jump to the next neighbour.
# Measured at nside 256 (2 threads): 1.25x at B·F = 64, neutral at 256-1024; prefetching
# whole rows instead was 1.2-1.3x slower at B·F = 1024, and rows of one cache line
# (B·F = 16) were up to 2x slower with prefetching than without.
_PREFETCH = 2
_PREFETCH_BYTES = 128
_PREFETCH_MIN_ROW_BYTES = 256
# A beta = 0 output at least this large is written with streaming stores (no read of the
# old lines): it cannot stay in the caches for the next product anyway.
_STREAM_BYTES = 64 * 2**20

_lock = threading.Lock()
_state: dict = {}  # "lib": CDLL or None once tried, "error": why not, "pool": (pid, n, executor)


def backend() -> str:
    """``"auto"``, ``"torch"`` or ``"native"``, from ``DEEPSPHERE_SPMM``."""
    mode = os.environ.get("DEEPSPHERE_SPMM", "auto").strip().lower() or "auto"
    if mode not in ("auto", "torch", "native"):
        raise ValueError(
            f"DEEPSPHERE_SPMM={mode!r} is not a backend: use 'auto' (the compiled kernel "
            "on CPU where it builds), 'torch' or 'native'"
        )
    return mode


def _cache_dir() -> Path:
    if os.environ.get("DEEPSPHERE_CACHE_DIR"):
        return Path(os.environ["DEEPSPHERE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepsphere"


def _cpu_signature() -> str:
    # -march=native code runs only on CPUs with the same instruction sets
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("flags", "Features", "model name"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def kernel_path() -> Tuple[Optional[Path], str]:
    """(path of the compiled kernel for this machine, compiler); path None without one."""
    cc = os.environ.get("CC", "cc")
    exe = shutil.which(cc)
    if exe is None:
        return None, cc
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError):
        return None, cc
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), exe.encode(), "".join(version).encode(),
                 " ".join(_FLAGS + _OPENMP_FLAGS).encode(), _cpu_signature().encode()):
        key.update(part)
        key.update(b"\0")
    return _cache_dir() / "kernels" / f"spmm-{key.hexdigest()[:20]}.so", exe


def _build(path: Path, cc: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # compile to a temporary name, then rename: concurrent processes never load half a file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        for extra in (_OPENMP_FLAGS, ()):
            proc = subprocess.run([cc, *_FLAGS, *extra, "-o", tmp, str(_SOURCE)],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                break
        else:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> Optional[ctypes.CDLL]:
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        lib, error = None, ""
        try:
            path, cc = kernel_path()
            if path is None:
                raise RuntimeError(f"no C compiler ({cc!r} not found; set CC)")
            if not path.exists():
                _build(path, cc)
            lib = ctypes.CDLL(str(path))
            if lib.spmm_abi_version() != _ABI_VERSION:
                raise RuntimeError(f"{path} has another interface version; delete it")
            P, I64 = ctypes.c_void_p, ctypes.c_int64
            for name, ct in (("spmm_f32", ctypes.c_float), ("spmm_f64", ctypes.c_double)):
                rows, whole = getattr(lib, name), getattr(lib, name + "_all")
                rows.restype = whole.restype = None
                rows.argtypes = [I64] * 3 + [P] * 5 + [ct, ct, I64, I64, I64, ctypes.c_int]
                whole.argtypes = ([ctypes.c_int, I64, I64] + [P] * 5
                                  + [ct, ct, I64, I64, ctypes.c_int])
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            lib, error = None, str(exc)
        _state["lib"], _state["error"] = lib, error
        if lib is None and backend() == "auto":
            warnings.warn(f"deepsphere's CPU sparse kernel is unavailable ({error}); sparse "
                          "products run in torch instead (slower, same results)",
                          RuntimeWarning, stacklevel=3)
        return lib


def native_available() -> bool:
    """Whether the compiled CPU kernel builds and loads on this machine."""
    return _load() is not None


def _pool(n: int) -> ThreadPoolExecutor:
    pid = os.getpid()
    held = _state.get("pool")
    if held is None or held[0] != pid or held[1] != n:  # a forked child needs its own threads
        held = (pid, n, ThreadPoolExecutor(n, thread_name_prefix="deepsphere-spmm"))
        _state["pool"] = held
    return held[2]


def _usable(out: Tensor, L: Tensor, X: Tensor) -> bool:
    if out.device.type != "cpu" or L.layout != torch.sparse_csr:
        return False
    if out.dtype not in (torch.float32, torch.float64):
        return False
    if not (X.dtype == out.dtype == L.dtype and L.crow_indices().dtype == torch.int32):
        return False
    if X.dim() != 2 or out.shape != (L.shape[0], X.shape[1]) or X.shape[0] != L.shape[1]:
        return False
    if not (X.is_contiguous() and out.is_contiguous() and L.values().is_contiguous()):
        return False
    if torch.is_grad_enabled() and (X.requires_grad or out.requires_grad):
        return False  # autograd records torch's op; the kernel is for no-grad recursions
    size = out.element_size()
    a0, a1 = out.data_ptr(), out.data_ptr() + out.numel() * size
    b0, b1 = X.data_ptr(), X.data_ptr() + X.numel() * size
    return a1 <= b0 or b1 <= a0  # the kernel reads X while writing out


def _check_shapes(out: Tensor, L: Tensor, X: Tensor) -> None:
    if L.dim() != 2 or X.dim() != 2 or out.dim() != 2:
        raise ValueError(f"sparse_addmm_ needs 2-d L, X and out; got L {tuple(L.shape)}, "
                         f"X {tuple(X.shape)}, out {tuple(out.shape)}")
    n, m = L.shape
    if X.shape[0] != m or tuple(out.shape) != (n, X.shape[1]):
        raise ValueError(f"shape mismatch: L is {n} x {m} and X {tuple(X.shape)}, so out must "
                         f"be ({n}, {X.shape[1]}) with X having {m} rows; got out "
                         f"{tuple(out.shape)}")
    if not (out.dtype == X.dtype == L.dtype):
        raise TypeError(f"dtype mismatch: out {out.dtype}, L {L.dtype}, X {X.dtype}; convert "
                        "them to one dtype with .to()")


def sparse_addmm_(out: Tensor, L: Tensor, X: Tensor, *, alpha: float = 1.0,
                  beta: float = 1.0) -> Tensor:
    r"""In place :math:`\text{out} \leftarrow \beta\,\text{out} + \alpha\, L X`; returns ``out``.

    Same contract as ``out.addmm_(L, X, beta=beta, alpha=alpha)`` for a torch sparse CSR
    ``L`` ``[n, m]`` and dense ``X`` ``[m, C]``, ``out`` ``[n, C]``: with ``beta = 0`` the old
    contents of ``out`` are ignored (NaN included). CPU float32/float64 contiguous blocks
    with int32 indices go to the compiled kernel; anything else to torch.
    """
    _check_shapes(out, L, X)
    mode = backend()
    lib = None if mode == "torch" or not _usable(out, L, X) else _load()
    if lib is None:
        if mode == "native":
            reason = _state.get("error") or "the inputs are not CPU float32/float64 " \
                "contiguous blocks with an int32-indexed CSR operator"
            raise RuntimeError(f"DEEPSPHERE_SPMM=native, but the kernel cannot run: {reason}")
        return out.addmm_(L, X, beta=beta, alpha=alpha)
    crow, col, val = L.crow_indices(), L.col_indices(), L.values()
    n, C = out.shape
    ptrs = (crow.data_ptr(), col.data_ptr(), val.data_ptr(), X.data_ptr(), out.data_ptr())

    size = out.element_size()
    prefetch = _PREFETCH if C * size >= _PREFETCH_MIN_ROW_BYTES else 0
    stream = int(beta == 0 and n * C * size >= _STREAM_BYTES and out.data_ptr() % 64 == 0
                 and (C * size) % 64 == 0)  # the streaming stores need 64-byte aligned rows

    threads = torch.get_num_threads()
    nnz = val.numel()
    if threads == 1 or n < 2 * threads or nnz * C < PARALLEL_WORK:
        threads = 1
    if threads == 1 or (_USE_OPENMP and lib.spmm_openmp()):
        whole = lib.spmm_f32_all if out.dtype == torch.float32 else lib.spmm_f64_all
        whole(threads, n, C, *ptrs, alpha, beta, prefetch, _PREFETCH_BYTES, stream)
        return out

    fn = lib.spmm_f32 if out.dtype == torch.float32 else lib.spmm_f64

    def rows(r0: int, r1: int) -> None:  # a share on a Python thread (no OpenMP in the build)
        fn(r0, r1, C, *ptrs, alpha, beta, n, prefetch, _PREFETCH_BYTES, stream)

    # row boundaries with about equal nonzeros per thread; ctypes releases the GIL
    targets = np.linspace(0, nnz, threads + 1)[1:-1]
    cuts = np.searchsorted(crow.numpy(), targets).tolist()
    bounds = [0, *cuts, n]
    pool = _pool(threads - 1)  # the calling thread takes the first share itself
    pending = [pool.submit(rows, bounds[k], bounds[k + 1]) for k in range(1, threads)]
    rows(bounds[0], bounds[1])
    for p in pending:
        p.result()
    return out
