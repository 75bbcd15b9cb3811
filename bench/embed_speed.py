"""How long do the latent maps take? Prints one JSON object (and writes it with --out).

Times ``core.embed.compute`` for 3D UMAP, 2D t-SNE (openTSNE FFT), 3D t-SNE (openTSNE
Barnes-Hut, by default fitted on at most ``TSNE_3D_MAX_FIT`` points and the rest placed by
nearest neighbours) and 3D PCA on a 10-dimensional Gaussian-mixture latent, the unseeded
multi-threaded UMAP for comparison (umap-learn called directly: ``core.embed`` always seeds),
loading a cached 20,000-point map from disk, and the first UMAP call of a fresh process.

Examples::

    python bench/embed_speed.py                                  # 5k and 20k, default methods
    python bench/embed_speed.py --sizes 5000 --methods pca umap3d
    python bench/embed_speed.py --sizes 5000 20000 50000 --methods tsne3d --tsne3d-max-fit 0

Run it alone on the machine: timings on a shared CPU are noisy (the load average is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core import embed  # noqa: E402

METHODS = ("pca", "umap3d", "umap3d_parallel", "tsne2d", "tsne3d")
DEFAULT_METHODS = ("pca", "umap3d", "umap3d_parallel", "tsne2d")


def mixture(n: int, *, dim: int = 10, n_clusters: int = 8, seed: int = 0) -> np.ndarray:
    """A Gaussian-mixture latent (n, dim) float32, clusters of unequal size and width."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (n_clusters, dim))
    widths = rng.uniform(0.5, 1.5, n_clusters)
    weights = rng.dirichlet(np.full(n_clusters, 3.0))
    comp = rng.choice(n_clusters, size=n, p=weights)
    return (centres[comp] + rng.normal(size=(n, dim)) * widths[comp, None]).astype(np.float32)


def _stderr_progress(label: str):
    last = {"pct": -10}

    def report(fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if pct >= last["pct"] + 10 or fraction >= 1.0:
            last["pct"] = pct
            print(f"  [{label}] {pct:3d}% {message}", file=sys.stderr, flush=True)

    return report


def time_method(method: str, x: np.ndarray, *, seed: int, tsne3d_max_fit: int | None) -> dict:
    n = len(x)
    label = f"{method} n={n}"
    print(f"{label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    cpu0 = time.process_time()
    row: dict = {"method": method, "n": n}
    if method == "umap3d_parallel":
        import warnings

        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap.UMAP(n_components=3, n_jobs=-1).fit_transform(x)  # no random_state
        row.update(
            fit_n=n, notes=["umap-learn without random_state: multi-threaded, not reproducible"]
        )
    else:
        spec = {
            "pca": ("pca", 3, {}),
            "umap3d": ("umap", 3, {}),
            "tsne2d": ("tsne", 2, {}),
            "tsne3d": ("tsne", 3, {"max_fit": tsne3d_max_fit}),
        }[method]
        name, k, params = spec
        emb = embed.compute(
            x, method=name, n_components=k, seed=seed, progress=_stderr_progress(label), **params
        )
        row.update(fit_n=int(len(emb.fit_indices)), notes=list(emb.notes), params=emb.params)
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["cpu_seconds"] = round(time.process_time() - cpu0, 2)
    print(f"{label}: {row['seconds']} s", file=sys.stderr, flush=True)
    return row


def time_cache_load(x: np.ndarray, *, seed: int) -> dict:
    """Compute a 3D UMAP into a temporary run folder once, then time loading it back."""
    with tempfile.TemporaryDirectory(prefix="ole-bench-") as tmp:
        t0 = time.perf_counter()
        first = embed.cached(tmp, x, method="umap", n_components=3, seed=seed)
        compute_s = time.perf_counter() - t0
        loads = []
        for _ in range(5):
            t0 = time.perf_counter()
            again = embed.cached(tmp, x, method="umap", n_components=3, seed=seed)
            loads.append(time.perf_counter() - t0)
            assert again.from_cache and np.array_equal(again.coords, first.coords)
        new = x[:1000] + np.float32(0.05)
        t0 = time.perf_counter()
        again.transform(new)
        transform_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "embeddings").iterdir())
    return {
        "method": "umap3d",
        "n": len(x),
        "compute_and_save_seconds": round(compute_s, 2),
        "load_seconds_median": round(float(np.median(loads)), 4),
        "load_seconds_max": round(float(np.max(loads)), 4),
        "transform_1000_new_points_seconds_after_reload": round(transform_s, 3),
        "cache_bytes": size,
        "note": "load = cached() hit: sha1 of the latent + np.load(allow_pickle=False) + checks",
    }


def time_first_umap_call(seed: int, n: int = 5000) -> dict:
    """First vs second UMAP call in this process (import + JIT vs warm), seeded and parallel.

    ``n`` >= 4096 so that umap-learn's approximate kNN (pynndescent) is compiled here too;
    below that size umap uses exact distances and a later, larger call would compile then.
    """
    x = mixture(n, seed=seed + 1)
    out: dict = {"n": n}
    for label in ("first_call_seconds", "second_call_seconds"):
        t0 = time.perf_counter()
        embed.compute(x, method="umap", n_components=3, seed=seed)
        out[label] = round(time.perf_counter() - t0, 2)
    import warnings

    import umap

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(n_components=3, n_jobs=-1).fit_transform(x)
    out["parallel_first_call_seconds"] = round(time.perf_counter() - t0, 2)
    out["note"] = (
        "first call in a fresh process (import + numba JIT, partly from numba's on-disk cache, "
        "pynndescent compiles every process) vs the same call again; parallel = umap-learn "
        "without random_state. The very first call after installing umap-learn compiled for "
        "~70 s (issue 4); that is not re-measured (it means deleting the shared venv's cache)"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS),
        help=f"default: {' '.join(DEFAULT_METHODS)} (tsne3d is slow: Barnes-Hut)",
    )  # fmt: skip
    parser.add_argument(
        "--tsne3d-max-fit", type=int, default=embed.TSNE_3D_MAX_FIT,
        help="3D t-SNE fits at most this many points, the rest are placed (0: fit all; "
        "Barnes-Hut 3D took ~330 s for 20,000 points)",
    )  # fmt: skip
    parser.add_argument("--cache-size", type=int, default=20000, help="0 skips the cache timing")
    parser.add_argument("--skip-warmup", action="store_true", help="skip the first-call timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here: {'runs': [report]}")
    parser.add_argument(
        "--append", action="store_true", help="add this run to the runs already in --out"
    )
    args = parser.parse_args(argv)

    import numba
    import openTSNE
    import sklearn
    import umap

    report: dict = {
        "benchmark": "embed_speed",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        },
        "versions": {
            "numpy": np.__version__,
            "umap-learn": umap.__version__,
            "numba": numba.__version__,
            "openTSNE": openTSNE.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "latent": "Gaussian mixture, 10 dims, 8 clusters, float32, seeded",
        "defaults_3d": {m: embed.default_params(m, n_components=3) for m in embed.METHODS},
        "tsne_n_jobs": 1,
    }
    if not args.skip_warmup:
        report["umap_first_call"] = time_first_umap_call(args.seed)
    max_fit = args.tsne3d_max_fit  # 0 = fit all points
    report["results"] = [
        time_method(m, mixture(n, seed=args.seed), seed=args.seed, tsne3d_max_fit=max_fit)
        for n in args.sizes
        for m in args.methods
    ]
    if args.cache_size:
        report["cache_load"] = time_cache_load(
            mixture(args.cache_size, seed=args.seed), seed=args.seed
        )
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        runs = []
        if args.append and args.out.is_file():
            runs = json.loads(args.out.read_text()).get("runs", [])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps({"runs": [*runs, report]}, indent=2, default=str) + "\n")
        os.replace(tmp, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
