"""Streamlit caches around core (the only place the dashboard caches anything).

- ``st.cache_resource``: shared heavy objects (datasets as MuData, loaded runs). Every browser
  session sees the same object, so callers must never mutate them.
- ``st.cache_data``: derived arrays (latent, reconstructions, embeddings), keyed by the run's
  path + a version stamp (file mtimes) + parameters. Embedding coordinates are also cached on
  disk by ``core.embed.cached`` under ``<run>/embeddings/``, so a restart shows them at once.

Heavy modules (core.latent -> torch, core.embed -> umap/openTSNE) are imported inside functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

KINDS_FILE = "kinds.json"  # per-modality kind overrides of an uploaded dataset
RUN_STAMP_FILES = ("config.json", "status.json", "metrics.json", "features.json")


# ---------------------------------------------------------------- datasets
def builtin_datasets() -> list[str]:
    """Built-in dataset names, the default first."""
    from core import datasets

    names = list(datasets.REGISTRY)
    default = getattr(datasets, "DEFAULT_DATASET", names[0] if names else None)
    return [default] + [n for n in names if n != default] if default in names else names


def uploaded_datasets(upload_dir: Path) -> list[str]:
    """Names of uploaded datasets: non-empty sub-directories of the upload directory."""
    if not upload_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in upload_dir.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and any(f.is_file() and f.name != KINDS_FILE for f in p.iterdir())
    )


def upload_sources(folder: Path) -> tuple[list[str], str | None, dict[str, str]]:
    """(sources, obs, kinds) for ``core.data.load`` from an upload folder.

    A folder with one .h5mu/.h5ad file loads that file; otherwise the folder itself (one table
    per modality named <modality>.<ext>, plus obs.csv / metadata.csv).
    """
    kinds_path = folder / KINDS_FILE
    kinds = json.loads(kinds_path.read_text()) if kinds_path.is_file() else {}
    h5 = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".h5mu", ".h5ad"))
    if len(h5) == 1:
        return [str(h5[0])], None, kinds
    return [str(folder)], None, kinds


def dataset_version(name: str, upload_dir: Path) -> float:
    """A stamp that changes when an uploaded dataset's files change (0 for built-ins)."""
    folder = upload_dir / name
    if not folder.is_dir():
        return 0.0
    return max((p.stat().st_mtime for p in folder.iterdir()), default=0.0)


@st.cache_resource(show_spinner="Loading dataset...", max_entries=6)
def load_dataset(name: str, *, upload_dir: str, version: float, max_file_bytes: int):
    """A built-in or uploaded dataset as MuData (shared object: never mutate it)."""
    from core import data

    del version  # part of the cache key only
    if name in builtin_datasets():
        return data.load([name], max_file_bytes=max_file_bytes)
    folder = Path(upload_dir) / name
    sources, obs, kinds = upload_sources(folder)
    return data.load(sources, obs=obs, kinds=kinds or None, max_file_bytes=max_file_bytes)


@st.cache_data(show_spinner=False, max_entries=20)
def dataset_summary(_mdata, key: tuple) -> pd.DataFrame:
    from core import data

    return data.summarize(_mdata)


@st.cache_data(show_spinner=False, max_entries=20)
def modality_matrix(_mdata, key: tuple, mod: str) -> np.ndarray:
    """(n_obs, n_vars) aligned to obs_names, NaN rows for absent samples."""
    from core import data

    return data.modality_matrix(_mdata, mod)


# ---------------------------------------------------------------- runs
def run_version(path: Path) -> float:
    """Stamp that changes when a run is (re)written: newest mtime of its small JSON files."""
    stamps = [(path / f).stat().st_mtime for f in RUN_STAMP_FILES if (path / f).is_file()]
    return max(stamps, default=0.0)


def list_runs(runs_dir: Path) -> pd.DataFrame:
    """All runs with status (not cached: it must see new runs and status changes)."""
    from core import runs

    if not runs_dir.is_dir():
        return pd.DataFrame(columns=["name", "path", "state"])
    return runs.list_runs(runs_dir)


@st.cache_resource(show_spinner="Loading run...", max_entries=8)
def load_run(path: str, version: float):
    """A finished run (shared object: never mutate it)."""
    from core import runs

    del version
    return runs.load_run(Path(path))


@st.cache_resource(show_spinner="Loading the run's dataset...", max_entries=4)
def run_data(path: str, version: float):
    """The dataset the run was trained on (rebuilt from its config), shared MuData."""
    return load_run(path, version).load_data()


@st.cache_data(show_spinner="Encoding samples...", max_entries=8)
def run_view(path: str, version: float):
    """core.latent.RunView of the run's own dataset (obs, var_names, latent of refit 0); from
    the run's disk cache when data and weights are unchanged, so a restart needs neither the
    data nor torch to draw a cached map."""
    from core import latent as core_latent

    return core_latent.run_view(load_run(path, version), load_data=lambda: run_data(path, version))


def latent(path: str, version: float) -> np.ndarray:
    """Posterior means of refit 0, (n_obs, n_latent), aligned to the run dataset's obs_names."""
    return run_view(path, version).latent


@st.cache_data(show_spinner="Reconstructing...", max_entries=8)
def reconstruction(path: str, version: float, refit: int = 0) -> dict[str, np.ndarray]:
    """Reconstructions in data units per modality, (n_obs, n_vars), NaN rows when absent."""
    from core import latent as core_latent

    run = load_run(path, version)
    return core_latent.reconstruct(run, run_data(path, version), refit=refit)


@st.cache_data(show_spinner=False, max_entries=8)
def run_matrices(path: str, version: float) -> dict[str, np.ndarray]:
    """True values per modality of the run's dataset, (n_obs, n_vars), restricted to the run's
    features (in the run's order)."""
    from core import data

    run = load_run(path, version)
    mdata = run_data(path, version)
    out = {}
    for mod in run.modalities:
        full = data.modality_matrix(mdata, mod)
        names = list(mdata.mod[mod].var_names)
        pos = {v: i for i, v in enumerate(names)}
        cols = [pos[v] for v in run.var_names[mod] if v in pos]
        out[mod] = full[:, cols]
    return out


def _scale(x: np.ndarray, log1p: bool) -> np.ndarray:
    return np.log1p(np.clip(x, 0, None)) if log1p else x


@st.cache_data(show_spinner="Scoring reconstructions...", max_entries=16)
def feature_scores(path: str, version: float, mod: str, log1p: bool = False) -> pd.DataFrame:
    """core.metrics.feature_scores of one modality (optionally on log1p values)."""
    from core import metrics

    run = load_run(path, version)
    true = _scale(run_matrices(path, version)[mod], log1p)
    recon = _scale(reconstruction(path, version)[mod], log1p)
    return metrics.feature_scores(true, recon, var_names=run.var_names[mod])


@st.cache_data(show_spinner=False, max_entries=16)
def sample_correlation(path: str, version: float, mod: str, log1p: bool = False) -> np.ndarray:
    """Per-sample Pearson correlation between true and reconstructed profiles, (n_obs,)."""
    from core import metrics

    true = _scale(run_matrices(path, version)[mod], log1p)
    return metrics.sample_correlation(true, _scale(reconstruction(path, version)[mod], log1p))


@st.cache_data(show_spinner="Translating between modalities...", max_entries=4)
def translation_scores(path: str, version: float) -> pd.DataFrame:
    """(n_mod, n_mod) median per-feature R^2 of translating source -> target (NaN diagonal;
    counts scored on log1p values)."""
    from core import latent as core_latent
    from core import metrics

    run = load_run(path, version)
    mdata = run_data(path, version)
    truth = run_matrices(path, version)
    mods = list(run.modalities)
    table = pd.DataFrame(np.nan, index=mods, columns=mods)
    for src in mods:
        for tgt in mods:
            if src == tgt:
                continue
            pred = core_latent.translate(run, mdata, source=src, target=tgt)
            log = run.kinds[tgt] == "counts"
            scores = metrics.feature_scores(_scale(truth[tgt], log), _scale(pred, log))
            table.loc[src, tgt] = metrics.score_summary(scores)["median_r2"]
    return table


# ---------------------------------------------------------------- embeddings
def embedding_key(method: str, dims: int, seed: int, params: dict) -> tuple:
    return (method, int(dims), int(seed), tuple(sorted(params.items())))


@st.cache_data(show_spinner=False, max_entries=16)
def embedding(
    path: str,
    version: float,
    method: str,
    dims: int,
    seed: int,
    params: tuple,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(coords (n_obs, dims), notes) of the run's latent; disk-cached under <run>/embeddings/."""
    from core import embed

    z = latent(path, version)
    emb = embed.cached(Path(path), z, method=method, n_components=dims, seed=seed, **dict(params))
    return np.asarray(emb.coords, dtype=np.float32), tuple(emb.notes)


def embedding_cached_on_disk(
    path: str, version: float, method: str, dims: int, seed: int, params: tuple
) -> bool:
    """True when core.embed's disk cache already holds this map (loading it is instant)."""
    from core import embed

    key = embed.cache_key(
        latent(path, version), method=method, n_components=dims, seed=seed, **dict(params)
    )
    return (Path(path) / embed.EMBEDDINGS_DIR / f"{key}.npz").is_file()


@st.cache_data(show_spinner="Computing reconstruction errors...", max_entries=8)
def sample_errors(path: str, version: float) -> pd.DataFrame:
    """Per-sample reconstruction error, (n_obs, n_modalities [+ "all"]), index = sample ids.

    ``core.metrics.sample_error`` per modality (NaN where a sample lacks it); "all" is the mean
    over the modalities a sample has.
    """
    from core import metrics

    run = load_run(path, version)
    truth, recon = run_matrices(path, version), reconstruction(path, version)
    cols = {}
    for mod in run.modalities:
        if mod in recon and np.shape(recon[mod]) == truth[mod].shape:
            cols[mod] = metrics.sample_error(truth[mod], recon[mod], kind=run.kinds[mod])
    frame = pd.DataFrame(cols, index=run_data(path, version).obs_names)
    if len(cols) > 1:
        frame["all"] = frame.mean(axis=1, skipna=True)
    return frame
