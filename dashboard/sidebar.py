"""The global sidebar: dataset and run pickers (bound to the URL, kept across pages)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import cache, state
from dashboard.settings import get_settings

STATE_ICONS = {"done": "✓", "running": "⟳", "queued": "…", "failed": "✗", "cancelled": "⊘"}
LIVE_STATES = ("queued", "running")
LIVE_SECONDS = 2.0  # how often the caption of a training run is refreshed


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
    if name := state.run():
        row = runs[runs["name"].astype(str) == name].iloc[0]
        with sb:
            run_caption(row.to_dict(), settings.runs_dir / name)
    sb.caption(f"Runs in `{_short(settings.runs_dir)}`")


def caption_text(row: Mapping, status: Mapping | None = None) -> str:
    """The run's caption, e.g. "✓ done · model: vae · n latent: 10 · epoch: 42", from a
    list_runs row; ``status`` (a fresher status.json) overrides the row's state and epoch.
    Whole numbers print as such (a column with a missing value is float in pandas: 32.0)."""
    status = status or {}
    run_state = str(status.get("state") or row.get("state") or "")
    bits = [f"{STATE_ICONS.get(run_state, '?')} {run_state}"]
    values = {"model": row.get("model"), "n_latent": row.get("n_latent"), "epoch": row.get("epoch")}
    if status.get("epoch") is not None:
        values["epoch"] = status["epoch"]
    for key, value in values.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = f"{key.replace('_', ' ')}: {value}"
        if key == "epoch" and run_state in LIVE_STATES and status.get("n_epochs"):
            text += f"/{int(status['n_epochs'])}"
        bits.append(text)
    return " · ".join(bits)


def run_caption(row: Mapping, path: Path) -> None:
    """The chosen run's caption; while it trains it is re-read from status.json every 2 s (the
    sidebar is not redrawn by the Train page's live panel, so it would show a stale epoch)."""
    from dashboard import training

    if str(row.get("state")) not in LIVE_STATES:
        st.caption(caption_text(row))
        return

    @st.fragment(run_every=LIVE_SECONDS)
    def live() -> None:
        st.caption(caption_text(row, training.read_status(path)))

    live()


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
