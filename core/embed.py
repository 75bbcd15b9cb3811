"""2D/3D maps of a latent space: PCA, UMAP (umap-learn) and t-SNE (openTSNE).

One verb, :func:`compute`, returns an :class:`Embedding`: the map's coordinates plus everything
needed to place new points (generated or perturbed samples) on the same map with
:meth:`Embedding.transform`, stored as plain arrays so that it also works after a reload from disk
(no pickle, ever). :func:`cached` adds a disk cache under ``<run>/embeddings/`` so a restart shows
a map at once; :func:`list_cached` lists what is there. :func:`stratified_subsample` picks the
samples to draw when there are too many.

Same inputs, same seed -> the same coordinates (bit for bit on the same machine and library
versions); that is what makes the cache key meaningful.

Costs measured with ``bench/embed_speed.py`` (``bench/results/embed_speed.json``) on the shared
2-core CPU this project targets, while it was ~4x oversubscribed (load average ~8.5), as wall
seconds (CPU seconds of the process in brackets, closer to what an idle machine shows):
PCA of 20,000 points 0.05 s; 3D UMAP 14 s for 5,000 [5] and 29 s for 20,000 [9] once warm, but
the first UMAP of >= 4,096 points in a fresh process spends ~35 CPU s more on numba JIT
(pynndescent); 2D t-SNE (FFT) 86 s for 5,000 [27] and 210 s for 20,000 [57]; 3D t-SNE of 20,000
with the default cap (Barnes-Hut fit of 5,000, 15,000 placed) 147 s [43]. openTSNE has no 3D FFT
and Barnes-Hut took about 330 s for 20,000 points (issue 4), hence the cap: by default a 3D
t-SNE is fitted on at most ``TSNE_3D_MAX_FIT`` points and the rest are placed with
:meth:`Embedding.transform` (``notes`` and a UserWarning say so; never silently). Loading a
cached 20,000-point map takes ~0.02 s.

Heavy libraries (umap, numba, openTSNE, sklearn) are imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from core.errors import InputError
from core.runs import write_atomic

Method = Literal["pca", "umap", "tsne"]
METHODS: tuple[str, ...] = get_args(Method)
UmapMetric = Literal["euclidean", "cosine", "manhattan", "correlation"]
TsneMetric = Literal["euclidean", "cosine", "manhattan"]
Progress = Callable[[float, str], None]

#: 3D t-SNE (Barnes-Hut) is fitted on at most this many points by default; the rest are placed
#: by k-nearest-neighbour interpolation (see :meth:`Embedding.transform`). ~60-80 s on 2 cores.
TSNE_3D_MAX_FIT = 5_000
#: Neighbours used by :meth:`Embedding.transform` for UMAP and t-SNE maps.
TRANSFORM_K = 10
#: Bumped when the stored format or an algorithm default changes; part of every cache key.
CACHE_VERSION = 1
EMBEDDINGS_DIR = "embeddings"

#: Main parameters per method with their defaults (what a widget should offer). ``max_fit``:
#: fit on at most this many points (a seeded uniform subsample) and place the rest by transform;
#: 0 fits all points; None is the method's default (0, except 3D t-SNE: ``TSNE_3D_MAX_FIT``).
DEFAULTS: dict[str, dict[str, Any]] = {
    "pca": {"whiten": False},
    "umap": {
        "n_neighbors": 15,
        "min_dist": 0.1,
        "metric": "euclidean",
        "n_epochs": None,
        "max_fit": None,
    },
    "tsne": {
        "perplexity": 30.0,
        "n_iter": 500,
        "early_exaggeration_iter": 250,
        "early_exaggeration": 12.0,
        "metric": "euclidean",
        "max_fit": None,  # None -> TSNE_3D_MAX_FIT in 3D, 0 (all points) in 2D
    },
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "umap.metric": get_args(UmapMetric),
    "tsne.metric": get_args(TsneMetric),
}


def default_params(method: Method, *, n_components: Literal[2, 3] = 3) -> dict[str, Any]:
    """Resolved default parameters of ``method`` (a copy), as stored in an :class:`Embedding`."""
    return _resolve_params(method, n_components, n_obs=None, params={})


@dataclass(frozen=True, eq=False)
class Embedding:
    """A fitted 2D/3D map of a latent space.

    Attributes:
        coords: float32 array (n_obs, n_components), the map.
        method: "pca", "umap" or "tsne".
        n_components: 2 or 3.
        seed: the seed used.
        params: resolved parameters (defaults filled in, clipped values as used).
        reference: float32 array (n_ref, n_latent), the latent points the map was fitted on
            (all of ``latent``, or the ``max_fit`` subsample); used by :meth:`transform`.
        reference_coords: float32 array (n_ref, n_components), their coordinates.
        state: method-specific arrays (PCA: ``mean`` (n_latent,), ``components``
            (n_components, n_latent), ``scale`` (n_components,)).
        fit_indices: int64 array (n_ref,), rows of ``latent`` the map was fitted on.
        notes: one-line remarks the user should see (subsampling, clipped parameters).
        seconds: wall time of the computation.
        from_cache: True when :func:`cached` loaded it from disk instead of computing it.
        key: the cache key (empty unless it went through :func:`cached`).
    """

    coords: np.ndarray
    method: str
    n_components: int
    seed: int
    params: dict[str, Any]
    reference: np.ndarray
    reference_coords: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)
    fit_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    from_cache: bool = False
    key: str = ""
    _index: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Cached embeddings are shared (st.cache_resource); make the arrays read-only.
        for arr in (self.coords, self.reference, self.reference_coords, self.fit_indices,
                    *self.state.values()):  # fmt: skip
            arr.setflags(write=False)

    @property
    def n_obs(self) -> int:
        return int(self.coords.shape[0])

    @property
    def axis_names(self) -> list[str]:
        """Column names for the coordinates, e.g. ``["UMAP1", "UMAP2", "UMAP3"]``."""
        prefix = {"pca": "PC", "umap": "UMAP", "tsne": "tSNE"}[self.method]
        return [f"{prefix}{i + 1}" for i in range(self.n_components)]

    def to_frame(self, index: Sequence[str] | pd.Index | None = None) -> pd.DataFrame:
        """Coordinates as a DataFrame (n_obs, n_components), index = sample ids if given."""
        return pd.DataFrame(self.coords, columns=self.axis_names, index=index)

    def transform(self, new_latent: np.ndarray) -> np.ndarray:
        """Place new latent points on this map without refitting.

        PCA: the exact linear projection. UMAP / t-SNE: inverse-squared-distance weighted mean of
        the coordinates of the ``TRANSFORM_K`` nearest reference points in latent space
        (Euclidean). A new point equal to a reference point lands on it; a point between two
        clusters lands between them. This uses only stored arrays, so it gives the same answer
        before and after a reload from disk. It is an interpolation: points far outside the
        reference cloud land inside it, at the position of their nearest references.

        Args:
            new_latent: array (n_new, n_latent) in the same latent space as the reference.

        Returns:
            float32 array (n_new, n_components).
        """
        z = _as_latent(new_latent, name="new latent")
        if z.shape[1] != self.reference.shape[1]:
            raise InputError(
                f"new latent has {z.shape[1]} dimensions but this {self.method} map was fitted on "
                f"{self.reference.shape[1]}; encode the new samples with the same run"
            )
        if z.shape[0] == 0:
            return np.zeros((0, self.n_components), dtype=np.float32)
        if self.method == "pca":
            return _pca_project(z, self.state)
        if self._index is None:  # built once per object, never stored on disk
            object.__setattr__(self, "_index", _knn_index(self.reference, k=TRANSFORM_K))
        return _knn_place(self._index, self.reference_coords, z)


# ----------------------------------------------------------------------------------------------
# compute


def compute(
    latent: np.ndarray,
    *,
    method: Method,
    n_components: Literal[2, 3] = 3,
    seed: int = 0,
    progress: Progress | None = None,
    **params: Any,
) -> Embedding:
    """Compute a 2D or 3D map of ``latent``.

    Args:
        latent: array (n_obs, n_latent), e.g. posterior means from ``core.latent.encode``.
            No NaN / inf; at least 3 rows.
        method: "pca" (numpy SVD, components' signs fixed so the largest loading is positive),
            "umap" (umap-learn with ``random_state=seed``, hence single-threaded: the price of
            a reproducible, cacheable map; on the shared 2-core machine the unseeded parallel
            mode was not faster: 27 vs 14 s for 5,000 points, 33 vs 29 s for 20,000) or
            "tsne" (openTSNE; FFT gradients in 2D, Barnes-Hut in 3D because openTSNE has no 3D FFT).
        n_components: 2 or 3.
        seed: seeds every random step (UMAP init and SGD, t-SNE neighbours, subsampling).
        progress: optional ``progress(fraction, message)`` with fraction in [0, 1]; called at
            each stage and, for UMAP epochs and t-SNE iterations, during the optimisation.
        **params: method parameters (see ``DEFAULTS``):
            pca: ``whiten`` (bool, scale each component to unit variance).
            umap: ``n_neighbors`` (int, clipped to n_obs - 1), ``min_dist`` (float),
            ``metric`` ("euclidean", "cosine", "manhattan", "correlation"), ``n_epochs``
            (None -> umap's default: 500 below 10,000 points, else 200), ``max_fit``.
            tsne: ``perplexity`` (clipped to (n_obs - 1) / 3), ``n_iter`` (iterations after
            early exaggeration), ``early_exaggeration_iter``, ``early_exaggeration``,
            ``metric`` ("euclidean", "cosine", "manhattan"), ``max_fit`` (default: all points
            in 2D, ``TSNE_3D_MAX_FIT`` in 3D; pass a larger int or 0 (all) to fit more, knowing
            Barnes-Hut 3D takes minutes per 10,000 points).
            ``max_fit``: fit on a seeded uniform subsample of this many rows and place the other
            rows with :meth:`Embedding.transform` (a note and a UserWarning say so); 0 = all
            rows; None = the method's default. Resolved ``params`` always hold an int.

    Returns:
        :class:`Embedding` with ``coords`` of shape (n_obs, n_components).

    Raises:
        InputError: bad shapes, NaN, unknown method or parameter.
    """
    started = time.perf_counter()
    x = _as_latent(latent, name="latent")
    _check_method(method, n_components, seed)
    n_obs = x.shape[0]
    if n_obs < 3:
        raise InputError(f"a {method} map needs at least 3 samples, got {n_obs}; use more samples")
    resolved = _resolve_params(method, int(n_components), n_obs=None, params=params)
    report = _Reporter(progress)
    notes: list[str] = []

    fit_idx = np.arange(n_obs, dtype=np.int64)
    max_fit = resolved.get("max_fit", 0)
    if max_fit and n_obs > max_fit:
        fit_idx = stratified_subsample(None, max_n=max_fit, seed=seed, n_obs=n_obs)
        notes.append(
            f"{_label(method, n_components)} fitted on {max_fit:,} of {n_obs:,} points (seeded "
            f"subsample); the other {n_obs - max_fit:,} were placed by nearest-neighbour "
            f"interpolation. Raise max_fit to fit all (slower)."
        )
        warnings.warn(notes[-1], stacklevel=2)
        report(0.0, notes[-1])
    x_fit = x[fit_idx]
    fit_params = _resolve_params(method, int(n_components), n_obs=len(fit_idx), params=params)
    for name in ("n_neighbors", "perplexity"):
        if name in fit_params and fit_params[name] != resolved[name]:
            notes.append(
                f"{name} lowered from {resolved[name]:g} to {fit_params[name]:.4g} for "
                f"{len(fit_idx)} points"
            )

    # A sub-progress for the fit: when some points are placed afterwards, keep 2% for that.
    fit_report = report.scaled(0.0, 0.98 if len(fit_idx) < n_obs else 1.0)
    state: dict[str, np.ndarray] = {}
    if method == "pca":
        fit_report(0.0, "PCA: singular value decomposition")
        ref_coords, state = _fit_pca(x_fit, int(n_components), whiten=bool(fit_params["whiten"]))
        if x.shape[1] < n_components:
            notes.append(f"the latent has {x.shape[1]} dimensions; PCA axes beyond that are zero")
    elif method == "umap":
        ref_coords = _fit_umap(x_fit, int(n_components), seed, fit_params, fit_report)
    else:
        ref_coords = _fit_tsne(x_fit, int(n_components), seed, fit_params, fit_report)
    ref_coords = np.ascontiguousarray(ref_coords, dtype=np.float32)
    reference = np.ascontiguousarray(x_fit, dtype=np.float32)

    if len(fit_idx) < n_obs:
        report(0.98, f"placing the other {n_obs - len(fit_idx):,} points")
        coords = np.empty((n_obs, int(n_components)), dtype=np.float32)
        rest = np.setdiff1d(np.arange(n_obs), fit_idx, assume_unique=True)
        coords[fit_idx] = ref_coords
        if method == "pca":
            coords[rest] = _pca_project(x[rest].astype(np.float32), state)
        else:
            index = _knn_index(reference, k=TRANSFORM_K)
            coords[rest] = _knn_place(index, ref_coords, x[rest].astype(np.float32))
    else:
        coords = ref_coords
    seconds = time.perf_counter() - started
    report(1.0, f"{_label(method, n_components)} of {n_obs:,} points done in {seconds:.1f} s")
    return Embedding(
        coords=coords,
        method=method,
        n_components=int(n_components),
        seed=int(seed),
        params=fit_params,
        reference=reference,
        reference_coords=ref_coords,
        state=state,
        fit_indices=fit_idx,
        notes=tuple(notes),
        seconds=seconds,
    )


def _label(method: str, n_components: int) -> str:
    return f"{n_components}D {dict(pca='PCA', umap='UMAP', tsne='t-SNE')[method]}"


def _check_method(method: Any, n_components: Any, seed: Any) -> None:
    if method not in METHODS:
        raise InputError(f"unknown embedding method {method!r}; choose one of {', '.join(METHODS)}")
    if n_components not in (2, 3) or isinstance(n_components, bool):
        raise InputError(f"n_components must be 2 or 3, got {n_components!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")


def _as_latent(latent: Any, *, name: str) -> np.ndarray:
    """Validate and return a float64 array (n, d)."""
    try:
        x = np.asarray(latent, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric array (n_obs, n_latent): {exc}") from None
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"{name} must be a 2D array (n_obs, n_latent), got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name} has {int(bad.any(axis=1).sum())} rows with NaN/inf (first: row {row}, "
            f"column {col}); drop or re-encode those samples before embedding"
        )
    return x


def _resolve_params(
    method: str, n_components: int, *, n_obs: int | None, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults + user values, validated; with ``n_obs`` also clipped to what n_obs allows."""
    if method not in DEFAULTS:
        raise InputError(f"unknown embedding method {method!r}; choose one of {', '.join(METHODS)}")
    allowed = DEFAULTS[method]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InputError(
            f"unknown {method} parameter(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    out = dict(allowed)
    out.update({k: v for k, v in params.items()})
    for key, choices in _CHOICES.items():
        m, name = key.split(".")
        if m == method and out[name] not in choices:
            raise InputError(
                f"{method} {name} must be one of {', '.join(choices)}, got {out[name]!r}"
            )
    try:
        if method == "pca":
            out["whiten"] = bool(out["whiten"])
        elif method == "umap":
            out["n_neighbors"] = int(out["n_neighbors"])
            out["min_dist"] = float(out["min_dist"])
            if out["n_epochs"] is not None:
                out["n_epochs"] = int(out["n_epochs"])
            if out["n_neighbors"] < 2 or not 0.0 <= out["min_dist"] <= 1.0:
                raise ValueError("n_neighbors >= 2 and 0 <= min_dist <= 1 required")
            if out["n_epochs"] is not None and out["n_epochs"] < 1:
                raise ValueError("n_epochs must be >= 1")
        else:
            out["perplexity"] = float(out["perplexity"])
            out["n_iter"] = int(out["n_iter"])
            out["early_exaggeration_iter"] = int(out["early_exaggeration_iter"])
            out["early_exaggeration"] = float(out["early_exaggeration"])
            if out["perplexity"] <= 0 or out["n_iter"] < 1 or out["early_exaggeration_iter"] < 0:
                raise ValueError(
                    "perplexity > 0, n_iter >= 1, early_exaggeration_iter >= 0 required"
                )
        if "max_fit" in out:
            if out["max_fit"] is None:
                out["max_fit"] = TSNE_3D_MAX_FIT if method == "tsne" and n_components == 3 else 0
            out["max_fit"] = int(out["max_fit"])
            if out["max_fit"] != 0 and out["max_fit"] < 3:
                raise ValueError("max_fit must be 0 (all points), >= 3, or None (default)")
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad {method} parameters {dict(params)}: {exc}") from None
    if n_obs is not None:
        if method == "umap":
            out["n_neighbors"] = min(out["n_neighbors"], n_obs - 1)
        elif method == "tsne":
            out["perplexity"] = min(out["perplexity"], (n_obs - 1) / 3.0)
    return out


class _Reporter:
    """Wraps an optional progress callback; ``scaled`` maps [0, 1] onto a sub-range."""

    def __init__(self, callback: Progress | None, lo: float = 0.0, hi: float = 1.0) -> None:
        self.callback, self.lo, self.hi = callback, lo, hi

    def __call__(self, fraction: float, message: str) -> None:
        if self.callback is not None:
            f = self.lo + (self.hi - self.lo) * min(max(float(fraction), 0.0), 1.0)
            self.callback(f, message)

    def scaled(self, lo: float, hi: float) -> _Reporter:
        span = self.hi - self.lo
        return _Reporter(self.callback, self.lo + span * lo, self.lo + span * hi)


# --- PCA --------------------------------------------------------------------------------------


def _fit_pca(x: np.ndarray, k: int, *, whiten: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PCA by SVD; returns coords (n, k) and the state needed for an exact projection."""
    n, d = x.shape
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)  # vt (min(n, d), d)
    # Deterministic signs: the largest-magnitude loading of every component is positive.
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    components = np.zeros((k, d))
    m = min(k, vt.shape[0])
    components[:m] = vt[:m]
    scale = np.ones(k)
    if whiten:
        sd = s[:m] / math.sqrt(max(n - 1, 1))
        scale[:m] = np.where(sd > 1e-12, sd, 1.0)
    state = {
        "mean": mean.astype(np.float64),
        "components": components.astype(np.float64),
        "scale": scale.astype(np.float64),
    }
    return _pca_project(x, state), state


def _pca_project(z: np.ndarray, state: Mapping[str, np.ndarray]) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    out = (z - state["mean"]) @ state["components"].T / state["scale"]
    return out.astype(np.float32)


# --- kNN placement (UMAP / t-SNE transform) ----------------------------------------------------


def _knn_index(reference: np.ndarray, *, k: int) -> Any:
    """An exact Euclidean k-nearest-neighbour index over the reference latent (n_ref, n_latent)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, reference.shape[0])
    return NearestNeighbors(n_neighbors=k, algorithm="auto").fit(reference.astype(np.float64))


def _knn_place(index: Any, ref_coords: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Weighted mean of the coords of the k nearest reference points, weights 1 / distance^2.

    Returns float32 (n_new, n_components).
    """
    dist, idx = index.kneighbors(np.asarray(z, dtype=np.float64))  # (n_new, k) each
    # A tiny floor relative to the data scale: an exact match gets (almost) all the weight.
    scale = float(np.median(dist[:, -1]) ** 2) if dist.size else 1.0
    eps = 1e-12 * (scale if scale > 0 else 1.0)
    w = 1.0 / (dist.astype(np.float64) ** 2 + eps)
    w /= w.sum(axis=1, keepdims=True)
    out = np.einsum("nk,nkc->nc", w, ref_coords[idx].astype(np.float64))
    return out.astype(np.float32)


# --- UMAP -------------------------------------------------------------------------------------


class _TqdmToProgress:
    """A file-like sink for umap-learn's tqdm bar (bar_format "{n}/{total}") -> progress."""

    _pattern = re.compile(r"(\d+)/(\d+)")

    def __init__(self, report: _Reporter) -> None:
        self.report = report
        self.last = -1

    def write(self, text: str) -> int:
        found = self._pattern.findall(text)
        if found:
            n, total = (int(v) for v in found[-1])
            if total > 0 and n != self.last:
                self.last = n
                self.report(n / total, f"UMAP: optimising layout, epoch {n}/{total}")
        return len(text)

    def flush(self) -> None:
        pass


def _fit_umap(
    x: np.ndarray, k: int, seed: int, params: Mapping[str, Any], report: _Reporter
) -> np.ndarray:
    report(0.0, "UMAP: starting (the first call after an install compiles numba code, ~1 min)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba/umap chatter, "n_jobs overridden by random_state"
        import umap

        report(0.05, "UMAP: nearest-neighbour graph and spectral initialisation")
        sink = _TqdmToProgress(report.scaled(0.4, 1.0))
        # umap's spectral initialisation needs more points than dimensions + 1.
        init = "spectral" if x.shape[0] > k + 2 else "random"
        model = umap.UMAP(
            init=init,
            n_components=k,
            n_neighbors=params["n_neighbors"],
            min_dist=params["min_dist"],
            metric=params["metric"],
            n_epochs=params["n_epochs"],
            random_state=seed,  # reproducible; makes umap-learn single-threaded
            verbose=False,
            tqdm_kwds={
                "disable": False,
                "file": sink,
                "bar_format": "{n}/{total}",
                "mininterval": 0.5,
            },
        )
        coords = model.fit_transform(x)
    return np.asarray(coords)


# --- t-SNE ------------------------------------------------------------------------------------


def _fit_tsne(
    x: np.ndarray, k: int, seed: int, params: Mapping[str, Any], report: _Reporter
) -> np.ndarray:
    from openTSNE import TSNE

    n_early, n_main = params["early_exaggeration_iter"], params["n_iter"]
    total = n_early + n_main
    every = max(5, min(50, total // 20))  # each callback also evaluates the KL error
    done = {"iters": 0}
    opt_report = report.scaled(0.15, 1.0)
    gradient = "fft" if k == 2 else "bh"

    def on_iterations(iteration: int, error: float, embedding: Any) -> bool:
        done["iters"] += every
        opt_report(
            done["iters"] / total,
            f"t-SNE ({gradient.upper()}): iteration {min(done['iters'], total)}/{total}, "
            f"KL {error:.3f}",
        )
        return False  # never stop early

    report(0.0, "t-SNE: nearest neighbours and affinities")
    tsne = TSNE(
        n_components=k,
        perplexity=params["perplexity"],
        n_iter=n_main,
        early_exaggeration_iter=n_early,
        early_exaggeration=params["early_exaggeration"],
        metric=params["metric"],
        negative_gradient_method=gradient,
        initialization="pca",
        n_jobs=1,
        random_state=seed,
        callbacks=[on_iterations],
        callbacks_every_iters=every,
        verbose=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embedding = tsne.prepare_initial(x)
        report(0.15, "t-SNE: early exaggeration")
        # The two phases of openTSNE's TSNE.fit, run here so progress can name them.
        if n_early > 0:
            embedding.optimize(
                n_iter=n_early,
                exaggeration=tsne.early_exaggeration,
                momentum=tsne.initial_momentum,
                inplace=True,
                propagate_exception=True,
            )
        done["iters"] = n_early
        embedding.optimize(
            n_iter=n_main,
            exaggeration=tsne.exaggeration,
            momentum=tsne.final_momentum,
            inplace=True,
            propagate_exception=True,
        )
    return np.asarray(embedding)


# ----------------------------------------------------------------------------------------------
# subsampling


def stratified_subsample(
    labels: Sequence[Any] | np.ndarray | pd.Series | None,
    *,
    max_n: int,
    seed: int = 0,
    n_obs: int | None = None,
) -> np.ndarray:
    """Pick at most ``max_n`` sample indices, proportionally per label.

    Args:
        labels: one label per sample (n_obs,), any hashable values; NaN / None values form
            their own group. ``None``: no labels, a uniform draw out of ``n_obs`` samples.
        max_n: largest number of indices to return (>= 1).
        seed: seeds the draw.
        n_obs: number of samples; required when ``labels`` is None, else must match.

    Returns:
        Sorted int64 indices (min(n_obs, max_n),). Every label present keeps at least one sample;
        the rest is split in proportion to the label sizes (largest remainders). All indices when
        n_obs <= max_n.

    Raises:
        InputError: max_n < 1, labels None without n_obs, or more distinct labels than max_n
            (raise max_n or stratify by a column with fewer values).
    """
    if labels is None:
        if n_obs is None or isinstance(n_obs, bool) or int(n_obs) < 0:
            raise InputError("stratified_subsample without labels needs n_obs (number of samples)")
        return _subsample_codes(np.zeros(int(n_obs), dtype=np.int64), 1, max_n=max_n, seed=seed)
    values = pd.Series(np.asarray(labels, dtype=object).ravel())
    if n_obs is not None and len(values) != n_obs:
        raise InputError(f"stratified_subsample got {len(values)} labels for n_obs={n_obs} samples")
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return _subsample_codes(np.asarray(codes, dtype=np.int64), len(uniques), max_n=max_n, seed=seed)


def _subsample_codes(codes: np.ndarray, n_groups: int, *, max_n: int, seed: int) -> np.ndarray:
    if isinstance(max_n, bool) or not isinstance(max_n, int | np.integer) or max_n < 1:
        raise InputError(f"max_n must be a positive integer, got {max_n!r}")
    n = len(codes)
    if n <= max_n:
        return np.arange(n, dtype=np.int64)
    counts = np.bincount(codes, minlength=n_groups)
    present = counts > 0
    if present.sum() > max_n:
        raise InputError(
            f"cannot keep every label: {int(present.sum())} distinct labels but max_n is {max_n}; "
            f"raise max_n or stratify by a column with fewer values"
        )
    quota = counts * (max_n / n)
    take = np.floor(quota).astype(np.int64)
    take[present] = np.maximum(take[present], 1)
    # Largest remainders fill up to max_n (ties: larger group, then label order).
    while take.sum() < max_n:
        room = take < counts
        rem = np.where(room, quota - take, -np.inf)
        take[int(np.lexsort((-counts, -rem))[0])] += 1
    while take.sum() > max_n:  # only when the minimum of 1 per label overshot
        over = np.where(take > 1, take - quota, -np.inf)
        take[int(np.argmax(over))] -= 1
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    chosen = [
        rng.choice(order[starts[g] : starts[g + 1]], size=int(take[g]), replace=False)
        for g in range(n_groups)
        if take[g] > 0
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# disk cache


def latent_sha1(latent: np.ndarray) -> str:
    """sha1 over dtype, shape and bytes of ``latent`` (C order)."""
    a = np.ascontiguousarray(latent)
    h = hashlib.sha1(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def cache_key(
    latent: np.ndarray, *, method: Method, n_components: Literal[2, 3], seed: int, **params: Any
) -> str:
    """The cache file stem: ``<method><k>d-s<seed>-<sha1[:16]>``, the hash over the resolved,
    sorted parameters, the seed, the cache version and the sha1 of the latent bytes."""
    _check_method(method, n_components, seed)
    resolved = _resolve_params(method, int(n_components), n_obs=None, params=params)
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "method": method,
            "n_components": int(n_components),
            "seed": int(seed),
            "params": resolved,
            "latent": latent_sha1(latent),
        },
        sort_keys=True,
    )
    return (
        f"{method}{int(n_components)}d-s{int(seed)}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"
    )


def cached(
    run_path: str | Path,
    latent: np.ndarray,
    *,
    method: Method,
    n_components: Literal[2, 3] = 3,
    seed: int = 0,
    progress: Progress | None = None,
    **params: Any,
) -> Embedding:
    """:func:`compute`, cached on disk under ``<run_path>/embeddings/<key>.npz`` (+ ``.json``).

    The key (:func:`cache_key`) covers method, n_components, resolved parameters, seed and the
    sha1 of the latent's bytes, so a different latent (another refit, a subsample) never reuses a
    stale map. Files are written atomically; they are read with ``allow_pickle=False``. A missing,
    corrupt or mismatching file is recomputed (and rewritten), not an error. On a hit
    ``progress(1.0, "loaded ...")`` is called once and the result has ``from_cache=True``.

    Args:
        run_path: the run directory (must exist).
        latent: array (n_obs, n_latent).

    Returns:
        :class:`Embedding` with ``coords`` (n_obs, n_components) and ``key`` set.
    """
    run_path = Path(run_path)
    if not run_path.is_dir():
        raise InputError(f"run directory {run_path} does not exist; train a run or pick another")
    x = _as_latent(latent, name="latent")
    key = cache_key(latent, method=method, n_components=n_components, seed=seed, **params)
    folder = run_path / EMBEDDINGS_DIR
    loaded = find_cached(
        run_path, latent, method=method, n_components=n_components, seed=seed, **params
    )
    if loaded is not None:
        if progress is not None:
            progress(1.0, f"loaded cached {_label(method, int(n_components))} ({key})")
        return loaded
    emb = compute(
        x, method=method, n_components=n_components, seed=seed, progress=progress, **params
    )
    emb = _replace(emb, key=key)
    _save(folder, key, emb, latent_hash=latent_sha1(latent), n_latent=x.shape[1])
    return emb


def find_cached(
    run_path: str | Path,
    latent: np.ndarray,
    *,
    method: Method,
    n_components: Literal[2, 3] = 3,
    seed: int = 0,
    **params: Any,
) -> Embedding | None:
    """The cached map :func:`cached` would return, or None if it is not on disk (never computes).

    Lets a page show a cached UMAP at once and otherwise start with PCA while UMAP computes.
    """
    x = _as_latent(latent, name="latent")
    key = cache_key(latent, method=method, n_components=n_components, seed=seed, **params)
    path = Path(run_path) / EMBEDDINGS_DIR / f"{key}.npz"
    loaded = _load(path, key) if path.is_file() else None
    return loaded if loaded is not None and loaded.n_obs == x.shape[0] else None


def load_cached(path: str | Path) -> Embedding:
    """Load one cached ``.npz`` written by :func:`cached`; a damaged file is an InputError."""
    path = Path(path)
    emb = _load(path, path.stem)
    if emb is None:
        raise InputError(f"{path} is not a readable embedding cache file; delete it and recompute")
    return emb


def list_cached(run_path: str | Path) -> pd.DataFrame:
    """One row per cached embedding of a run, newest first.

    Columns: key, method, n_components, seed, n_obs, n_latent, params (JSON string), seconds,
    created (UTC ISO time), latent_sha1, notes, path (of the .npz), bytes.
    Unreadable sidecar files are skipped.
    """
    columns = [
        "key", "method", "n_components", "seed", "n_obs", "n_latent", "params", "seconds",
        "created", "latent_sha1", "notes", "path", "bytes",
    ]  # fmt: skip
    rows = []
    folder = Path(run_path) / EMBEDDINGS_DIR
    for meta_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        npz_path = meta_path.with_suffix(".npz")
        try:
            meta = json.loads(meta_path.read_text())
            if not npz_path.is_file():
                continue
            rows.append(
                {
                    "key": meta_path.stem,
                    "method": meta["method"],
                    "n_components": int(meta["n_components"]),
                    "seed": int(meta["seed"]),
                    "n_obs": int(meta["n_obs"]),
                    "n_latent": int(meta["n_latent"]),
                    "params": json.dumps(meta["params"], sort_keys=True),
                    "seconds": float(meta["seconds"]),
                    "created": meta.get("created", ""),
                    "latent_sha1": meta.get("latent_sha1", ""),
                    "notes": " ".join(meta.get("notes", [])),
                    "path": str(npz_path),
                    "bytes": npz_path.stat().st_size,
                }
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values("created", ascending=False, kind="stable").reset_index(drop=True)


def _replace(emb: Embedding, **changes: Any) -> Embedding:
    from dataclasses import replace

    return replace(emb, **changes)


def _meta(emb: Embedding, *, latent_hash: str, n_latent: int) -> dict[str, Any]:
    return {
        "version": CACHE_VERSION,
        "key": emb.key,
        "method": emb.method,
        "n_components": emb.n_components,
        "seed": emb.seed,
        "params": emb.params,
        "n_obs": emb.n_obs,
        "n_latent": int(n_latent),
        "n_fit": int(emb.reference.shape[0]),
        "latent_sha1": latent_hash,
        "seconds": round(float(emb.seconds), 3),
        "notes": list(emb.notes),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "state_keys": sorted(emb.state),
    }


def _save(folder: Path, key: str, emb: Embedding, *, latent_hash: str, n_latent: int) -> None:
    meta = _meta(emb, latent_hash=latent_hash, n_latent=n_latent)
    arrays = {
        "coords": emb.coords,
        "reference": emb.reference,
        "reference_coords": emb.reference_coords,
        "fit_indices": emb.fit_indices.astype(np.int64),
        "meta": np.array(json.dumps(meta)),  # unicode scalar: no pickle needed
        **{f"state_{k}": v for k, v in emb.state.items()},
    }
    try:
        write_atomic(folder / f"{key}.npz", lambda fh: np.savez(fh, **arrays), mode="wb")
        write_atomic(
            folder / f"{key}.json",
            lambda fh: fh.write(json.dumps(meta, indent=2, sort_keys=True) + "\n"),
            mode="w",
        )
    except OSError as exc:  # read-only run folder, disk full: the map is still usable
        warnings.warn(f"could not cache the embedding in {folder}: {exc}", stacklevel=3)


def _load(path: Path, key: str) -> Embedding | None:
    """Read a cache file; None when it is missing, corrupt or does not match ``key``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
                return None
            state = {
                k[len("state_") :]: np.array(data[k]) for k in data.files if k.startswith("state_")
            }
            coords = np.array(data["coords"], dtype=np.float32)
            reference = np.array(data["reference"], dtype=np.float32)
            reference_coords = np.array(data["reference_coords"], dtype=np.float32)
            fit_indices = np.array(data["fit_indices"], dtype=np.int64)
        k = int(meta["n_components"])
        ok = (
            coords.ndim == 2
            and coords.shape == (int(meta["n_obs"]), k)
            and reference.shape[0] == reference_coords.shape[0] == fit_indices.shape[0]
            and reference_coords.shape[1] == k
            and np.isfinite(coords).all()
            and sorted(state) == sorted(meta.get("state_keys", []))
        )
        if not ok:
            return None
        return Embedding(
            coords=coords,
            method=meta["method"],
            n_components=k,
            seed=int(meta["seed"]),
            params=dict(meta["params"]),
            reference=reference,
            reference_coords=reference_coords,
            state=state,
            fit_indices=fit_indices,
            notes=tuple(meta.get("notes", [])),
            seconds=float(meta["seconds"]),
            from_cache=True,
            key=key,
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None


# ----------------------------------------------------------------------------------------------
# CLI


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``["n_neighbors=30", "metric=cosine", "n_epochs=null"]`` -> typed dict (JSON values
    where they parse: numbers, true/false, null; otherwise the string)."""
    from core.cli import parse_assignments

    out: dict[str, Any] = {}
    for key, text in parse_assignments(items, flag="--param").items():
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def embed_command(args: Any) -> tuple[str, dict]:
    """``python -m core embed RUN_DIR --method --dims --seed [--param K=V ...] [--out coords.csv]``.

    Encodes the run's own dataset (posterior means, cached in the run by
    :func:`core.latent.run_view`, as the dashboard does), computes or loads the cached map and
    optionally writes the coordinates to CSV (first column ``sample``). Progress goes to stderr.
    """
    import sys

    from core.latent import run_view
    from core.runs import load_run

    out = Path(args.out) if getattr(args, "out", None) else None
    if out is not None and not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist; create it first")
    run = load_run(args.run_dir)
    view = run_view(run)
    last = {"pct": -1}

    def to_stderr(fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if pct != last["pct"] or fraction >= 1.0:
            last["pct"] = pct
            print(f"[{pct:3d}%] {message}", file=sys.stderr, flush=True)

    emb = cached(
        run.path,
        view.latent,
        method=args.method,
        n_components=args.dims,
        seed=args.seed,
        progress=to_stderr,
        **parse_params(getattr(args, "param", None)),
    )
    if out is not None:
        frame = emb.to_frame(index=pd.Index(list(map(str, view.obs.index)), name="sample"))
        write_atomic(out, lambda fh: frame.to_csv(fh), mode="w")
    where = "loaded from cache" if emb.from_cache else f"computed in {emb.seconds:.1f} s"
    text = (
        f"{_label(emb.method, emb.n_components)} of {emb.n_obs} samples of run {run.name}: {where}"
    )
    if out is not None:
        text += f"; coordinates written to {out}"
    for note in emb.notes:
        text += f"\nnote: {note}"
    payload = {
        "run": str(run.path),
        "method": emb.method,
        "n_components": emb.n_components,
        "seed": emb.seed,
        "params": emb.params,
        "n_obs": emb.n_obs,
        "seconds": round(emb.seconds, 3),
        "from_cache": emb.from_cache,
        "key": emb.key,
        "cache_file": str(run.path / EMBEDDINGS_DIR / f"{emb.key}.npz"),
        "out": str(out) if out is not None else None,
        "notes": list(emb.notes),
    }
    return text, payload
