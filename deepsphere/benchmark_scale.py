r"""The Chebyshev layer at scale: memory bandwidth, the sparse product against its
bandwidth bound, the layer with either sparse product, time against the number of vertices,
and a U-Net's peak memory.

Five measurements (``python -m deepsphere.benchmark_scale
{bandwidth,spmm,layer,scaling,unet}``):

``bandwidth``
    A STREAM-like triad ``a = b + s c`` (one fused ``torch.add(b, c, alpha=s, out=a)``) on
    arrays far larger than the caches, counted as STREAM does: ``3 n itemsize`` bytes per
    call (no write-allocate traffic). Best of the repeats, GB/s = 1e9 bytes/s.
``spmm``
    One sparse product ``out <- beta out + alpha L X`` with ``L`` the layer's own operator
    (torch CSR, int32 indices, float32) and ``X`` ``[n, C]`` with ``C = B F`` columns (the
    batch folded into the columns, as :class:`~deepsphere.nn.ChebConv` does), by torch's
    ``out.addmm_`` and by the layer's compiled kernel (:mod:`deepsphere.nn.spmm`), in the
    same process. The least traffic it can do is
    reading the matrix once and ``X`` once and writing the output once,

    .. math:: \text{bytes} = \text{nnz}\,(s_v + s_i) + (n+1)\, s_i + 2\, n\, C\, s_f ,

    (``beta = 0``, the first product of the recursion); the recursion's other steps
    (``beta = 1``) also read the output, one more :math:`n C s_f`. Achieved GB/s is that
    count over the best time, and ``fraction`` divides it by the triad's GB/s at the same
    number of threads.
``layer``
    :class:`~deepsphere.nn.ChebConv` forward and forward+backward with torch's sparse product
    and with the compiled kernel, alternating call by call in one process (their outputs
    checked to agree first).
``scaling``
    :class:`~deepsphere.nn.ChebConv` forward and forward+backward time against the number of
    vertices, with the exponent :math:`q` of a least-squares fit ``time ~ n^q``.
``unet``
    Peak resident memory of one training step (forward, loss, backward) of a
    :class:`~deepsphere.models.SphericalUNet`, each variant in its own process: the peak is
    the growth of the kernel's high-water mark (``VmHWM``, reset through
    ``/proc/self/clear_refs``) above the resident set once the model and the input exist,
    so it includes the layers' scratch memory and the gradients.

Timings are wall clock and depend on the machine's load; nothing here asserts on them.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .benchmark import machine, naive_cheb_conv, saved_bytes
from .cli import nside_arg, positive_float, positive_int
from .io import atomic_write_text

GRAPH = {"kind": "knn", "k": 8, "kernel_width": "tuned"}


# ---- helpers ----------------------------------------------------------------------------
def wall_times(fn: Callable[[], object], repeats: int, max_seconds: float = 60.0) -> List[float]:
    """Wall times (s) of ``fn`` after one warm-up call; stops early past ``max_seconds``."""
    fn()
    out: List[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds:
            break
    return out


class _threads:
    """``with _threads(n):`` run torch on ``n`` threads, then restore."""

    def __init__(self, n: Optional[int]):
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self):
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def fit_exponent(n: Sequence[float], t: Sequence[float]) -> float:
    """Least-squares slope ``q`` of ``log t = q log n + c``."""
    if len(n) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(n, float)), np.log(np.asarray(t, float)), 1)[0])


def conv_graph(nside: int, k: int = 8, cache: Optional[str] = None, lmax: Optional[float] = 2.0):
    """Scipy CSR :math:`\\tilde L` of the HEALPix k-NN graph (tuned width, normalized
    Laplacian). ``lmax=2`` (the bound of a normalized Laplacian) skips the Lanczos run: the
    timings do not depend on the value."""
    from . import graph, sampling

    g = graph.build(sampling.HEALPix(nside), dict(GRAPH, k=k), cache_dir=cache)
    return g.chebyshev_matrix("normalized", lmax=lmax)


def _table(head: Sequence[str], rows: List[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ---- 1. memory bandwidth ----------------------------------------------------------------
def triad_gbps(n: int, dtype: torch.dtype, threads: int, repeats: int = 10) -> float:
    """Best-of-``repeats`` GB/s of ``a = b + s c`` on ``n``-element arrays (STREAM count)."""
    b = torch.rand(n, dtype=dtype)
    c = torch.rand(n, dtype=dtype)
    a = torch.empty(n, dtype=dtype)
    a.fill_(0)  # touch the pages before timing
    with _threads(threads):
        t = min(wall_times(lambda: torch.add(b, c, alpha=3.0, out=a), repeats))
    return 3 * n * a.element_size() / t / 1e9


def bandwidth_rows(n: int, threads: Sequence[int], repeats: int) -> List[dict]:
    rows = []
    for th in threads:
        for dtype in (torch.float32, torch.float64):
            gbps = triad_gbps(n, dtype, th, repeats)
            rows.append(dict(threads=th, dtype=str(dtype).replace("torch.", ""), n=n,
                             MB_per_array=n * torch.tensor([], dtype=dtype).element_size() / 1e6,
                             GBps=gbps))
    return rows


def format_bandwidth(rows: List[dict]) -> str:
    return _table(["threads", "dtype", "elements", "MB / array", "triad GB/s"],
                  [(r["threads"], r["dtype"], r["n"], f"{r['MB_per_array']:.0f}",
                    f"{r['GBps']:.1f}") for r in rows])


# ---- 2. the sparse product against its bound --------------------------------------------
def spmm_bytes(nnz: int, n: int, columns: int, value_bytes: int = 4, index_bytes: int = 4,
               read_output: bool = False) -> int:
    """Least bytes one ``L @ X`` must move: the CSR matrix once, ``X`` once, the output
    once (twice with ``read_output``, as ``addmm_`` with ``beta=1`` reads it)."""
    dense = (3 if read_output else 2) * n * columns * value_bytes
    return nnz * (value_bytes + index_bytes) + (n + 1) * index_bytes + dense


def spmm_rows(Lt, columns: Sequence[int], threads: Sequence[int], repeats: int,
              triad: Dict[int, float], products: Sequence[str] = ("torch", "kernel")
              ) -> List[dict]:
    """Time ``out <- L X`` (beta=0) and ``out <- out + 2 L X`` (beta=1) with each product:
    ``torch`` is ``out.addmm_(L, X)`` (MKL on x86), ``kernel`` the layer's
    :func:`~deepsphere.nn.spmm.sparse_addmm_` (the compiled CPU kernel; skipped where it
    does not build). Both run on the same operator and blocks, one after the other in each
    case (columns, threads, beta), after a check that they agree."""
    from .nn import SparseOperator
    from .nn.spmm import native_available, sparse_addmm_

    if "kernel" in products and not native_available():
        print("(the compiled kernel is unavailable here: timing torch's product only)")
        products = [p for p in products if p != "kernel"]
    op = SparseOperator(Lt, check_symmetric=False)
    L = op.csr()
    n, nnz = op.n, op.nnz
    ib = L.crow_indices().element_size()
    rows = []
    for C in columns:
        X = torch.randn(n, C)
        out = torch.zeros(n, C)
        if "kernel" in products:
            _check_kernel(out, L, X)
        for th in threads:
            for beta in (0, 1):
                alpha = 1.0 if beta == 0 else 2.0
                best = {}
                for product in products:
                    if product == "torch":
                        fn = lambda: out.addmm_(L, X, beta=beta, alpha=alpha)  # noqa: E731
                    else:
                        fn = lambda: sparse_addmm_(out, L, X, beta=beta, alpha=alpha)  # noqa: E731
                    with _threads(th):
                        ts = wall_times(fn, repeats)
                    best[product] = min(ts)
                    nbytes = spmm_bytes(nnz, n, C, 4, ib, read_output=beta == 1)
                    gbps = nbytes / min(ts) / 1e9
                    rows.append(dict(
                        n=n, nnz=nnz, index_bytes=ib, columns=C, threads=th, beta=beta,
                        product=product, best_ms=1e3 * min(ts),
                        median_ms=1e3 * float(np.median(ts)), MB=nbytes / 1e6, GBps=gbps,
                        fraction=gbps / triad[th] if th in triad else float("nan"),
                        speedup_vs_torch=best["torch"] / min(ts) if "torch" in best else None))
        del X, out
    return rows


def _check_kernel(out: torch.Tensor, L: torch.Tensor, X: torch.Tensor, block: int = 64) -> None:
    """Raise unless the kernel's ``L X`` (into ``out``) is torch's, column block by block
    (no second full-size block: X can be gigabytes)."""
    from .nn.spmm import sparse_addmm_

    sparse_addmm_(out, L, X, beta=0.0, alpha=1.0)
    for j in range(0, X.shape[1], block):
        ref = torch.sparse.mm(L, X[:, j:j + block].contiguous())
        err = float((out[:, j:j + block] - ref).abs().max())
        if not err <= 1e-4 * float(ref.abs().max()):
            raise RuntimeError(f"the compiled kernel's L @ X differs from torch's (max |diff| "
                               f"{err:.2e} in columns {j}..{j + ref.shape[1] - 1}): its "
                               "timings would be of another product")


def format_spmm(rows: List[dict]) -> str:
    return _table(
        ["B·F", "threads", "beta", "product", "bytes MB", "best ms", "median ms", "GB/s",
         "of triad", "vs torch"],
        [(r["columns"], r["threads"], r["beta"], r.get("product", "torch"), f"{r['MB']:.0f}",
          f"{r['best_ms']:.1f}", f"{r['median_ms']:.1f}", f"{r['GBps']:.1f}",
          f"{100 * r['fraction']:.0f} %",
          "–" if r.get("speedup_vs_torch") is None else f"{r['speedup_vs_torch']:.2f}×")
         for r in rows])


@contextlib.contextmanager
def _product(name: str):
    """Run the layer's sparse products with torch's (``torch``) or the kernel (``kernel``)."""
    old = os.environ.get("DEEPSPHERE_SPMM")
    os.environ["DEEPSPHERE_SPMM"] = "torch" if name == "torch" else "auto"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DEEPSPHERE_SPMM", None)
        else:
            os.environ["DEEPSPHERE_SPMM"] = old


def layer_rows(cases: Sequence[Tuple[int, int]], K: int, channels: int, repeats: int,
               k: int = 8, cache: Optional[str] = None) -> List[dict]:
    """``ChebConv`` forward and forward+backward with each sparse product, interleaved call by
    call in one process (so that a change of load hits both), medians after one warm-up."""
    from .nn import ChebConv, SparseOperator
    from .nn.spmm import native_available

    if not native_available():
        print("(the compiled kernel is unavailable here: nothing to compare)")
        return []
    rows = []
    for nside, B in cases:
        L = SparseOperator(conv_graph(nside, k, cache), check_symmetric=False)
        torch.manual_seed(0)
        conv = ChebConv(channels, channels, K)
        x = torch.randn(B, L.n, channels, requires_grad=True)
        g = torch.randn(B, L.n, channels)
        with torch.no_grad():
            outputs = {}
            for p in ("torch", "kernel"):
                with _product(p):
                    outputs[p] = conv(x, L)
            if not torch.allclose(outputs["kernel"], outputs["torch"], rtol=1e-4,
                                  atol=1e-4 * float(outputs["torch"].abs().max())):
                raise RuntimeError("ChebConv with the compiled kernel differs from ChebConv with "
                                   "torch's sparse product: nothing to compare")
            del outputs
        times = {p: ([], []) for p in ("torch", "kernel")}
        for rep in range(repeats + 1):
            for p in ("torch", "kernel"):
                with _product(p):
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        conv(x, L)
                    t1 = time.perf_counter()
                    conv(x, L).backward(g)
                    t2 = time.perf_counter()
                if rep:  # the first round warms caches and scratch memory
                    times[p][0].append(t1 - t0)
                    times[p][1].append(t2 - t1)
        med = {p: [1e3 * float(np.median(v)) for v in times[p]] for p in times}
        rows.append(dict(nside=nside, n=L.n, batch=B, K=K, channels=channels,
                         torch_fwd_ms=med["torch"][0], kernel_fwd_ms=med["kernel"][0],
                         torch_fwdbwd_ms=med["torch"][1], kernel_fwdbwd_ms=med["kernel"][1]))
        print(format_layer(rows[-1:], header=len(rows) == 1), flush=True)
        del L, conv, x, g
        gc.collect()
    return rows


def format_layer(rows: List[dict], header: bool = True) -> str:
    text = _table(
        ["nside", "B", "fwd torch ms", "fwd kernel ms", "speed-up", "f+b torch ms",
         "f+b kernel ms", "speed-up"],
        [(r["nside"], r["batch"], f"{r['torch_fwd_ms']:.1f}", f"{r['kernel_fwd_ms']:.1f}",
          f"{r['torch_fwd_ms'] / r['kernel_fwd_ms']:.2f}×", f"{r['torch_fwdbwd_ms']:.1f}",
          f"{r['kernel_fwdbwd_ms']:.1f}", f"{r['torch_fwdbwd_ms'] / r['kernel_fwdbwd_ms']:.2f}×")
         for r in rows])
    return text if header else "\n".join(text.splitlines()[2:])


# ---- 3. time against the number of vertices ---------------------------------------------
def batch_for(n: int, batch: int, channels: int, max_mb: float) -> int:
    """``batch`` halved until one ``[B, n, channels]`` float32 block fits in ``max_mb``."""
    while batch > 1 and batch * n * channels * 4 / 2**20 > max_mb:
        batch //= 2
    return batch


def scaling_rows(nsides: Sequence[int], batches: Sequence[int], K: int, channels: int,
                 repeats: int, max_mb: float, k: int = 8, cache: Optional[str] = None,
                 max_seconds: float = 30.0) -> List[dict]:
    from .nn import ChebConv, SparseOperator

    rows = []
    for nside in nsides:
        t0 = time.perf_counter()
        L = SparseOperator(conv_graph(nside, k, cache), check_symmetric=False)
        graph_s = time.perf_counter() - t0
        n = L.n
        done: Dict[int, dict] = {}
        for batch in batches:
            B = batch_for(n, batch, channels, max_mb)
            if B in done:  # already timed for another series: list it in this one too
                rows.append(dict(done[B], batch_asked=batch))
                continue
            torch.manual_seed(0)
            conv = ChebConv(channels, channels, K)
            x = torch.randn(B, n, channels, requires_grad=True)
            g = torch.randn(B, n, channels)

            def fwd():
                with torch.no_grad():
                    conv(x, L)

            def train():
                conv(x, L).backward(g)

            tf = float(np.median(wall_times(fwd, repeats, max_seconds)))
            tb = float(np.median(wall_times(train, repeats, max_seconds)))
            rows.append(dict(nside=nside, n=n, nnz=L.nnz, batch_asked=batch, batch=B, K=K,
                             channels=channels, graph_s=graph_s, fwd_ms=1e3 * tf,
                             fwdbwd_ms=1e3 * tb, fwd_us_per_vertex_sample=1e6 * tf / (n * B),
                             fwdbwd_us_per_vertex_sample=1e6 * tb / (n * B)))
            done[B] = rows[-1]
            print(format_scaling(rows[-1:], header=len(rows) == 1), flush=True)
            del conv, x, g
            x = g = None
            gc.collect()
        del L
        gc.collect()
    return rows


def scaling_fits(rows: List[dict], min_nside: int) -> List[dict]:
    """Exponent of time per sample vs n, per requested batch, over nside >= min_nside."""
    fits = []
    for batch in sorted({r["batch_asked"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["batch_asked"] == batch and r["nside"] >= min_nside]
        if len(sel) < 2:
            continue
        n = [r["n"] for r in sel]
        fits.append(dict(batch=batch, nsides=f"{sel[0]['nside']}–{sel[-1]['nside']}",
                         q_fwd=fit_exponent(n, [r["fwd_ms"] / r["batch"] for r in sel]),
                         q_fwdbwd=fit_exponent(n, [r["fwdbwd_ms"] / r["batch"] for r in sel])))
    return fits


def format_scaling(rows: List[dict], header: bool = True) -> str:
    t = _table(["nside", "vertices", "nnz", "B", "fwd ms", "f+b ms", "fwd ns / (vertex·sample)",
                "f+b ns / (vertex·sample)"],
               [(r["nside"], r["n"], r["nnz"], r["batch"], f"{r['fwd_ms']:.2f}",
                 f"{r['fwdbwd_ms']:.2f}", f"{1e3 * r['fwd_us_per_vertex_sample']:.1f}",
                 f"{1e3 * r['fwdbwd_us_per_vertex_sample']:.1f}") for r in rows])
    return t if header else "\n".join(t.splitlines()[2:])


# ---- 4. U-Net peak memory ----------------------------------------------------------------
VARIANTS = ("default", "lean", "store", "naive")


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
        return True
    except OSError:
        return False


def set_variant(model: torch.nn.Module, variant: str) -> int:
    """Configure every ChebConv of ``model``: ``default`` (the layer's choice), ``lean``
    (``store_terms=False``), ``store`` (``store_terms=True``) or ``naive`` (the autograd
    recursion of :func:`deepsphere.benchmark.naive_cheb_conv`). Returns the count."""
    from .nn import ChebConv

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    convs = [m for m in model.modules() if isinstance(m, ChebConv)]
    for m in convs:
        if variant == "naive":
            def forward(x, L, m=m):
                Lc = L.csr() if hasattr(L, "csr") else L
                return naive_cheb_conv(x, Lc, m.weight, m.bias)
            m.forward = forward
        else:
            m.store_terms = {"default": None, "lean": False, "store": True}[variant]
    return len(convs)


def unet_step(nside: int, batch: int, variant: str, channels: Sequence[int] = (16, 32, 64, 128),
              K: int = 5, k: int = 8, seed: int = 0) -> dict:
    """One training step of a SphericalUNet in this process; peak memory and time."""
    from .models import SphericalUNet
    from .sampling import HEALPix

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = SphericalUNet(HEALPix(nside), in_channels=1, n_classes=3, channels=list(channels),
                          K=K, graph=dict(GRAPH, k=k))
    build_s = time.perf_counter() - t0
    n_convs = set_variant(model, variant)
    model.train()
    x = torch.randn(batch, model.sampling.npix, 1)
    target = torch.randint(0, 3, (batch, model.sampling.npix))

    def step():
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, 3), target.reshape(-1))
        loss.backward()
        return loss

    gc.collect()
    base_kb = _status_kb("VmRSS")
    ok = _reset_peak()
    t = time.perf_counter()
    step()
    step_s = time.perf_counter() - t
    peak_kb = _status_kb("VmHWM") if ok else float("nan")
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    step()  # a second step: warm scratch memory and allocator
    step2_s = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    saved = saved_bytes(lambda: model(x))  # storages autograd keeps for the backward
    return dict(nside=nside, batch=batch, variant=variant, convs=n_convs, build_s=build_s,
                step_s=step_s, step2_s=step2_s, base_MB=base_kb / 1024, peak_growth_MB=(peak_kb - base_kb) / 1024,
                saved_MB=saved / 2**20, input_MB=x.numel() * 4 / 2**20)


def unet_rows(nside: int, batch: int, variants: Sequence[str],
              channels: Sequence[int] = (16, 32, 64, 128), K: int = 5, k: int = 8) -> List[dict]:
    """Each variant of :func:`unet_step` in a fresh process (its own high-water mark)."""
    rows = []
    for v in variants:
        cmd = [sys.executable, "-m", "deepsphere.benchmark_scale", "unet-one", "--unet-nside",
               str(nside), "--unet-batch", str(batch), "--variant", v, "--k", str(k), "--K", str(K),
               "--unet-channels", *map(str, channels),
               "--threads", str(torch.get_num_threads())]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(format_unet(rows[-1:], header=len(rows) == 1), flush=True)
    return rows


def format_unet(rows: List[dict], header: bool = True) -> str:
    t = _table(["nside", "B", "variant", "peak RSS growth MB", "autograd saved MB",
                "first step s", "second step s"],
               [(r["nside"], r["batch"], r["variant"], f"{r['peak_growth_MB']:.0f}",
                 f"{r['saved_MB']:.0f}", f"{r['step_s']:.2f}", f"{r['step2_s']:.2f}")
                for r in rows])
    return t if header else "\n".join(t.splitlines()[2:])


# ---- command line -----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["bandwidth", "spmm", "layer", "scaling", "unet",
                                         "all", "unet-one"],
                        help="which measurement (all: the four in turn)")
    parser.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2],
                        help="thread counts for bandwidth/spmm; the first one for the others")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed repetitions per case")
    parser.add_argument("--triad-elements", type=positive_int, default=2**25,
                        help="elements per triad array (default 2^25: 128 MB in float32)")
    parser.add_argument("--spmm-nside", type=nside_arg, default=256,
                        help="spmm: nside of the graph whose operator is multiplied")
    parser.add_argument("--columns", type=positive_int, nargs="+", default=[16, 64, 256, 512],
                        help="B·F columns of the sparse product")
    parser.add_argument("--nside", type=nside_arg, nargs="+", default=[16, 32, 64, 128, 256, 512],
                        help="scaling: nsides")
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[8],
                        help="scaling: batch sizes (each reduced by --max-mb)")
    parser.add_argument("--max-mb", type=positive_float, default=400.0,
                        help="scaling: halve the batch until one [B, n, F] block fits")
    parser.add_argument("--K", type=positive_int, default=5, help="scaling, layer: Chebyshev order")
    parser.add_argument("--channels", type=positive_int, default=16,
                        help="scaling, layer: channels in = out")
    parser.add_argument("--k", type=positive_int, default=8, help="k-NN neighbours")
    parser.add_argument("--fit-min-nside", type=positive_int, default=64,
                        help="scaling: fit time ~ n^q over nsides from this one up")
    parser.add_argument("--layer-cases", nargs="+", default=["64:8", "128:8", "256:8", "512:2"],
                        help="layer: nside:batch pairs")
    parser.add_argument("--cache", help="graph cache directory (graph.build cache_dir)")
    parser.add_argument("--unet-nside", type=nside_arg, default=256, help="unet: input nside")
    parser.add_argument("--unet-batch", type=positive_int, default=2, help="unet: batch size")
    parser.add_argument("--unet-channels", type=positive_int, nargs="+", default=[16, 32, 64, 128],
                        help="unet: channels per level")
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="unet: memory variants to measure, each in its own process")
    parser.add_argument("--json", help="write all rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    if args.what == "unet-one":  # internal: one variant, its own process
        torch.set_num_threads(args.threads[0])
        print(json.dumps(unet_step(args.unet_nside, args.unet_batch, args.variant[0],
                                   args.unet_channels, args.K, args.k)))
        return 0
    if args.what in ("layer", "scaling", "unet"):
        torch.set_num_threads(args.threads[0])
    print(f"# machine: {machine()}")
    print(f"# command: {' '.join(sys.argv)}\n", flush=True)
    out: Dict[str, list] = {}
    todo = (["bandwidth", "spmm", "layer", "scaling", "unet"] if args.what == "all"
            else [args.what])
    triad: Dict[int, float] = {}
    if "bandwidth" in todo or "spmm" in todo:
        print("## triad a = b + s*c (torch, best of repeats)\n")
        rows = bandwidth_rows(args.triad_elements, args.threads, max(args.repeats, 5))
        triad = {r["threads"]: r["GBps"] for r in rows if r["dtype"] == "float32"}
        print(format_bandwidth(rows) + "\n", flush=True)
        out["bandwidth"] = rows
    if "spmm" in todo:
        t0 = time.perf_counter()
        Lt = conv_graph(args.spmm_nside, args.k, args.cache)
        print(f"## L @ X at nside {args.spmm_nside} (n={Lt.shape[0]}, nnz={Lt.nnz}; graph "
              f"{time.perf_counter() - t0:.1f} s), float32, fraction of the float32 triad\n")
        rows = spmm_rows(Lt, args.columns, args.threads, args.repeats, triad)
        print(format_spmm(rows) + "\n", flush=True)
        out["spmm"] = rows
        del Lt
    if "layer" in todo:
        torch.set_num_threads(args.threads[0])
        print(f"## ChebConv with torch's sparse product and with the kernel (K={args.K}, "
              f"{args.channels}->{args.channels}, {args.threads[0]} thread(s), medians of "
              f"{args.repeats}, interleaved)\n", flush=True)
        cases = [tuple(int(v) for v in c.split(":")) for c in args.layer_cases]
        out["layer"] = layer_rows(cases, args.K, args.channels, args.repeats, args.k, args.cache)
    if "scaling" in todo:
        torch.set_num_threads(args.threads[0])
        print(f"## ChebConv time vs vertices (K={args.K}, {args.channels}->{args.channels}, "
              f"{args.threads[0]} thread(s), medians)\n", flush=True)
        rows = scaling_rows(args.nside, args.batch, args.K, args.channels, args.repeats,
                            args.max_mb, args.k, args.cache)
        fits = scaling_fits(rows, args.fit_min_nside)
        if min(args.nside) < args.fit_min_nside:
            fits += scaling_fits(rows, 0)
        for f in fits:
            print(f"fit time/sample ~ n^q, batch {f['batch']}, nside {f['nsides']}: "
                  f"q fwd {f['q_fwd']:.3f}, q f+b {f['q_fwdbwd']:.3f}")
        out["scaling"], out["scaling_fits"] = rows, fits
    if "unet" in todo:
        torch.set_num_threads(args.threads[0])
        print(f"\n## SphericalUNet step, nside {args.unet_nside}, batch {args.unet_batch}, "
              f"channels {args.unet_channels}, K={args.K}\n", flush=True)
        out["unet"] = unet_rows(args.unet_nside, args.unet_batch, args.variant,
                                args.unet_channels, args.K, args.k)
    if args.json:
        atomic_write_text(json.dumps(out, indent=1), args.json)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepsphere.benchmark_scale",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
