"""MOVE (move-dl) and our perturbation job side by side on the same data; prints one JSON object.

Issue 5 asks for the whole association job on MOVE-tutorial-sized data (train 10 refits, screen
every drug) in under a fifth of MOVE's time, "measured side by side when move-dl is installed in
its own virtualenv". This script does that on one machine, one step after the other:

1. Exports ``core.datasets.load_builtin("synthetic", **JOB_PARAMS)`` (the data of
   ``bench/perturb_speed.py``'s ``job``: 500 samples, 900 genes, 250 CpGs, 70 proteins, 20 drugs)
   to MOVE's input format in a temporary directory: one TSV per dataset (sample ids in the first
   column), an ids file, and a data config mirroring MOVE's tutorial ``random_small.yaml``.
   All 500 samples go to both tools. The 20 samples without methylation / protein are written as
   NaN rows, which is how MOVE takes missing values (``encode_data`` z-scores, then sets NaN to
   0; the Bayes task masks those entries out of the statistics), so neither tool drops samples.
   ``rna`` holds counts: MOVE gets it as continuous with ``log2: true`` (its option for counts).
   ``drug`` is categorical 0/1, perturbed to 1 (``target_value: 1``), every drug in turn.
2. Runs MOVE's own CLI (``move-dl``, hydra overrides) in that directory: ``task=encode_data``,
   then the Bayes association task with the tutorial's settings
   (``random_small__id_assoc_bayes.yaml``: batch 10, 1,000 hidden units, 150 latent, lr 1e-4,
   40 epochs) and 10 refits. With ``--move-refits N < 10`` it trains N refits and extrapolates
   linearly (fixed start-up + N-refit time scaled to 10); the JSON says so.
3. Runs ``bench/perturb_speed.py --skip speed`` (our job, same data, same machine, right after)
   once per ``--our-batch-size`` (32 is the job's default; 10 is MOVE's batch size).

Each child process is timed: wall seconds and CPU seconds (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)`` deltas). The machine is shared, so load averages are
recorded before and after every step; CPU seconds are the better guide to an idle machine.

Usage: python bench/move_side_by_side.py [--move-refits 10] [--epochs 40]
       [--our-batch-size 32 [10 ...]] [--move-venv /work/move-venv]
       [--out bench/results/move_side_by_side.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_REFITS = 10  # the job: 10 refits
TARGET_FRACTION = 0.2  # "under a fifth of MOVE's time"
DATA_NAME = "omics_job"  # data config name in MOVE's config/data/
TASK_NAME = f"{DATA_NAME}__id_assoc_bayes"  # task config name in MOVE's config/task/
# MOVE's tutorial task (tutorial/config/task/random_small__id_assoc_bayes.yaml) on top of the
# package's identify_associations_bayes defaults; num_refits and num_epochs are set per run.
MOVE_TASK = {
    "batch_size": 10,
    "target_value": 1,
    "save_refits": False,
    "num_hidden": [1000],
    "num_latent": 150,
    "lr": 1e-4,
}


def _log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_timed(cmd: list[str], *, cwd: Path, log_path: Path) -> dict:
    """Run ``cmd`` to completion; returns wall and CPU (user + system) seconds of the child.

    stdout and stderr go to ``log_path``; a non-zero exit raises RuntimeError with its tail.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0, wall0 = _load_avg(), time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return {
        "cmd": " ".join(cmd),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
        ),
        "load_avg_start": load0,
        "load_avg_end": _load_avg(),
    }


def _write_tsv(path: Path, sample_ids: list[str], var_names: list[str], rows: dict) -> None:
    """One TSV, sample ids in the first column; samples missing from ``rows`` become NaN rows."""
    nan_row = "\t".join(["NA"] * len(var_names))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(["ID", *var_names]) + "\n")
        for sid in sample_ids:
            f.write(sid + "\t" + (rows.get(sid) or nan_row) + "\n")


def export_for_move(mdata, root: Path) -> dict:
    """Write ``mdata`` as MOVE inputs under ``root``: data/*.tsv, data/*.ids.txt, config/.

    Returns a summary of what was written: per modality its kind in MOVE, its shape and how many
    samples are NaN rows.
    """
    import numpy as np

    raw = root / "data"
    (raw).mkdir(parents=True)
    (root / "config" / "data").mkdir(parents=True)
    (root / "config" / "task").mkdir(parents=True)
    sample_ids = [str(s) for s in mdata.obs_names]
    (raw / f"{DATA_NAME}.ids.txt").write_text("\n".join(sample_ids) + "\n", encoding="utf-8")
    summary, categorical, continuous = {}, [], []
    for mod, adata in mdata.mod.items():
        x = np.asarray(adata.X)
        kind = adata.uns.get("kind", "")
        is_drug = mod == "drug"
        if is_drug:
            fmt = [str(int(round(v))) for v in x.ravel()]
        else:
            fmt = [f"{v:.6g}" for v in x.ravel()]
        n_vars = x.shape[1]
        rows = {
            str(s): "\t".join(fmt[i * n_vars : (i + 1) * n_vars])
            for i, s in enumerate(adata.obs_names)
        }
        name = f"{DATA_NAME}.{mod}"
        _write_tsv(raw / f"{name}.tsv", sample_ids, [str(v) for v in adata.var_names], rows)
        if is_drug:
            categorical.append(name)
        else:
            continuous.append((name, mod == "rna"))
        summary[mod] = {
            "our_kind": str(kind),
            "move_input": "categorical" if is_drug else "continuous",
            "log2": mod == "rna",
            "n_vars": int(n_vars),
            "n_obs_measured": int(x.shape[0]),
            "n_obs_nan_rows": len(sample_ids) - int(x.shape[0]),
        }
    lines = [
        "defaults:",
        "  - base_data",
        "",
        "raw_data_path: data/",
        "interim_data_path: interim_data/",
        "results_path: results/",
        "",
        f"sample_names: {DATA_NAME}.ids",
        "",
        "categorical_inputs:",
        *[f"  - name: {n}" for n in categorical],
        "",
        "continuous_inputs:",
        *[f"  - name: {n}\n    log2: {str(log2).lower()}" for n, log2 in continuous],
        "",
    ]
    (root / "config" / "data" / f"{DATA_NAME}.yaml").write_text("\n".join(lines))
    return summary


def write_move_task(root: Path, *, refits: int, epochs: int, target_dataset: str) -> None:
    """MOVE's tutorial Bayes task (random_small__id_assoc_bayes.yaml) for our data."""
    t = MOVE_TASK
    text = "\n".join(
        [
            "defaults:",
            "  - identify_associations_bayes",
            "",
            f"batch_size: {t['batch_size']}",
            f"num_refits: {refits}",
            f"target_dataset: {target_dataset}",
            f"target_value: {t['target_value']}",
            f"save_refits: {str(t['save_refits'])}",
            "",
            "model:",
            "  num_hidden:",
            *[f"    - {h}" for h in t["num_hidden"]],
            f"  num_latent: {t['num_latent']}",
            "",
            "training_loop:",
            f"  lr: {t['lr']}",
            f"  num_epochs: {epochs}",
            "",
        ]
    )
    (root / "config" / "task" / f"{TASK_NAME}.yaml").write_text(text)


def refit_seconds_from_log(log_path: Path) -> dict:
    """Per-refit seconds from MOVE's own log (1 s resolution timestamps).

    A refit's interval runs from its "Training refit j/N" line to the next one (the last one to
    "Identifying significant features"), so it holds training plus that refit's reconstructions of
    the baseline and of every perturbed dataset.
    """
    pat = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\].*?(Training refit|Identifying)")
    stamps = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = pat.match(line)
        if m:
            stamps.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp())
    per = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"per_refit_seconds_from_log": per}


def run_move(root: Path, *, move_bin: Path, refits: int, epochs: int) -> dict:
    """encode_data then the Bayes association task, each a timed ``move-dl`` child."""
    encode = run_timed(
        [str(move_bin), f"data={DATA_NAME}", "task=encode_data"],
        cwd=root,
        log_path=root / "encode_data.out",
    )
    _log(f"MOVE encode_data: {encode['wall_seconds']} s")
    write_move_task(root, refits=refits, epochs=epochs, target_dataset=f"{DATA_NAME}.drug")
    assoc = run_timed(
        [str(move_bin), f"data={DATA_NAME}", f"task={TASK_NAME}"],
        cwd=root,
        log_path=root / "identify_associations.out",
    )
    _log(f"MOVE identify_associations ({refits} refits): {assoc['wall_seconds']} s")
    assoc.update(refit_seconds_from_log(root / "logs" / "identify_associations.log"))
    per_refit = assoc["per_refit_seconds_from_log"]
    # start-up (imports, data loading, building the 20 perturbed datasets) and the final
    # statistics are paid once; the rest scales with the number of refits
    fixed_wall = max(assoc["wall_seconds"] - sum(per_refit), 0.0)
    per_refit_wall = sum(per_refit) / len(per_refit) if per_refit else assoc["wall_seconds"]
    # CPU seconds are not in the log: split them like the wall seconds
    per_refit_cpu = assoc["cpu_seconds"] * (sum(per_refit) / assoc["wall_seconds"]) / refits
    fixed_cpu = assoc["cpu_seconds"] - per_refit_cpu * refits
    total_wall = encode["wall_seconds"] + fixed_wall + per_refit_wall * N_REFITS
    total_cpu = encode["cpu_seconds"] + fixed_cpu + per_refit_cpu * N_REFITS
    n_sig = None
    sig = root / "results" / "identify_associations" / "results_sig_assoc_bayes.tsv"
    if sig.exists():
        n_sig = max(len(sig.read_text().splitlines()) - 1, 0)
    return {
        "settings": {**MOVE_TASK, "num_refits": refits, "num_epochs": epochs, "method": "bayes"},
        "encode_data": encode,
        "identify_associations": assoc,
        "refits_run": refits,
        "extrapolated": refits != N_REFITS,
        "extrapolation": (
            None
            if refits == N_REFITS
            else f"trained {refits} refits; total = encode + fixed start-up/statistics + "
            f"{N_REFITS} x mean seconds per refit (linear)"
        ),
        "seconds_per_refit_wall": round(per_refit_wall, 2),
        "seconds_per_refit_cpu": round(per_refit_cpu, 2),
        "fixed_wall_seconds": round(fixed_wall, 2),
        "total_wall_seconds": round(total_wall, 2),
        "total_cpu_seconds": round(total_cpu, 2),
        "n_significant_pairs": n_sig,
    }


def run_ours(tmp: Path, *, batch_size: int, epochs: int) -> dict:
    """``bench/perturb_speed.py --skip speed`` as a timed child; returns its job figures."""
    out = tmp / f"ours_bs{batch_size}.json"
    child = run_timed(
        [
            sys.executable,
            str(REPO / "bench" / "perturb_speed.py"),
            "--skip",
            "speed",
            "--epochs",
            str(epochs),
            "--batch-size",
            str(batch_size),
            "--out",
            str(out),
        ],
        cwd=REPO,
        log_path=tmp / f"ours_bs{batch_size}.out",
    )
    job = json.loads(out.read_text())["job"]
    _log(
        f"ours (batch {batch_size}): job {job['job_wall_seconds']} s, child {child['wall_seconds']} s"
    )
    return {
        "batch_size": batch_size,
        "epochs": epochs,
        "n_refits": job["n_refits"],
        "n_latent": job["n_latent"],
        "child_process": child,
        "job_wall_seconds": job["job_wall_seconds"],
        "job_cpu_seconds": job["job_cpu_seconds"],
        "train_wall_cpu_seconds": job["train_wall_cpu_seconds"],
        "screen_drugs_wall_cpu_seconds": job["screen_drugs_wall_cpu_seconds"],
        "quality_bayes_default": job["quality_bayes_default"],
    }


def _ratios(ours: dict, move: dict) -> dict:
    mw, mc = move["total_wall_seconds"], move["total_cpu_seconds"]
    r = {
        "job_wall_over_move_wall": round(ours["job_wall_seconds"] / mw, 3),
        "job_cpu_over_move_cpu": round(ours["job_cpu_seconds"] / mc, 3),
        "child_wall_over_move_wall": round(ours["child_process"]["wall_seconds"] / mw, 3),
        "child_cpu_over_move_cpu": round(ours["child_process"]["cpu_seconds"] / mc, 3),
    }
    r["under_a_fifth"] = r["job_wall_over_move_wall"] < TARGET_FRACTION
    return r


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--move-venv", default="/work/move-venv", help="virtualenv with move-dl")
    p.add_argument(
        "--move-refits",
        type=int,
        default=N_REFITS,
        help=f"refits MOVE trains (< {N_REFITS}: extrapolate linearly)",
    )
    p.add_argument("--epochs", type=int, default=40, help="epochs per refit, both tools")
    p.add_argument(
        "--our-batch-size",
        type=int,
        nargs="+",
        default=[32],
        help="batch size(s) of our job (32: its default; 10: MOVE's)",
    )
    p.add_argument("--skip-ours", action="store_true", help="run MOVE only (smoke test)")
    p.add_argument("--keep", action="store_true", help="keep MOVE's temp directory")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "move_side_by_side.json"))
    args = p.parse_args(argv)

    from bench.perturb_speed import JOB_PARAMS
    from core import datasets

    move_bin = Path(args.move_venv) / "bin" / "move-dl"
    if not move_bin.exists():
        raise FileNotFoundError(
            f"{move_bin} not found; install move-dl in its own virtualenv "
            f"(python -m venv {args.move_venv} && {args.move_venv}/bin/pip install move-dl)"
        )
    move_version = subprocess.run(
        [
            str(Path(args.move_venv) / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, torch, numpy; "
            "print(m.version('move-dl'), torch.__version__, numpy.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    import torch

    result: dict = {
        "bench": "move_side_by_side",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "ours_env": {"python": platform.python_version(), "torch": torch.__version__},
        "move_env": dict(zip(("move_dl", "torch", "numpy"), move_version, strict=True)),
        "load_avg_start": _load_avg(),
        "data": {"dataset": "synthetic", "params": JOB_PARAMS},
    }
    tmp = Path(tempfile.mkdtemp(prefix="move-side-by-side-"))
    try:
        mdata = datasets.load_builtin("synthetic", **JOB_PARAMS)
        result["data"].update(
            {
                "n_obs": int(mdata.n_obs),
                "n_vars": int(mdata.n_vars),
                "missing": "samples without methylation/protein are NaN rows for MOVE "
                "(its own missing-value handling); both tools use all samples",
                "modalities": export_for_move(mdata, tmp / "move"),
            }
        )
        result["move"] = run_move(
            tmp / "move", move_bin=move_bin, refits=args.move_refits, epochs=args.epochs
        )
        result["ours"] = []
        if not args.skip_ours:
            for bs in args.our_batch_size:
                ours = run_ours(tmp, batch_size=bs, epochs=args.epochs)
                ours["ratio"] = _ratios(ours, result["move"])
                result["ours"].append(ours)
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_end"] = _load_avg()
    result["notes"] = (
        "ratio = our seconds / MOVE's total (encode_data + identify_associations, 10 refits); "
        "job_* is our train + drug screen as timed inside perturb_speed.py, child_* is its whole "
        "process (imports, data generation, and the extra ground-truth screens it also runs). "
        "Models differ: MOVE 1 hidden layer of 1000, 150 latent, batch 10, "
        "one VAE over all datasets; ours is perturb_speed.py's multivae with its CLI defaults."
    )
    from core.runs import write_text_atomic

    write_text_atomic(Path(args.out), json.dumps(result, indent=1, default=float) + "\n")
    print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main()
