"""Training-page helpers: the ``python -m core train`` argv from form values, live progress."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dashboard import cache, forms

FLAG_FIELDS = {("model", "model"): "--model", ("model", "n_latent"): "--latent",
               ("train", "epochs"): "--epochs", ("train", "beta"): "--beta",
               ("train", "refits"): "--refits", ("train", "seed"): "--seed"}  # fmt: skip


def dataset_sources(dataset: str, upload_dir: Path) -> tuple[list[str], dict[str, str]]:
    """(--data sources, kinds) for a built-in name or an uploaded dataset's folder."""
    folder = upload_dir / dataset
    if dataset in cache.builtin_datasets() or not folder.is_dir():
        return [dataset], {}
    sources, _, kinds = cache.upload_sources(folder)
    return sources, kinds


def train_argv(
    *,
    out: Path,
    sources: Sequence[str],
    kinds: Mapping[str, str],
    conditions: Sequence[str],
    sections: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Arguments for ``core.train.launch_job``: flags for the common options, ``--set`` for the
    rest of the form (every field explicit, so the run does not depend on CLI defaults)."""
    argv = ["train", "--out", str(out)]
    for src in sources:
        argv += ["--data", str(src)]
    for mod, kind in kinds.items():
        argv += ["--kind", f"{mod}={kind}"]
    for col in conditions:
        argv += ["--condition", str(col)]
    for section, values in sections.items():
        rest = {}
        for name, value in values.items():
            flag = FLAG_FIELDS.get((section, name))
            if flag:
                argv += [flag, str(value)]
            else:
                rest[name] = value
        argv += forms.set_args(section, rest)
    return argv


def default_run_name(dataset: str, model: str, runs_dir: Path) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "-", f"{dataset}-{model}-{time.strftime('%m%d-%H%M%S')}")
    name, i = base, 2
    while (runs_dir / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


def read_status(path: Path) -> dict:
    try:
        return json.loads((path / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def read_history(path: Path) -> pd.DataFrame:
    p = path / "history.csv"
    try:
        return pd.read_csv(p) if p.is_file() and p.stat().st_size else pd.DataFrame()
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return pd.DataFrame()  # being replaced right now: the next poll reads it


def loss_terms(history: pd.DataFrame) -> list[str]:
    """Loss terms with a train_ column, "total" first: e.g. ["total", "kl", "recon_rna"]."""
    terms = [c[len("train_") :] for c in history.columns if c.startswith("train_")]
    return sorted(terms, key=lambda t: (t != "total", t != "kl", t))


def progress(status: Mapping, history: pd.DataFrame) -> tuple[float, str]:
    """(fraction done in [0, 1], "epoch 12/50 · refit 1/1 · about 40 s left")."""
    n_epochs = int(status.get("n_epochs") or 0)
    n_refits = int(status.get("n_refits") or 1)
    epoch = int(status.get("epoch") or 0)
    refit = int(status.get("refit") or 0)
    if n_epochs <= 0:
        return 0.0, f"{status.get('state', 'queued')}: preparing the data"
    total = n_epochs * n_refits
    done_epochs = refit * n_epochs + epoch
    frac = min(done_epochs / total, 1.0)
    text = f"epoch {epoch}/{n_epochs}" + (
        f" · refit {refit + 1}/{n_refits}" if n_refits > 1 else ""
    )
    if "seconds" in history and len(history) and done_epochs:
        rows = history[history["refit"] == refit] if "refit" in history else history
        per_epoch = float(rows["seconds"].iloc[-1]) / max(len(rows), 1) if len(rows) else math.nan
        if math.isfinite(per_epoch):
            text += f" · about {_duration(per_epoch * (total - done_epochs))} left (at most; "
            text += "early stopping may end it sooner)"
    return frac, text


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def headline_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (from list_runs) plus headline numbers read from each run's metrics.json:
    kNN label accuracy in the latent space (and of a PCA baseline) and the mean reconstruction
    MSE relative to a predict-the-mean baseline (lower is better; 1 = no better than the mean)."""
    knn, knn_pca, ratio = [], [], []
    for path in runs.get("path", pd.Series(dtype=str)):
        try:
            metrics = json.loads((Path(path) / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        k = metrics.get("knn") or {}
        knn.append(k.get("latent"))
        knn_pca.append(k.get("pca"))
        ratios = [
            r.get("ratio")
            for r in (metrics.get("recon") or {}).values()
            if isinstance(r, dict) and r.get("ratio") is not None
        ]
        ratio.append(sum(ratios) / len(ratios) if ratios else None)
    out = runs.copy()
    out["knn_latent"], out["knn_pca"], out["recon_vs_mean"] = knn, knn_pca, ratio
    return out
