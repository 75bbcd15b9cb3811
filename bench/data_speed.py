"""Benchmark the data layer; prints one JSON object.

Seconds to simulate the default ``synthetic`` dataset and to load each built-in, uncached
(the loader itself) and cached (``load_builtin`` after a first call: a copy of the cached
MuData). Usage: ``OMP_NUM_THREADS=1 python bench/data_speed.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times), 4)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import anndata  # noqa: F401
    import mudata  # noqa: F401

    from core import datasets

    import_s = time.perf_counter() - t0
    datasets.simulate(n_obs=20, n_genes=10, n_cpgs=5, n_proteins=4, n_drugs=1, n_regulators=1)
    result: dict = {
        "benchmark": "data_speed",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "repeat": args.repeat,
        "import_s": round(import_s, 4),
        "synthetic_default_s": _best(datasets.simulate, args.repeat),
        "synthetic_default_limit_s": 2.0,
        "load_uncached_s": {},
        "load_cached_s": {},
        "shapes": {},
    }
    for name, entry in datasets.REGISTRY.items():
        result["load_uncached_s"][name] = _best(entry.loader, args.repeat)
        datasets.load_builtin(name)
        result["load_cached_s"][name] = _best(lambda n=name: datasets.load_builtin(n), args.repeat)
        mdata = datasets.load_builtin(name)
        result["shapes"][name] = {m: list(a.shape) for m, a in mdata.mod.items()}
    result["synthetic_within_limit"] = (
        result["synthetic_default_s"] < result["synthetic_default_limit_s"]
    )
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
