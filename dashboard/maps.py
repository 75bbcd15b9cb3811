"""Getting a 2D/3D map of a run's latent without blocking the page.

PCA is computed in the script (instant). A UMAP / t-SNE map already in the disk cache is loaded
in the script too. Any other UMAP / t-SNE is handed to :mod:`dashboard.jobs` (a background
thread running ``core.embed.cached``); the page shows the PCA map meanwhile and polls the job.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import cache, jobs, state

SYNC_WAIT_S = 1.0  # a tiny map often finishes within this; then no polling is needed


@dataclass(frozen=True)
class MapResult:
    coords: np.ndarray | None  # (n_obs, dims) or None while pending
    notes: tuple[str, ...] = ()
    job: jobs.Job | None = None  # the background job while pending


def params_for(method: str, *, n_neighbors: int, min_dist: float, perplexity: float) -> tuple:
    """The main parameters the page exposes, as a hashable cache-key tuple."""
    if method == "umap":
        return (("min_dist", float(min_dist)), ("n_neighbors", int(n_neighbors)))
    if method == "tsne":
        return (("perplexity", float(perplexity)),)
    return ()


def get_map(
    path: str, version: float, *, method: str, dims: int, seed: int, params: tuple
) -> MapResult:
    if method == "pca" or cache.embedding_cached_on_disk(path, version, method, dims, seed, params):
        coords, notes = cache.embedding(path, version, method, dims, seed, params)
        return MapResult(coords, notes)
    z = cache.latent(path, version)  # computed here (cached), so the thread never touches torch

    def work(job: jobs.Job) -> None:
        from core import embed

        embed.cached(
            Path(path),
            z,
            method=method,
            n_components=dims,
            seed=seed,
            progress=job.update,
            **dict(params),
        )

    label = f"{dims}D {'UMAP' if method == 'umap' else 't-SNE'}"
    key = f"{path}|{version}|{method}|{dims}|{seed}|{params}"
    job = jobs.registry().submit(key, label, work)
    try:
        job.future.result(timeout=SYNC_WAIT_S)
    except FutureTimeout:
        return MapResult(None, job=job)
    except Exception:  # noqa: BLE001 - shown by the page through job.error
        return MapResult(None, job=job)
    coords, notes = cache.embedding(path, version, method, dims, seed, params)
    return MapResult(coords, notes)


def selected_ids(selection) -> tuple[str, ...]:
    """Sample ids of the points in a plotly selection event (``customdata[0]`` of each point,
    see :func:`dashboard.plots.embedding_scatter`), in first-seen order."""
    points = (selection or {}).get("points", [])
    ids = (p["customdata"][0] for p in points if p.get("customdata"))
    return tuple(dict.fromkeys(str(i) for i in ids))


def keep_selection(run_path: str, chart_key: str) -> None:
    """on_select callback of the map: remember the chosen samples for this run (an empty
    selection clears it)."""
    event = st.session_state.get(chart_key) or {}
    ids = selected_ids(event.get("selection"))
    st.session_state[state.EMB_SELECTION] = (str(run_path), ids) if ids else None
