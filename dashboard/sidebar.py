"""The global sidebar: dataset and run pickers (bound to the URL, kept across pages)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import cache, state
from dashboard.settings import get_settings

STATE_ICONS = {"done": "✓", "running": "⟳", "queued": "…", "failed": "✗", "cancelled": "⊘"}


def dataset_options() -> list[str]:
    s = get_settings()
    builtins = cache.builtin_datasets()
    return builtins + [n for n in cache.uploaded_datasets(s.upload_dir) if n not in builtins]


def source_dataset(sources: str, upload_dir: Path) -> str:
    """The dataset name behind a run's data sources (list_runs' comma-joined ``data`` column):
    a built-in name as is; a path inside the upload directory -> that upload's name; another
    path -> its file or folder stem."""
    first = str(sources).split(",")[0].strip()
    first = first.split("=", 1)[1] if "=" in first else first
    if "/" not in first and "\\" not in first:
        return first
    path = Path(first).expanduser().resolve()
    try:
        return path.relative_to(upload_dir.resolve()).parts[0]
    except (ValueError, IndexError):
        return path.stem


def runs_for_dataset(runs: pd.DataFrame, dataset: str | None, upload_dir: Path) -> pd.DataFrame:
    """Rows of ``runs`` trained on ``dataset``."""
    if runs.empty or dataset is None or "data" not in runs:
        return runs
    data = runs["data"].fillna("").astype(str)
    names = data.map(lambda s: source_dataset(s, upload_dir))
    return runs[(names == dataset) | (data == "")]  # "": just queued, config not written yet


def preferred_run(runs: pd.DataFrame) -> str | None:
    """The newest finished run, else the newest run."""
    if runs.empty:
        return None
    done = runs[runs["state"].astype(str) == "done"] if "state" in runs else runs
    pick = done if not done.empty else runs
    return str(pick["name"].iloc[0])


def render() -> None:
    settings = get_settings()
    sb = st.sidebar
    options = dataset_options()
    state.choose(state.DATASET, options)
    sb.selectbox(
        "Dataset",
        options,
        index=None,
        help="Built-in datasets and your uploads (Data page).",
        **state.bound(state.DATASET),
    )
    runs = runs_for_dataset(
        cache.list_runs(settings.runs_dir), state.dataset(), settings.upload_dir
    )
    names = [str(n) for n in runs["name"]] if not runs.empty else []
    state.choose(state.RUN, names, preferred=preferred_run(runs))
    sb.selectbox(
        "Run",
        names,
        index=None,
        placeholder="no run for this dataset yet",
        help="Trained models for this dataset, newest first.",
        **state.bound(state.RUN),
    )
    if state.run():
        row = runs[runs["name"].astype(str) == state.run()].iloc[0]
        run_state = str(row.get("state", ""))
        bits = [f"{STATE_ICONS.get(run_state, '?')} {run_state}"]
        bits += [
            f"{k.replace('_', ' ')}: {row[k]}"
            for k in ("model", "n_latent", "epoch")
            if k in row and pd.notna(row[k])
        ]
        sb.caption(" · ".join(bits))
    sb.caption(f"Runs in `{_short(settings.runs_dir)}`")


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
