"""Training-page helpers: form defaults per model, the RunConfig from the form and its checks
(before anything is launched), the ``python -m core train`` argv, live progress, the runs
table."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import InputError
from dashboard import cache, forms

RECENT_EPOCHS = 50  # the time-left estimate: epochs that give the current pace

MODEL_PREFIX, TRAIN_PREFIX, DATA_PREFIX = "m_", "t_", "d_"  # widget keys: prefix + field name
PHASES = {"target": 0, "sources": 1}  # the frozen_target scheme fits twice per refit
CONDITIONS_LABEL = "conditions (CVAE)"
# core's messages name CLI flags and Python fields; the form names its widgets
TRAIN_HINTS: list[tuple[str, str]] = [
    (r"^(?:[A-Z]\w*(?:Error|Exception|Failed)): ", ""),  # "InputError: ..." -> "..."
    (
        r"at least one --condition COLUMN \(an obs column\)",
        f"at least one condition: choose a metadata column under '{CONDITIONS_LABEL}'",
    ),
    (r"use --model (\w+)", r"pick model '\1'"),
    (r"\(--set (\w+)=([^)\s]+)\)", r"(\1=\2)"),
    (r"add --set (\w+)=(\w+)", r"set \1"),
    (r"--set (\w+)=", r"\1 "),
    (r"--condition\b", "a condition"),
    (r"--data\b", "the dataset"),
    (r"\buse auto\b", "choose device auto"),
]
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


def form_defaults(model: str, n_modalities: int) -> dict[str, Any]:
    """{widget key: default} of every form field of ModelConfig / TrainConfig for ``model`` on
    data with ``n_modalities`` modalities: the dataclass defaults, then core's per-model ones
    (:func:`core.model_config.model_defaults`, :func:`core.runs.train_defaults`), exactly what
    ``python -m core train --model MODEL`` would use."""
    from core.model_config import ModelConfig, model_defaults
    from core.runs import TrainConfig, train_defaults

    out: dict[str, Any] = {}
    for prefix, dc, special in (
        (MODEL_PREFIX, ModelConfig, {"model": model, **model_defaults(model, n_modalities)}),
        (TRAIN_PREFIX, TrainConfig, train_defaults(model)),
    ):
        base = dc()
        for name in forms.form_fields(dc):
            out[prefix + name] = special.get(name, getattr(base, name))
    return out


def build_config(
    *,
    sources: Sequence[str],
    kinds: Mapping[str, str],
    conditions: Sequence[str],
    sections: Mapping[str, Mapping[str, Any]],
):
    """The RunConfig the form describes (its dataclasses validate every value; InputError)."""
    from core.model_config import ModelConfig
    from core.runs import DataConfig, RunConfig, TrainConfig

    try:
        return RunConfig(
            data=DataConfig(
                sources=list(sources),
                kinds=dict(kinds),
                conditions=list(conditions),
                **sections.get("data", {}),
            ),
            model=ModelConfig(**sections.get("model", {})),
            train=TrainConfig(**sections.get("train", {})),
        )
    except TypeError as exc:  # a field the form left empty
        raise InputError(f"a setting is missing ({exc}); fill in every field") from None


def check_config(config, mdata) -> None:
    """The checks training makes before fitting (:func:`core.train.check_config`), on the
    form's RunConfig and the loaded dataset, so that a bad setting is an error on the form
    (in its words: :func:`ui_message`), not a failed run."""
    from core.train import check_config as core_check
    from core.train import resolve_device

    core_check(config, mdata)
    if config.train.device == "cuda":  # the only check that needs torch
        resolve_device("cuda")


def ui_message(text: str) -> str:
    """A core message about a run in the Train form's words: no exception class name, no CLI
    flags, field names as the form labels them (n_latent -> latent dimensions)."""
    text = str(text).strip().splitlines()[0] if str(text).strip() else "training failed"
    for pattern, repl in TRAIN_HINTS:
        text = re.sub(pattern, repl, text)
    for name in sorted(_field_names(), key=len, reverse=True):
        label = forms.LABELS.get(name, name.replace("_", " "))
        pattern = rf"(?<!['\w]){name}(?=\s*=)" if "_" not in name else rf"(?<!['\w]){name}\b"
        text = re.sub(pattern, label, text)  # n_latent -> latent dimensions, lr= -> learning rate=
    return text


def _field_names() -> set[str]:
    from core.model_config import ModelConfig
    from core.runs import DataConfig, TrainConfig

    return {n for dc in (ModelConfig, TrainConfig, DataConfig) for n in forms.form_fields(dc)}


def status_error(status: Mapping) -> str:
    """The error of a failed run for the page (written by the job, in core's words)."""
    error = status.get("error")
    return ui_message(error) if error else "training failed; see train.log in the run folder"


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


def epoch_durations(history: pd.DataFrame) -> np.ndarray:
    """Per-epoch wall seconds from history.csv, over all refits and phases.

    history's ``seconds`` counts from the start of each fit (one per refit and phase), so the
    difference of consecutive rows of a fit is one epoch; the first epoch of a fit (start-up,
    compilation) is left out.
    """
    if "seconds" not in history or len(history) < 2:
        return np.zeros(0)
    keys = [c for c in ("refit", "phase") if c in history]
    fits = history.groupby(keys, sort=False)["seconds"] if keys else history["seconds"]
    seconds = fits.diff().to_numpy(dtype=float)
    return seconds[np.isfinite(seconds) & (seconds >= 0)]


def seconds_left(history: pd.DataFrame, epochs_left: int) -> float | None:
    """Estimated seconds for ``epochs_left`` more epochs: the mean of the last RECENT_EPOCHS
    epoch durations (not the mean since the start, which a slow first epoch or a busier
    machine earlier in the run would skew)."""
    d = epoch_durations(history)
    if not len(d):
        return None
    return float(np.mean(d[-RECENT_EPOCHS:])) * max(epochs_left, 0)


def progress(status: Mapping, history: pd.DataFrame) -> tuple[float, str]:
    """(fraction done in [0, 1], "epoch 12/50 · refit 1/2 · about 40 s left ...").

    Counts every fit of the job: ``n_refits`` refits, each one fit (or two for the
    frozen_target translator: target, then sources), ``n_epochs`` epochs per fit.
    """
    n_epochs = int(status.get("n_epochs") or 0)
    n_refits = int(status.get("n_refits") or 1)
    epoch = int(status.get("epoch") or 0)
    refit = int(status.get("refit") or 0)
    phase = PHASES.get(str(status.get("phase")))
    n_phases = 2 if phase is not None else 1
    if n_epochs <= 0:
        return 0.0, f"{status.get('state', 'queued')}: preparing the data"
    total = n_epochs * n_refits * n_phases
    done_epochs = (refit * n_phases + (phase or 0)) * n_epochs + epoch
    frac = min(done_epochs / total, 1.0)
    text = f"epoch {epoch}/{n_epochs}"
    if n_phases > 1:
        text += f" of {'the target' if phase == 0 else 'the source encoders'}"
    if n_refits > 1:
        text += f" · refit {refit + 1}/{n_refits}"
    left = seconds_left(history, total - done_epochs) if done_epochs else None
    if left is not None and math.isfinite(left):
        text += f" · about {_duration(left)} left (at most; early stopping may end it sooner)"
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


TABLE_COLUMNS = ("name", "state", "model", "data", "n_latent", "epoch", "val_loss", "knn_latent",
                 "knn_pca", "recon_vs_mean", "seconds", "error")  # fmt: skip


def runs_table(runs: pd.DataFrame, upload_dir: Path) -> pd.DataFrame:
    """``runs`` (with headline_metrics) as the Train page shows it: the dataset's name in the
    data column (not the server path of an upload), errors in the form's words, whole numbers
    as integers. (Draw it with ``st.dataframe(..., placeholder="")``: a missing value reads
    "None" otherwise.)"""
    from dashboard.sidebar import source_dataset

    out = runs[[c for c in TABLE_COLUMNS if c in runs]].copy()
    if "data" in out:
        out["data"] = [source_dataset(d, upload_dir) if d else None for d in out["data"].fillna("")]
    if "error" in out:
        out["error"] = [ui_message(e) if isinstance(e, str) and e else None for e in out["error"]]
    for c in ("n_latent", "epoch"):
        if c in out:
            out[c] = pd.to_numeric(out[c], errors="coerce").round().astype("Int64")
    return out
