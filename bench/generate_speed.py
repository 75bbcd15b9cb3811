"""Benchmark: generation speed and synthetic-data quality on the built-in datasets.

    python bench/generate_speed.py [--datasets synthetic pbmc68k] [--runs-dir DIR] [--reuse]
                                   [--epochs 100] [--n 5000] [--n-eval 2000]

For each dataset: train a run with the default settings (``python -m core train`` defaults:
VAE, 10 latent dimensions, 100 epochs; or reuse ``<runs-dir>/bench-gen-<dataset>`` with
--reuse), time generating ``--n`` samples (posterior mode, likelihood draws; the Generator is
built once, as the dashboard caches it; median of 3 of wall time and of process CPU time, the
latter being independent of other load on a shared machine), then score ``--n-eval`` synthetic samples
(with the decoder's own noise and with the calibrated noise) against the run's held-out test
split with :func:`core.evaluate.evaluate_run`. Prints one JSON
object and writes it to bench/results/generate.json. Targets (issue 6): TSTR macro-F1 >= 0.85 x
TRTR, C2ST AUC <= 0.75, 5,000 samples in < 1 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LABELS = {"synthetic": "tissue", "pbmc68k": "bulk_labels", "nutrimouse": "genotype"}


def _train(dataset: str, out: Path, *, epochs: int, seed: int, latent: int | None) -> float:
    from core.cli import main

    t0 = time.perf_counter()
    extra = [] if latent is None else ["--latent", str(latent)]
    code = main(["train", "--data", dataset, "--out", str(out), "--epochs", str(epochs),
                 "--seed", str(seed), *extra])  # fmt: skip
    if code != 0:
        raise SystemExit(f"training {dataset} failed with exit code {code}")
    return time.perf_counter() - t0


def bench_dataset(dataset: str, run_dir: Path, *, n: int, n_eval: int, reuse: bool, epochs: int,
                  seed: int, latent: int | None = None) -> dict:  # fmt: skip
    from core.evaluate import evaluate_run
    from core.generate import Generator
    from core.runs import load_run

    train_s = None
    if not (reuse and (run_dir / "weights.json").is_file()):
        train_s = _train(dataset, run_dir, epochs=epochs, seed=seed, latent=latent)
    run = load_run(run_dir)
    t0 = time.perf_counter()
    mdata = run.load_data()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = Generator(run, mdata=mdata)
    init_s = time.perf_counter() - t0
    times = {}
    for output in ("sample", "mean"):
        ts, cpu = [], []
        for rep in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            out = gen.generate(n=n, mode="posterior", output=output, seed=rep)
            ts.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # all threads: independent of other load
        times[output] = {"median_s": statistics.median(ts), "cpu_s": statistics.median(cpu)}
    t0 = time.perf_counter()
    gen.generate(n=n, mode="prior", output="sample", seed=0)
    prior_s = time.perf_counter() - t0
    label = LABELS[dataset]
    quality = {}
    for noise in ("model", "calibrated"):
        syn = gen.generate(n=n_eval, mode="posterior", output="sample", noise=noise, seed=seed)
        t0 = time.perf_counter()
        report = evaluate_run(run, syn, label=label, mdata=mdata, seed=seed)
        s = report.summary
        quality[noise] = {
            "eval_seconds": time.perf_counter() - t0,
            **{k: s[k] for k in SUMMARY_KEYS},
            "targets": {
                "tstr_ge_0.85_trtr": bool(s["tstr_ratio"] >= 0.85),
                "c2st_auc_le_0.75": bool(s["c2st_auc"] <= 0.75),
            },
            "verdict": report.verdict,
        }
    return {
        "dataset": dataset,
        "run": str(run_dir),
        "label": label,
        "n_latent": run.n_latent,
        "train_seconds": train_s,
        "n_features": {m: a.n_vars for m, a in out.mod.items()},
        "generate_n": n,
        "generate_sample_s": times["sample"]["median_s"],
        "generate_mean_s": times["mean"]["median_s"],
        "generate_sample_cpu_s": times["sample"]["cpu_s"],
        "generate_mean_cpu_s": times["mean"]["cpu_s"],
        "generate_prior_sample_s": prior_s,
        # CPU seconds summed over threads <= wall seconds on an otherwise idle 2-core machine
        "generate_5000_lt_1s": bool(n >= 5000 and times["sample"]["cpu_s"] < 1.0),
        "generator_init_s": init_s,
        "load_data_s": load_s,
        "n_eval": n_eval,
        "quality": quality,
    }


SUMMARY_KEYS = ("n_train", "n_test", "trtr_f1", "trts_f1", "tstr_f1", "tstr_ratio", "c2st_auc",
                "mmd", "mmd_p", "mean_r", "var_r", "corr_dist", "corr_dist_real", "memorisation",
                "memorisation_real", "nn_train_share", "memorisation_flagged")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["synthetic", "pbmc68k"], choices=list(LABELS))
    p.add_argument("--runs-dir", type=Path, default=None, help="where the bench runs live")
    p.add_argument("--reuse", action="store_true", help="reuse finished bench runs")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--latent", type=int, default=None, help="latent dims (default: the CLI's)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--n-eval", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "generate.json")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import torch

    torch.set_num_threads(2)
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="bench-gen-"))
    runs.mkdir(parents=True, exist_ok=True)
    results = {
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "datasets": [
            bench_dataset(
                d,
                runs / f"bench-gen-{d}",
                n=args.n,
                n_eval=args.n_eval,
                reuse=args.reuse,
                epochs=args.epochs,
                seed=args.seed,
            )  # fmt: skip
            for d in args.datasets
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    os.replace(tmp, args.out)
    print(json.dumps(results, default=str))
    return results


if __name__ == "__main__":
    main()
