r"""Sweeps of the equivariance error over samplings, graphs, kernel widths and Laplacians, from a
YAML config (see ``configs/equivariance_*.yaml``); writes a CSV table and log-log plots.

Config keys (unknown keys are errors)::

    out: runs/equivariance_healpix       # folder for errors.csv, summary.csv, plots
    degrees: [10, 20, ..., 90]            # absolute degrees, or
    degrees_per_nside: [0.3125, ...]      # scaled by the sampling's (equivalent) nside
    n_signals: 4                          # random signals per degree
    n_rotations: 2                        # Haar-random rotations (shared by all graphs)
    protocol: exact                       # or published (R_V = T R T^-1 on f and Lf, as in the paper)
    seed: 0
    threads: 1                            # OpenMP/BLAS threads while measuring
    laplacians: [normalized]              # or combinatorial
    samplings: [{name: healpix, nside: 32}, {name: equiangular, bandwidth: 32, kind: DH}]
    graphs:                               # one curve each (times each grid value)
      - {label: v1, kind: healpix, kernel_width: heuristic}
      - {label: k8, kind: knn, k: 8, kernel_width: tuned}     # tuned | heuristic | t | {sigma: s}
      - {label: k8-opt, kind: knn, k: 8, kernel_width: optimise}
      - {label: k8-grid, kind: knn, k: 8, kernel_width: {grid: [0.5, 1, 2]}}   # x tuned t
      - {label: fem, kind: fem}                   # M^-1 C on the Delaunay triangulation
      - {label: cot, kind: cotangent}             # cotangent-weight graph (C = D - W)
      - {label: k8-density, kind: knn, k: 8, density_alpha: 1}
      - {label: k8-linked, kind: knn, k: 8, connect: true}   # components linked (equiangular poles)
      - {label: k8-edges, kind: knn, k: 8, optimise_edges: {steps: 300}}
      - {label: zonal, kind: spectral}            # isotropic spectral filter (exact reference)
      - {label: zonal32, kind: spectral, dtype: float32, compute_dtype: float64, lmax: 2nside, iterations: 10}
    cost: {K: 5, channels: 16, repeats: 5}         # ChebConv timing
    plot: true
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .. import graph as graphs
from ..io import atomic_path
from ..sampling import Equiangular, HEALPix, Sampling
from .measure import equivariance_error, limit_threads
from .optimise import optimise_kernel_width
from .rotation import band_limit

TOP_KEYS = {"out", "degrees", "degrees_per_nside", "n_signals", "n_rotations", "seed", "threads",
            "laplacians", "samplings", "graphs", "cost", "plot", "optimiser", "title", "protocol"}
GRAPH_KEYS = {"label", "kind", "k", "kernel_width", "symmetrize", "connect", "density_alpha", "optimise_edges",
              "laplacian", "dtype", "compute_dtype", "lmax", "iterations"}
GRAPH_KINDS = ("healpix", "knn", "fem", "fem_symmetric", "cotangent", "spectral")
COLUMNS = ["sampling", "nside", "graph", "kind", "k", "kernel_width", "t", "sigma", "laplacian",
           "ell", "error", "error_std", "error_squared", "edges_per_vertex", "cheb_ms"]


def _check_keys(d: dict, valid: set, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, got {d!r}")
    bad = set(d) - valid
    if bad:
        raise ValueError(f"unknown key(s) {sorted(bad)} in {where}; valid keys: {sorted(valid)}")


def make_sampling(spec: dict) -> Sampling:
    """``{name: healpix, nside: 32}`` or ``{name: equiangular, bandwidth: 32, kind: DH}``."""
    _check_keys(spec, {"name", "nside", "bandwidth", "kind"}, "a sampling")
    spec = dict(spec)
    name = spec.pop("name", None)
    if name == "healpix":
        _check_keys(spec, {"nside"}, "a healpix sampling")
        if "nside" not in spec:
            raise ValueError(f"a healpix sampling needs an nside, e.g. {{name: healpix, nside: 32}}; got {spec}")
        return HEALPix(spec["nside"])
    if name == "equiangular":
        _check_keys(spec, {"bandwidth", "kind"}, "an equiangular sampling")
        if "bandwidth" not in spec:
            raise ValueError("an equiangular sampling needs a bandwidth, e.g. {name: equiangular, "
                             f"bandwidth: 32, kind: DH}}; got {spec}")
        return Equiangular(spec["bandwidth"], spec.get("kind", "DH"))
    raise ValueError(f"sampling name must be 'healpix' or 'equiangular', got {name!r}")


def sampling_label(s: Sampling) -> str:
    if isinstance(s, HEALPix):
        return f"healpix-{s.nside}"
    return f"equiangular-{s.kind}-{s.bandwidth}"


def degrees_for(cfg: dict, s: Sampling, log=None) -> list:
    """The degrees to measure on ``s``: ``degrees``, or ``degrees_per_nside`` times the
    sampling's (equivalent) nside, kept within ``[1, band limit]`` (those beyond are dropped,
    with a line to ``log``)."""
    L = band_limit(s)
    if "degrees_per_nside" in cfg and "degrees" in cfg:
        raise ValueError("give either 'degrees' or 'degrees_per_nside', not both")
    if "degrees_per_nside" in cfg:
        r = cfg["degrees_per_nside"]
        if not isinstance(r, (list, tuple)) or not r or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in r):
            raise ValueError(f"degrees_per_nside must be a non-empty list of positive numbers "
                             f"(degrees per unit of nside), got {r!r}")
        ns = graphs.equivalent_nside(s)
        d = sorted({int(round(x * ns)) for x in r})
    else:
        d = list(cfg.get("degrees", [10, 20, 30, 40, 50, 60, 70, 80, 90]))
        if not all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
                   and float(x) == int(x) for x in d):
            raise ValueError(f"degrees must be a list of integers, got {d}")  # int(2.5) would be 2
        d = [int(x) for x in d]
    keep = [x for x in d if 1 <= x <= L]
    if not keep:
        raise ValueError(f"no degree of {d} is within [1, {L}] for {s!r}")
    if log is not None and len(keep) < len(d):
        log(f"{sampling_label(s)}: degrees {[x for x in d if x not in keep]} are outside "
            f"[1, {L}] (the band limit) and are not measured")
    return keep


def _cheb_ms(g, laplacian: str, K: int, channels: int, repeats: int) -> float:
    import torch

    from ..nn import ChebConv, SparseOperator

    torch.manual_seed(0)
    conv = ChebConv(channels, channels, K)
    # a SparseOperator is converted and checked once, as in a model: the timing is the layer's
    L = SparseOperator(g.chebyshev_operator(laplacian)) if g is not None else None
    x = torch.randn(1, g.n_vertices, channels)
    times = []
    with torch.no_grad():
        conv(x, L)
        for _ in range(repeats):
            t = time.perf_counter()
            conv(x, L)
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.min(times))  # the minimum is the least disturbed by other load


def _spectral_ms(module, n: int, channels: int, repeats: int) -> float:
    import torch

    p = next(iter(module.parameters()), None)   # a float64 filter (dtype: float64) takes float64
    x = torch.randn(1, n, channels, dtype=p.dtype if p is not None else torch.float32)
    times = []
    with torch.no_grad():
        module(x)
        for _ in range(repeats):
            t = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.min(times))  # the minimum is the least disturbed by other load


def _widths(spec: dict):
    """Expand a graph spec's kernel width into a list of concrete specs."""
    kw = spec.get("kernel_width", "tuned" if spec.get("kind") == "knn" else "heuristic")
    if isinstance(kw, dict) and "grid" in kw:
        _check_keys(kw, {"grid"}, "kernel_width grid")
        return [("grid", float(f)) for f in kw["grid"]]
    return [(kw, None)]


def _fixed_operator(s: Sampling, spec: dict):
    """(operator, graph for ChebConv timing or None, info) for the kinds without a kernel width
    (spectral, fem, fem_symmetric, cotangent); ``(None, None, info)`` for the others."""
    kind = spec["kind"]
    info = {"k": spec.get("k", ""), "t": "", "sigma": "", "kernel_width": ""}
    if kind == "spectral":
        import torch

        from ..spectral import ZonalConv

        torch.manual_seed(0)
        dtypes = {"float32": torch.float32, "float64": torch.float64}
        if spec.get("dtype", "float32") not in dtypes:
            raise ValueError(f"spectral dtype must be one of {sorted(dtypes)}, got {spec['dtype']!r}")
        dtype = dtypes[spec.get("dtype", "float32")]
        compute = spec.get("compute_dtype")
        if compute is not None and compute not in dtypes:
            raise ValueError(f"spectral compute_dtype must be one of {sorted(dtypes)}, got {compute!r}")
        L = spec.get("lmax", band_limit(s))
        if isinstance(L, str):  # "2nside" etc.: HEALPix analysis converges to rounding up to 2 nside
            factor = L[:-len("nside")] if L.endswith("nside") else ""
            if not factor.isdigit():
                raise ValueError(
                    f"spectral lmax {L!r} is not understood: give an integer, or 'Nnside' such "
                    "as '2nside' (N times the HEALPix nside; other samplings use their band limit)")
            L = int(factor) * s.nside if isinstance(s, HEALPix) else band_limit(s)
        mod = ZonalConv(s, 1, 1, lmax=int(L), bias=False, iterations=int(spec.get("iterations", 3)),
                        compute_dtype=None if compute is None else dtypes[compute]).to(dtype)
        width = f"zonal {spec.get('dtype', 'float32')}" + (f" (computed in {compute})" if compute else "")
        return mod, None, dict(info, kernel_width=width, max_degree=int(L))
    if kind in ("fem", "fem_symmetric"):
        from ..graph import experimental

        g = experimental.cotangent_graph(s)
        op = experimental.fem_laplacian(s, symmetric=kind == "fem_symmetric")
        return op, g, dict(info, kernel_width="cotangent/mass")
    if kind == "cotangent":
        from ..graph import experimental

        g = experimental.cotangent_graph(s)
        return g, g, dict(info, kernel_width="cotangent")
    return None, None, info


def _graph_variants(s: Sampling, spec: dict, laplacian: str, degrees, cfg: dict):
    """Yield (label, operator, graph, info) for every kernel width of a graph spec."""
    kind = spec["kind"]
    op, g, info = _fixed_operator(s, spec)
    if op is not None:
        yield spec["label"], op, g, info
        return
    if kind not in ("healpix", "knn"):
        raise ValueError(f"graph kind must be one of {GRAPH_KINDS}, got {kind!r}")
    if kind == "healpix" and not isinstance(s, HEALPix):
        return  # the 8-neighbour graph exists on HEALPix only
    k = spec.get("k")
    if kind == "knn" and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"graph {spec['label']!r}: a knn graph needs 'k', a positive number of "
                         f"neighbours (e.g. k: 8); got {k!r}")
    for kw, factor in _widths(spec):
        label = spec["label"]
        if kw == "grid":
            if kind != "knn":
                raise ValueError("a kernel-width grid is relative to the tuned width: knn graphs only")
            t = factor * graphs.sigma_to_t(graphs.tuned_sigma(k, graphs.equivalent_nside(s)))
            label = f"{label} x{factor:g}"
            width = t
        elif kw in ("optimise", "optimize"):
            ocfg = cfg.get("optimiser", {})
            # the healpix graph's own width, started from the 8-neighbour tuned width
            builder = (lambda s_, t_: graphs.healpix_neighbours(s_, kernel_width=t_)) if kind == "healpix" else None
            if kind == "knn" and (spec.get("connect", False) is not False
                                  or spec.get("symmetrize", "average") != "average"):
                # the width is tuned on the graph that is measured: linked, symmetrised as asked
                builder = (lambda s_, t_: graphs.knn(
                    s_, k=int(k), kernel_width=t_, symmetrize=spec.get("symmetrize", "average"),
                    connect=spec.get("connect", False)))
            res = optimise_kernel_width(s, 8 if kind == "healpix" else k, degrees, laplacian,
                                        ocfg.get("n_signals", 2), ocfg.get("n_rotations", 1),
                                        cfg.get("seed", 0) + 1, builder=builder)
            width = res.t
            kw = "optimised"
        else:
            width = kw
        if kind == "healpix":
            g = graphs.healpix_neighbours(s, kernel_width=width)
        else:
            g = graphs.knn(s, k=int(k), kernel_width=width, symmetrize=spec.get("symmetrize", "average"),
                           connect=spec.get("connect", False))
        if "density_alpha" in spec:
            from ..graph import experimental

            g = experimental.density_normalized(g, float(spec["density_alpha"]))
        if "optimise_edges" in spec:
            from ..graph import experimental

            o = dict(spec["optimise_edges"] or {})
            g = experimental.optimise_edge_weights(g, o.pop("degrees", degrees), seed=cfg.get("seed", 0) + 2, **o)
        t = g.recipe.get("t", "")
        info = {"k": k if k is not None else 8, "t": t,
                "sigma": graphs.t_to_sigma(t) if t != "" else "", "kernel_width": str(kw)}
        yield label, g, g, info


def run_sweep(cfg: dict, log=print) -> list:
    """Run a sweep config (a dict as read from YAML); returns the table rows (dicts)."""
    import torch

    threads = cfg.get("threads", 1)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))  # edge-weight fits and ChebConv timings
    try:
        with limit_threads(threads):
            return _run_sweep(cfg, log)
    finally:
        torch.set_num_threads(before)


def _run_sweep(cfg: dict, log) -> list:
    _check_keys(cfg, TOP_KEYS, "the equivariance config")
    for key in ("samplings", "graphs"):
        if not isinstance(cfg.get(key, []), list):
            raise ValueError(f"'{key}' must be a list of mappings (YAML '- {{...}}' items), got "
                             f"{cfg[key]!r}")
    for gs in cfg.get("graphs", []):
        _check_keys(gs, GRAPH_KEYS, f"graph {gs.get('label', gs) if isinstance(gs, dict) else gs!r}")
        if "label" not in gs or "kind" not in gs:
            raise ValueError(f"every graph needs a 'label' and a 'kind' ({GRAPH_KINDS}); got {gs}")
    if not cfg.get("samplings") or not cfg.get("graphs"):
        raise ValueError("the config needs non-empty 'samplings' and 'graphs' lists")
    cost = dict(cfg.get("cost", {}))
    _check_keys(cost, {"K", "channels", "repeats"}, "cost")
    laplacians = cfg.get("laplacians", ["normalized"])
    if isinstance(laplacians, str) or not isinstance(laplacians, (list, tuple)) or not laplacians:
        raise ValueError(f"laplacians must be a non-empty list, e.g. [normalized] or [normalized, "
                         f"combinatorial]; got {laplacians!r}")
    rows = []
    for sspec in cfg["samplings"]:
        s = make_sampling(sspec)
        degrees = degrees_for(cfg, s, log)
        done = set()
        for lap in laplacians:
            for n, gs in enumerate(cfg["graphs"]):
                lap_g = gs.get("laplacian", lap)
                # a spectral or FEM operator, or a graph with its own laplacian, is the same for
                # every entry of 'laplacians': measure it once (it was repeated in the table)
                key = (n, "" if gs["kind"] in ("spectral", "fem", "fem_symmetric") else lap_g)
                if key in done:
                    continue
                done.add(key)
                for label, op, g, info in _graph_variants(s, gs, lap_g, degrees, cfg):
                    t0 = time.perf_counter()
                    degs = [d for d in degrees if d <= info.get("max_degree", d)]
                    res = equivariance_error(op, s, degs, cfg.get("n_signals", 4),
                                             cfg.get("n_rotations", 2), cfg.get("seed", 0),
                                             laplacian=lap_g, threads=cfg.get("threads", 1),
                                             protocol=cfg.get("protocol", "exact"))
                    with limit_threads(cfg.get("threads", 1)):
                        if g is not None:
                            epv = g.adjacency.nnz / g.n_vertices
                            ms = _cheb_ms(g, "normalized", cost.get("K", 5), cost.get("channels", 16),
                                          cost.get("repeats", 5))
                        else:
                            epv, ms = float("nan"), _spectral_ms(op, s.npix, 1, cost.get("repeats", 5))
                    log(f"{sampling_label(s):>22} {label:>16} {lap_g:>13}: mean E = {res.overall():.4g} "
                        f"(min {res.mean.min():.3g} at l={res.degrees[res.mean.argmin()]}), "
                        f"{epv:.1f} edges/vertex, {time.perf_counter() - t0:.1f}s")
                    for ell, e, sd, e2 in zip(res.degrees, res.mean, res.std, res.mean_squared):
                        rows.append({
                            "sampling": sampling_label(s), "nside": round(graphs.equivalent_nside(s), 3),
                            "graph": label, "kind": gs["kind"], "k": info["k"],
                            "kernel_width": info["kernel_width"], "t": _fmt(info["t"]),
                            "sigma": _fmt(info["sigma"]), "laplacian": "" if gs["kind"] == "spectral" else lap_g,
                            "ell": int(ell), "error": f"{e:.6g}", "error_std": f"{sd:.3g}",
                            "error_squared": f"{e2:.6g}", "edges_per_vertex": f"{epv:.3f}",
                            "cheb_ms": f"{ms:.3f}"})
    if not rows:
        raise ValueError("no graph of the config applies to its samplings (the 'healpix' graph "
                         "exists on HEALPix samplings only): nothing was measured")
    return rows


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, (float, np.floating)) else str(x)


def write_csv(rows: list, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def summarise(rows: list) -> list:
    """One row per (sampling, graph, laplacian): mean error over degrees, minimum and where,
    first and last degree, cost."""
    groups = {}
    for r in rows:
        groups.setdefault((r["sampling"], r["graph"], r["laplacian"]), []).append(r)
    out = []
    for (s, gname, lap), rs in groups.items():
        e = np.array([float(r["error"]) for r in rs])
        ells = [r["ell"] for r in rs]
        i = int(e.argmin())
        out.append({"sampling": s, "graph": gname, "laplacian": lap, "t": rs[0]["t"],
                    "sigma": rs[0]["sigma"], "mean_error": f"{e.mean():.4g}",
                    "first_l": ells[0], "error_first": f"{e[0]:.4g}", "min_error": f"{e[i]:.4g}",
                    "argmin_l": ells[i],
                    "error_last": f"{e[-1]:.4g}", "last_l": ells[-1],
                    "edges_per_vertex": rs[0]["edges_per_vertex"], "cheb_ms": rs[0]["cheb_ms"]})
    return out


def plot(rows: list, path: Path, title: Optional[str] = None) -> None:
    """Log-log :math:`E(\\ell)` per graph, one panel per sampling (style of DeepSphere's
    ICLR 2020 figure), and a second figure of mean error against edges per vertex."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplings = list(dict.fromkeys(r["sampling"] for r in rows))
    labels = list(dict.fromkeys(r["graph"] for r in rows))
    colour = {l: f"C{i % 10}" for i, l in enumerate(labels)}
    fig, axes = plt.subplots(1, len(samplings), figsize=(5.5 * len(samplings), 4.2), squeeze=False)
    for ax, s in zip(axes[0], samplings):
        curves = {}
        for r in rows:
            if r["sampling"] == s:
                xy = curves.setdefault((r["graph"], r["laplacian"]), ([], []))
                xy[0].append(r["ell"])
                xy[1].append(max(float(r["error"]), 1e-12))
        for (gname, lap), (x, y) in curves.items():
            label = gname + (f" ({lap})" if lap not in ("normalized", "") else "")
            ax.loglog(x, y, marker="o", ms=3, label=label, color=colour[gname],
                      linestyle="--" if lap == "combinatorial" else "-")
        ax.set_xlabel(r"degree $\ell$")
        ax.set_ylabel(r"mean $\|R_V L f - L R_V f\| / \|L f\|$")
        ax.set_title(s)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def plot_tradeoff(summary: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for r in summary:
        epv = float(r["edges_per_vertex"])
        if math.isnan(epv):
            continue
        ax.loglog(epv, float(r["mean_error"]), "o")
        ax.annotate(f"{r['graph']} [{r['sampling']}]", (epv, float(r["mean_error"])), fontsize=6)
    ax.set_xlabel("edges per vertex (cost)")
    ax.set_ylabel(r"mean over $\ell$ of $E(\ell)$")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
