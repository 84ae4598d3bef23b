r"""``deepsphere benchmark``: time :class:`deepsphere.nn.ChebConv` against
:class:`torch_geometric.nn.ChebConv` on the same HEALPix graph in the same process, and time
graph construction.

For each configuration both layers get the same weights, the same input and the same
:math:`\tilde L = 2L/\lambda_{max} - I` (normalized Laplacian of a k-NN graph, ``lambda_max``
passed to torch_geometric, which batches as a disjoint union of ``B`` graphs). Outputs are
compared (column ``rel.err``) before anything is timed, and a disagreement beyond rounding
stops the benchmark. Times are medians over repeats;
``ratio`` is torch_geometric's time divided by ours (higher is better for us).

``saved MB``: bytes of the tensors autograd keeps from the forward pass for the backward
pass (distinct storages, including the input), i.e. the memory a layer holds per training
step. Graph rows give the build time and the peak of traced (numpy) allocations and the
growth of the process's peak resident set.
"""
from __future__ import annotations

import argparse
import csv
import gc
import itertools
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .cli import nside_arg, positive_float, positive_int
from .io import atomic_path

QUICK = dict(nside=[8, 16], K=[3, 5], channels=[16], batch=[4], graph_nside=[8, 16],
             graph_k=[8], repeats=3)
# default: the headline case (K=5, 16 channels, batch 8) at every nside, the K sweep and the
# wider / bigger-batch cases where torch_geometric's time stays reasonable.
DEFAULT_CASES = (
    [(ns, 5, 16, 8) for ns in (32, 64, 128, 256)]
    + [(ns, K, 16, 8) for ns in (32, 64, 128) for K in (3, 9)]
    + [(ns, 5, 64, 8) for ns in (32, 64)]
    + [(ns, 5, 16, 32) for ns in (32, 64)]
)
FULL = dict(nside=[32, 64, 128, 256], K=[3, 5, 9], channels=[16, 64], batch=[8, 32])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny grid for a smoke test (a few seconds)")
    parser.add_argument("--full", action="store_true",
                        help="the full cartesian grid nside x K x channels x batch (slow: "
                             "torch_geometric needs minutes per case at nside 256)")
    parser.add_argument("--nside", type=nside_arg, nargs="+", help="override the nside list")
    parser.add_argument("--K", type=positive_int, nargs="+", help="override the K list")
    parser.add_argument("--channels", type=positive_int, nargs="+",
                        help="override the channel list (in = out)")
    parser.add_argument("--batch", type=positive_int, nargs="+", help="override the batch sizes")
    parser.add_argument("--k", type=positive_int, default=8, help="k-NN neighbours of the conv graph")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (median)")
    parser.add_argument("--max-seconds", type=positive_float, default=30.0,
                        help="stop repeating a measurement once it has used this long")
    parser.add_argument("--max-gb", type=positive_float, default=6.0,
                        help="where torch_geometric's estimated peak memory exceeds this, time it "
                             "on a smaller batch and scale its times linearly (marked)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="precision of the layers and signals (default float32)")
    parser.add_argument("--threads", type=positive_int, help="torch.set_num_threads")
    parser.add_argument("--no-pyg", action="store_true", help="time only deepsphere")
    parser.add_argument("--naive", action="store_true",
                        help="also time the straightforward torch.sparse recursion with "
                             "autograd's backward")
    parser.add_argument("--no-conv", action="store_true", help="skip the convolution table")
    parser.add_argument("--no-graph", action="store_true", help="skip the graph build table")
    parser.add_argument("--graph-nside", type=nside_arg, nargs="+",
                        help="nsides of the graph build table (default: those of the convs)")
    parser.add_argument("--graph-k", type=positive_int, nargs="+", default=[8, 20],
                        help="k of the k-NN graph build table")
    parser.add_argument("--csv", help="also write the rows to this CSV file")


# ---- measurement ------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], device: torch.device, repeats: int,
           max_seconds: float) -> float:
    """Median wall time (s) of ``fn`` after one warm-up call; stops early past max_seconds."""
    fn()
    _sync(device)
    times: List[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds:
            break
    return statistics.median(times)


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of distinct storages autograd saves for backward while ``fn`` runs."""
    seen: Dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.layout == torch.strided:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


# ---- graphs -----------------------------------------------------------------------------
def _conv_graph(nside: int, k: int):
    """(adjacency W scipy CSR, lambda_max of the normalized Laplacian, L~ scipy CSR)."""
    from . import graph, sampling

    g = graph.knn(sampling.HEALPix(nside), k=k)
    lmax = g.lmax("normalized")
    return g.adjacency, lmax, g.chebyshev_matrix("normalized", lmax=lmax)


def graph_rows(nsides: List[int], ks: List[int]) -> List[dict]:
    from . import graph, sampling

    rows = []
    builders = [(f"knn k={k}", lambda s, k=k: graph.knn(s, k=k)) for k in ks]
    builders.append(("healpix_neighbours", graph.healpix_neighbours))
    for _, build in builders:  # warm-up: imports and first-call costs out of the timings
        build(sampling.HEALPix(2))
    for nside in sorted(nsides):
        for name, build in builders:
            s = sampling.HEALPix(nside)
            gc.collect()
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            t0 = time.perf_counter()
            g = build(s)
            g.laplacian("normalized")
            dt = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rows.append(dict(table="graph", nside=nside, builder=name, npix=s.npix,
                             edges=g.n_edges, build_s=dt, traced_peak_MB=peak / 2**20,
                             maxrss_growth_MB=(rss1 - rss0) / 1024))
            del g
    return rows


# ---- convolutions -----------------------------------------------------------------------
def naive_cheb_conv(x, L, weight, bias):
    """The straightforward design, for reference (``--naive``): batch folded into columns,
    ``torch.sparse.mm`` recursion, the K terms concatenated into one dense product, and
    autograd's generic backward (which stores every term)."""
    B, N, Fin = x.shape
    K, _, Fout = weight.shape
    T = [x.transpose(0, 1).reshape(N, B * Fin)]
    if K > 1:
        T.append(torch.sparse.mm(L, T[0]))
    for _ in range(2, K):
        T.append(2 * torch.sparse.mm(L, T[-1]) - T[-2])
    Tc = torch.stack([t.view(N, B, Fin) for t in T], 2).view(N, B, K * Fin)
    y = (Tc @ weight.reshape(K * Fin, Fout)).transpose(0, 1)
    return y if bias is None else y + bias


def _pyg_gb(W, B: int, F: int, itemsize: int) -> float:
    # torch_geometric materialises messages [E, F] (gathered input, weighted copy, their
    # gradients) for the whole batch; measured peak resident memory was about eight of them
    return 8 * W.nnz * B * F * itemsize / 2**30


def _agreement(dtype: torch.dtype) -> float:
    # max |ours - PyG| / max |PyG| allowed: rounding of K recursion steps and two sums
    return 1e3 * torch.finfo(dtype).eps


def conv_rows(cases, args, device: torch.device, dtype: torch.dtype) -> List[dict]:
    from .nn import ChebConv, SparseOperator

    have_pyg = not args.no_pyg
    if have_pyg:
        try:
            from torch_geometric.nn import ChebConv as PygChebConv
        except ImportError:
            print("torch_geometric not importable: timing deepsphere only", file=sys.stderr)
            have_pyg = False
    rows = []
    graphs: Dict[int, tuple] = {}
    for nside, K, F, B in cases:
        if nside not in graphs:
            graphs.clear()
            gc.collect()
            graphs[nside] = _conv_graph(nside, args.k)
        W, lmax, Lt = graphs[nside]
        n = W.shape[0]
        torch.manual_seed(0)
        conv = ChebConv(F, F, K).to(device, dtype)
        with torch.no_grad():
            conv.bias.normal_()
        # built in the benchmark's dtype: a float32 operator cast up would not be the
        # float64 graph torch_geometric gets
        L = SparseOperator(Lt, dtype=dtype).to(device)
        x = torch.randn(B, n, F, device=device, dtype=dtype, requires_grad=True)
        grad = torch.randn(B, n, F, device=device, dtype=dtype)

        def ours():
            return conv(x, L)

        def ours_train():
            conv(x, L).backward(grad)

        row = dict(table="conv", nside=nside, npix=n, K=K, channels=F, batch=B)
        with torch.no_grad():
            row["ours_fwd_ms"] = 1e3 * timeit(ours, device, args.repeats, args.max_seconds)
        row["ours_fwdbwd_ms"] = 1e3 * timeit(ours_train, device, args.repeats, args.max_seconds)
        row["ours_saved_MB"] = saved_bytes(ours) / 2**20
        if args.naive:
            Lc = L.csr()

            def naive():
                return naive_cheb_conv(x, Lc, conv.weight, conv.bias)

            def naive_train():
                naive().backward(grad)

            with torch.no_grad():
                y0, y1 = ours(), naive()
                if not torch.allclose(y0, y1, rtol=1e-3, atol=1e-3 * float(y0.abs().max())):
                    raise RuntimeError("the naive reference disagrees with ChebConv")
                del y0, y1
                row["naive_fwd_ms"] = 1e3 * timeit(naive, device, args.repeats, args.max_seconds)
            row["naive_fwdbwd_ms"] = 1e3 * timeit(naive_train, device, args.repeats,
                                                  args.max_seconds)
            row["naive_saved_MB"] = saved_bytes(naive) / 2**20
        # where torch_geometric would not fit in --max-gb, time it on a smaller batch and scale
        # linearly (its work and memory are proportional to the number of edges, B * nnz)
        Bp = B
        while have_pyg and Bp > 1 and _pyg_gb(W, Bp, F, x.element_size()) > args.max_gb:
            Bp = max(1, Bp // 2)
        if have_pyg and _pyg_gb(W, Bp, F, x.element_size()) > args.max_gb:
            row["pyg_skipped"] = f"estimated > {args.max_gb:g} GB even at batch 1 (--max-gb)"
        elif have_pyg:
            scale = B / Bp
            if Bp != B:
                row["pyg_batch_timed"] = Bp
            pyg = PygChebConv(F, F, K, normalization="sym").to(device, dtype)
            with torch.no_grad():
                for k, lin in enumerate(pyg.lins):
                    lin.weight.copy_(conv.weight[k].t())   # lins[k].weight is (out, in)
                pyg.bias.copy_(conv.bias)
            coo = W.tocoo()
            ei = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            ei = torch.cat([ei + b * n for b in range(Bp)], 1).to(device)
            ew = torch.from_numpy(coo.data).to(device, dtype).repeat(Bp)
            batch = torch.arange(Bp, device=device).repeat_interleave(n)
            lam = torch.full((Bp,), lmax, device=device, dtype=dtype)
            # a copy: a view of the first Bp samples keeps the whole batch's storage, which
            # saved_bytes would count and then scale by B / Bp
            xf = x.detach()[:Bp].reshape(Bp * n, F).clone().requires_grad_()
            gf = grad[:Bp].reshape(Bp * n, F)

            def theirs():
                return pyg(xf, ei, ew, batch=batch, lambda_max=lam)

            def theirs_train():
                theirs().backward(gf)

            with torch.no_grad():
                y0, y1 = ours()[:Bp].reshape(Bp * n, F), theirs()
                row["rel_err"] = float((y0 - y1).abs().max() / y1.abs().max())
                del y0, y1
                if not row["rel_err"] <= _agreement(dtype):
                    raise RuntimeError(
                        f"torch_geometric's ChebConv disagrees with ours (rel.err "
                        f"{row['rel_err']:.1e} > {_agreement(dtype):.0e} at nside {nside}, "
                        f"K={K}): they are not computing the same layer, so no time ratio")
                row["pyg_fwd_ms"] = scale * 1e3 * timeit(theirs, device, args.repeats,
                                                         args.max_seconds)
            row["pyg_fwdbwd_ms"] = scale * 1e3 * timeit(theirs_train, device, args.repeats,
                                                        args.max_seconds)
            row["pyg_saved_MB"] = scale * saved_bytes(theirs) / 2**20
            row["ratio_fwd"] = row["pyg_fwd_ms"] / row["ours_fwd_ms"]
            row["ratio_fwdbwd"] = row["pyg_fwdbwd_ms"] / row["ours_fwdbwd_ms"]
            del pyg, ei, ew, batch, xf, gf
        rows.append(row)
        print(_format_conv([row], header=not rows[:-1]), flush=True)
        conv = L = x = grad = None  # release before the next case allocates
        gc.collect()
    return rows


# ---- output -----------------------------------------------------------------------------
def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _format_conv(rows: List[dict], header: bool = True) -> str:
    head = (f"| {'nside':>5} | {'K':>2} | {'ch':>3} | {'B':>3} | {'ours fwd ms':>11} | "
            f"{'PyG fwd ms':>10} | {'ratio':>5} | {'ours f+b ms':>11} | {'PyG f+b ms':>10} | "
            f"{'ratio':>5} | {'saved MB ours/PyG':>17} | {'rel.err':>7} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"] \
        if header else []
    for r in rows:
        saved = f"{r['ours_saved_MB']:.0f} / {_fmt(r.get('pyg_saved_MB'), '.0f')}"
        lines.append(
            f"| {r['nside']:>5} | {r['K']:>2} | {r['channels']:>3} | {r['batch']:>3} | "
            f"{r['ours_fwd_ms']:>11.1f} | {_fmt(r.get('pyg_fwd_ms'), '10.1f'):>10} | "
            f"{_fmt(r.get('ratio_fwd'), '5.1f'):>5} | {r['ours_fwdbwd_ms']:>11.1f} | "
            f"{_fmt(r.get('pyg_fwdbwd_ms'), '10.1f'):>10} | "
            f"{_fmt(r.get('ratio_fwdbwd'), '5.1f'):>5} | {saved:>17} | "
            f"{_fmt(r.get('rel_err'), '7.0e'):>7} |"
            + (f" naive: fwd {r['naive_fwd_ms']:.1f} ms, f+b {r['naive_fwdbwd_ms']:.1f} ms, "
               f"saved {r['naive_saved_MB']:.0f} MB" if "naive_fwd_ms" in r else "")
            + (f" PyG skipped: {r['pyg_skipped']}" if "pyg_skipped" in r else "")
            + (f" PyG timed at batch {r['pyg_batch_timed']}, scaled "
               f"x{r['batch'] // r['pyg_batch_timed']}" if "pyg_batch_timed" in r else ""))
    return "\n".join(lines)


def _format_graph(rows: List[dict]) -> str:
    head = (f"| {'nside':>5} | {'builder':<18} | {'npix':>9} | {'edges':>10} | "
            f"{'build s':>7} | {'traced peak MB':>14} | {'maxrss growth MB':>16} |")
    lines = [head, "|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(f"| {r['nside']:>5} | {r['builder']:<18} | {r['npix']:>9} | "
                     f"{r['edges']:>10} | {r['build_s']:>7.2f} | {r['traced_peak_MB']:>14.0f} | "
                     f"{r['maxrss_growth_MB']:>16.0f} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"python {platform.python_version()}")


def _cases(args) -> list:
    if args.quick:
        grid = dict(QUICK)
    elif args.full:
        grid = dict(FULL)
    else:
        grid = None
    if any(getattr(args, a) for a in ("nside", "K", "channels", "batch")):
        base = grid or dict(FULL)
        grid = {a: getattr(args, a) or base[a] for a in ("nside", "K", "channels", "batch")}
    if grid is None:
        return list(DEFAULT_CASES)
    return list(itertools.product(grid["nside"], grid["K"], grid["channels"], grid["batch"]))


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    if args.quick:
        args.repeats = min(args.repeats, QUICK["repeats"])
        if not args.graph_nside:
            args.graph_nside = QUICK["graph_nside"]
            args.graph_k = QUICK["graph_k"]
    cases = _cases(args)
    print(f"# machine: {machine()}; device {device}, {args.dtype}")
    print(f"# command: {' '.join(sys.argv)}")
    rows: List[dict] = []
    if not args.no_graph:
        nsides = args.graph_nside or sorted({c[0] for c in cases})
        print("\n## graph build (HEALPix, tuned widths for k-NN; incl. normalized Laplacian)\n")
        g_rows = graph_rows(nsides, args.graph_k)
        print(_format_graph(g_rows))
        rows += g_rows
    if not args.no_conv:
        print(f"\n## ChebConv vs torch_geometric.nn.ChebConv (k={args.k} k-NN graph; times are "
              f"medians; ratio = PyG / ours)\n", flush=True)
        rows += conv_rows(cases, args, device, dtype)
    if args.csv:
        keys = sorted({k for r in rows for k in r})
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        print(f"\nwrote {args.csv}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="deepsphere benchmark",
                                     description="time ChebConv and graph builds")
    add_arguments(parser)
    return run(parser.parse_args(argv))
