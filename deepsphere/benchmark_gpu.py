r"""``deepsphere benchmark-gpu``: the Chebyshev layer on a CUDA device.

Four measurements, each timed with CUDA events (best or median of the repeats after warm-up
calls, as stated in the printed tables):

``bandwidth``
    A triad ``a = b + s c`` on arrays of ``--triad-elements`` float32 values, counted as
    STREAM does (``3 n itemsize`` bytes per call). It is the device's attainable memory
    (HBM) bandwidth, the bound the sparse product is compared with.
``spmm``
    One ``out.addmm_(L, X, beta=0)`` with ``L`` the layer's own operator (torch CSR, int32
    indices, float32, cuSPARSE underneath) on the HEALPix k-NN graph at each ``--nside``, and
    ``X`` of ``[n, C]`` for each ``--columns`` C. The least traffic of one product is

    .. math:: \text{bytes} = \text{nnz}\,(s_v + s_i) + (n+1)\, s_i + 2\, n\, C\, s_f ,

    and ``of triad`` divides the achieved GB/s by the triad's.
``conv``
    :class:`~deepsphere.nn.ChebConv` forward and forward+backward at each nside, batch
    ``--batch``, ``--channels`` in and out, order ``--K``, in float32 and (where cuSPARSE
    accepts it) bfloat16. ``ns/vertex·sample`` is the time divided by vertices and samples.
``inference``
    A SHREC'17-size classifier (:class:`~deepsphere.models.SphericalCNN`, HEALPix nside 32,
    6 input channels, 55 classes, channels 16-32-64-128-256, K = 4: 189 591 parameters) in
    evaluation mode: time per sample at each batch size of ``--inference-batch``.

Nothing here asserts on time; the numbers depend on the device and its clocks.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .benchmark_scale import _table, conv_graph, fit_exponent, spmm_bytes, wall_times
from .cli import nside_arg, positive_float, positive_int
from .io import atomic_write_text

SHREC = dict(nside=32, in_channels=6, n_classes=55, channels=(16, 32, 64, 128, 256), K=4)


def cuda_times(fn: Callable[[], object], repeats: int, warmup: int = 2,
               max_seconds: float = 20.0) -> List[float]:
    """Milliseconds of ``fn`` per call, one CUDA-event pair per call, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out: List[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        out.append(e0.elapsed_time(e1))
        if time.perf_counter() - start > max_seconds:
            break
    return out


def device_name(device: torch.device) -> str:
    p = torch.cuda.get_device_properties(device)
    return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}")


# ---- 1. bandwidth -----------------------------------------------------------------------
def triad_rows(n: int, device: torch.device, repeats: int) -> List[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        b = torch.rand(n, device=device).to(dtype)
        c = torch.rand(n, device=device).to(dtype)
        a = torch.empty_like(b)
        ts = cuda_times(lambda: torch.add(b, c, alpha=3.0, out=a), repeats)
        nbytes = 3 * n * a.element_size()
        rows.append(dict(dtype=str(dtype).replace("torch.", ""), n=n,
                         MB_per_array=n * a.element_size() / 1e6, best_ms=min(ts),
                         GBps=nbytes / (min(ts) * 1e-3) / 1e9))
        del a, b, c
    return rows


def format_triad(rows: List[dict]) -> str:
    return _table(["dtype", "elements", "MB / array", "best ms", "triad GB/s"],
                  [(r["dtype"], r["n"], f"{r['MB_per_array']:.0f}", f"{r['best_ms']:.3f}",
                    f"{r['GBps']:.0f}") for r in rows])


# ---- 2. the sparse product against the bound --------------------------------------------
def spmm_rows(L, nside: int, columns: Sequence[int], repeats: int, triad: float) -> List[dict]:
    A = L.csr()
    n, nnz = L.n, L.nnz
    ib = A.crow_indices().element_size()
    rows = []
    for C in columns:
        need = 2 * n * C * 4  # X and out, float32
        torch.cuda.empty_cache()  # blocks cached from the previous width count as free
        free = torch.cuda.mem_get_info(A.device)[0]
        if need > 0.95 * free:  # an 80 GB card cannot hold nside 1024 at B·F = 1024
            rows.append(dict(nside=nside, n=n, nnz=nnz, columns=C,
                             error=f"needs {need / 1e9:.0f} GB, {free / 1e9:.0f} GB free"))
            continue
        X = torch.randn(n, C, device=A.device)
        out = torch.empty(n, C, device=A.device)
        ts = cuda_times(lambda: out.addmm_(A, X, beta=0), repeats)
        nbytes = spmm_bytes(nnz, n, C, 4, ib)
        gbps = nbytes / (min(ts) * 1e-3) / 1e9
        rows.append(dict(nside=nside, n=n, nnz=nnz, columns=C, MB=nbytes / 1e6, best_ms=min(ts),
                         median_ms=float(np.median(ts)), GBps=gbps, fraction=gbps / triad))
        del X, out
    return rows


def format_spmm(rows: List[dict]) -> str:
    return _table(["nside", "n", "nnz", "B·F", "bytes MB", "best ms", "median ms", "GB/s",
                   "of triad"],
                  [(r["nside"], r["n"], r["nnz"], r["columns"], "-", "-", "-", "-",
                    f"not run: {r['error']}") if "error" in r else
                   (r["nside"], r["n"], r["nnz"], r["columns"], f"{r['MB']:.0f}",
                    f"{r['best_ms']:.3f}", f"{r['median_ms']:.3f}", f"{r['GBps']:.0f}",
                    f"{100 * r['fraction']:.0f} %") for r in rows])


# ---- 3. the layer -----------------------------------------------------------------------
def conv_rows(L, nside: int, batch: int, channels: int, K: int, repeats: int,
              dtypes: Sequence[torch.dtype]) -> List[dict]:
    from .nn import ChebConv, SparseOperator

    rows = []
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        torch.manual_seed(0)
        try:
            conv = ChebConv(channels, channels, K).to(L.device, dtype)
            Ld = SparseOperator(L, dtype=dtype, check_symmetric=False)
            x = torch.randn(batch, L.n, channels, device=L.device, dtype=dtype,
                            requires_grad=True)
            g = torch.randn_like(x)

            def fwd():
                with torch.no_grad():
                    conv(x, Ld)

            def train():
                conv(x, Ld).backward(g)

            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            tf = float(np.median(cuda_times(fwd, repeats)))
            tb = float(np.median(cuda_times(train, repeats)))
            peak = torch.cuda.max_memory_allocated() - base
        except torch.cuda.OutOfMemoryError:
            total = torch.cuda.get_device_properties(L.device).total_memory
            rows.append(dict(nside=nside, n=L.n, dtype=name,
                             error=f"out of memory on a {total / 2**30:.0f} GiB device; "
                                   "lower --batch or --channels"))
        except (RuntimeError, NotImplementedError) as e:  # e.g. no bf16 cuSPARSE kernel
            rows.append(dict(nside=nside, n=L.n, dtype=name, error=str(e).splitlines()[0][:120]))
        else:
            rows.append(dict(nside=nside, n=L.n, nnz=L.nnz, dtype=name, batch=batch,
                             channels=channels, K=K, fwd_ms=tf, fwdbwd_ms=tb,
                             fwd_us_per_vertex=1e3 * tf / (L.n * batch),
                             fwdbwd_us_per_vertex=1e3 * tb / (L.n * batch),
                             peak_MB=peak / 2**20))
        finally:
            # a failed row must not leave its tensors behind for the next dtype
            conv = Ld = x = g = None
            gc.collect()
            torch.cuda.empty_cache()
    return rows


def format_conv(rows: List[dict]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append((r["nside"], r["n"], r["dtype"], "-", "-", "-", "-", "-",
                        f"not run: {r['error']}"))
        else:
            out.append((r["nside"], r["n"], r["dtype"], r["batch"], f"{r['fwd_ms']:.2f}",
                        f"{r['fwdbwd_ms']:.2f}", f"{1e3 * r['fwd_us_per_vertex']:.2f}",
                        f"{1e3 * r['fwdbwd_us_per_vertex']:.2f}", f"{r['peak_MB']:.0f}"))
    return _table(["nside", "n", "dtype", "B", "fwd ms", "f+b ms", "fwd ns/vertex·sample",
                   "f+b ns/vertex·sample", "peak MB above input"], out)


# ---- 4. inference of a SHREC-size classifier --------------------------------------------
def inference_rows(device: torch.device, batches: Sequence[int], repeats: int) -> List[dict]:
    from .models import SphericalCNN
    from .sampling import HEALPix

    torch.manual_seed(0)
    model = SphericalCNN(HEALPix(SHREC["nside"]), in_channels=SHREC["in_channels"],
                         n_classes=SHREC["n_classes"], channels=SHREC["channels"],
                         K=SHREC["K"]).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    rows = []
    for B in batches:
        x = torch.randn(B, model.sampling.npix, SHREC["in_channels"], device=device)

        def infer():
            with torch.inference_mode():
                model(x)

        if device.type == "cuda":
            ts = cuda_times(infer, repeats, warmup=3)
        else:
            ts = [1e3 * t for t in wall_times(infer, repeats)]
        med = float(np.median(ts))
        rows.append(dict(device=str(device), params=params, batch=B, median_ms=med,
                         ms_per_sample=med / B))
    return rows


def format_inference(rows: List[dict]) -> str:
    return _table(["device", "params", "batch", "median ms / batch", "ms / sample"],
                  [(r["device"], r["params"], r["batch"], f"{r['median_ms']:.3f}",
                    f"{r['ms_per_sample']:.4f}") for r in rows])


# ---- command line -----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    # default a string: argparse checks a '*' positional's default against choices as a
    # whole, and the list ["all"] is not a choice (every run without a positional was refused)
    parser.add_argument("what", nargs="*", default="all",
                        choices=["all", "bandwidth", "spmm", "conv", "inference"],
                        help="which measurements (default: all)")
    parser.add_argument("--device", default="cuda", help="a CUDA device (inference also: cpu)")
    parser.add_argument("--nside", type=nside_arg, nargs="+", default=[256, 512, 1024],
                        help="spmm, conv, inference: nsides")
    parser.add_argument("--k", type=positive_int, default=8, help="k-NN neighbours")
    parser.add_argument("--columns", type=positive_int, nargs="+", default=[64, 256, 1024],
                        help="B·F columns of the sparse product")
    parser.add_argument("--batch", type=positive_int, default=16, help="conv: batch size")
    parser.add_argument("--channels", type=positive_int, default=16, help="conv: channels in = out")
    parser.add_argument("--K", type=positive_int, default=5, help="conv: Chebyshev order")
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16", "float16"],
                        help="conv: precisions to time")
    parser.add_argument("--inference-batch", type=positive_int, nargs="+", default=[1, 32, 256],
                        help="inference: batch sizes")
    parser.add_argument("--triad-elements", type=positive_int, default=2**28,
                        help="bandwidth: elements per triad array (default 2^28: 1 GB in float32)")
    parser.add_argument("--repeats", type=positive_int, default=20,
                        help="timed repetitions per case")
    parser.add_argument("--cache", help="graph cache directory (graph.build cache_dir)")
    parser.add_argument("--json", help="write all rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    from .nn import SparseOperator

    device = torch.device(args.device)
    chosen = [args.what] if isinstance(args.what, str) else args.what
    what = {"bandwidth", "spmm", "conv", "inference"} if "all" in chosen else set(chosen)
    if device.type != "cuda" and what != {"inference"}:
        print(f"benchmark-gpu: --device {args.device} is not a CUDA device; only the "
              "'inference' measurement runs elsewhere", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmark-gpu: no CUDA device is available", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is not None:
        # CUDA events, synchronize() and the peak-memory counters act on the current device
        torch.cuda.set_device(device)
    print(f"# device: {device_name(device) if device.type == 'cuda' else 'cpu'}")
    print(f"# command: {' '.join(sys.argv)}\n", flush=True)
    out: Dict[str, list] = {}
    triad = float("nan")
    if what & {"bandwidth", "spmm"}:
        rows = triad_rows(args.triad_elements, device, args.repeats)
        triad = next(r["GBps"] for r in rows if r["dtype"] == "float32")
        print("## triad a = b + s*c (best of repeats)\n\n" + format_triad(rows) + "\n", flush=True)
        out["bandwidth"] = rows
    dtypes = [getattr(torch, d) for d in args.dtype]
    for nside in args.nside if what & {"spmm", "conv"} else []:
        t0 = time.perf_counter()
        L = SparseOperator(conv_graph(nside, args.k, args.cache), check_symmetric=False)
        L = L.to(device)
        print(f"## nside {nside}: n={L.n}, nnz={L.nnz}, graph built in "
              f"{time.perf_counter() - t0:.1f} s\n", flush=True)
        if "spmm" in what:
            rows = spmm_rows(L, nside, args.columns, args.repeats, triad)
            print(format_spmm(rows) + "\n", flush=True)
            out.setdefault("spmm", []).extend(rows)
        if "conv" in what:
            rows = conv_rows(L, nside, args.batch, args.channels, args.K, args.repeats, dtypes)
            print(format_conv(rows) + "\n", flush=True)
            out.setdefault("conv", []).extend(rows)
        del L
        gc.collect()
        torch.cuda.empty_cache()
    fits = [r for r in out.get("conv", []) if "error" not in r and r["dtype"] == "float32"]
    if len(fits) > 1:
        n = [r["n"] for r in fits]
        print(f"fit time ~ n^q over nside {[r['nside'] for r in fits]}: q fwd "
              f"{fit_exponent(n, [r['fwd_ms'] for r in fits]):.3f}, q f+b "
              f"{fit_exponent(n, [r['fwdbwd_ms'] for r in fits]):.3f}\n", flush=True)
    if "inference" in what:
        rows = inference_rows(device, args.inference_batch, args.repeats)
        print(f"## SHREC-size classifier inference ({rows[0]['params']} parameters, nside "
              f"{SHREC['nside']}, fp32, eval)\n\n" + format_inference(rows) + "\n", flush=True)
        out["inference"] = rows
    if args.json:
        atomic_write_text(json.dumps(out, indent=1), args.json)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="deepsphere benchmark-gpu",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
