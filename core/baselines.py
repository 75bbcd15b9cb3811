"""Baselines for cross-modal translation (e.g. RNA -> protein) and their metric.

- :func:`mean_baseline`: predict every sample as the per-feature training mean of the target.
- :class:`SVDMLP` (built by :func:`fit_svd_mlp`): truncated SVD of the source modality
  (``n_components`` = 64 by default), standardised, then a multi-output MLP regressor to the
  target, as in the baselines of the open single-cell multimodal prediction benchmarks
  (NeurIPS 2021/2022 "predict modality" tasks).
- :func:`pearson_per_sample` / :func:`per_sample_pearson`: the benchmarks' metric, the Pearson
  correlation between the true and predicted feature vectors of each sample, per sample /
  averaged over samples.
- :func:`translation_baselines`: both baselines fitted on a training split and scored on a test
  split, the reference a translator's score is compared with.

Inputs are matrices of shape (n_obs, n_vars), rows aligned between source and target: the
source preprocessed (e.g. log1p-CP10k RNA, the encoder input of ``core.preprocess``), the target
in the space the comparison is made in (data units or the preprocessed target). Compare a
translator and the baselines in the same target space and on the same held-out samples:
per-sample Pearson is invariant to a per-sample affine map, not to a per-feature one.
Plain numpy + scikit-learn, seeded; nothing is pickled and inputs are not mutated.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError

DEFAULT_COMPONENTS = 64
MIN_SAMPLES = 5


def _matrix(a, what: str, *, finite: bool = True) -> np.ndarray:
    """``a`` as a float64 2-D array (n_obs, n_vars); InputError naming ``what`` otherwise."""
    arr = np.asarray(a.toarray() if hasattr(a, "toarray") else a, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(
            f"{what}: expected a 2-D matrix (samples x features), got shape {arr.shape}"
        )
    if finite and not np.isfinite(arr).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(
            f"{what}: row {row}, column {col} is missing or infinite; keep only the samples "
            "that have both modalities (core.data.present) or impute the value first"
        )
    return arr


# -- metric --------------------------------------------------------------------------------------
def pearson_per_sample(true, pred) -> np.ndarray:
    """Pearson correlation across features for every sample: (n_obs, n_vars) x2 -> (n_obs,).

    A sample whose true or predicted row is constant gets 0 (no linear agreement can be
    measured); a sample with a missing / infinite value in either row gets NaN.
    """
    t = _matrix(true, "true values", finite=False)
    p = _matrix(pred, "predictions", finite=False)
    if t.shape != p.shape:
        raise InputError(
            f"true values have shape {t.shape} but predictions {p.shape}; predict the same "
            "samples and features"
        )
    ok = np.isfinite(t).all(axis=1) & np.isfinite(p).all(axis=1)
    out = np.full(len(t), np.nan)
    tc = t[ok] - t[ok].mean(axis=1, keepdims=True)
    pc = p[ok] - p[ok].mean(axis=1, keepdims=True)
    denom = np.sqrt((tc**2).sum(axis=1) * (pc**2).sum(axis=1))
    num = (tc * pc).sum(axis=1)
    good = denom > 1e-12
    out[ok] = np.clip(np.where(good, num / np.where(good, denom, 1.0), 0.0), -1.0, 1.0)
    return out


def per_sample_pearson(true, pred) -> float:
    """Mean over samples of the per-sample Pearson correlation (see pearson_per_sample).

    true, pred: (n_obs, n_vars). Samples with missing values are skipped; NaN when none is left.
    """
    r = pearson_per_sample(true, pred)
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


# -- baselines -----------------------------------------------------------------------------------
def mean_baseline(target_train, *, n_obs: int) -> np.ndarray:
    """Per-feature training mean repeated for n_obs samples: (n_train, n_vars) -> (n_obs, n_vars).

    Missing (NaN) training values are ignored; a feature never observed is an InputError.
    """
    t = _matrix(target_train, "training target", finite=False)
    if len(t) == 0:
        raise InputError("training target has no samples; the mean baseline needs at least one")
    if n_obs < 0:
        raise InputError(f"n_obs must be >= 0, got {n_obs}")
    seen = np.isfinite(t)
    if not seen.any(axis=0).all():
        col = int(np.nonzero(~seen.any(axis=0))[0][0])
        raise InputError(
            f"training target column {col} has no observed value; drop that feature first"
        )
    mean = np.where(seen, t, 0.0).sum(axis=0) / seen.sum(axis=0)
    return np.repeat(mean[None, :], int(n_obs), axis=0)


@dataclass
class SVDMLP:
    """Fitted SVD-MLP translator. Build it with :func:`fit_svd_mlp`; ``predict(source)``.

    components: (n_components, n_source_vars) SVD directions (rows; the source is not centred,
    as TruncatedSVD on counts); scale_mean / scale_sd: (n_components,) standardisation of the
    SVD scores; mlp: the fitted ``sklearn.neural_network.MLPRegressor`` (inputs n_components,
    outputs n_target_vars); params: the settings it was fitted with.
    """

    components: np.ndarray
    scale_mean: np.ndarray
    scale_sd: np.ndarray
    mlp: object
    n_target_vars: int
    params: dict = field(default_factory=dict)

    @property
    def n_source_vars(self) -> int:
        return int(self.components.shape[1])

    def features(self, source) -> np.ndarray:
        """Standardised SVD scores: (n_obs, n_source_vars) -> (n_obs, n_components)."""
        x = _matrix(source, "source")
        if x.shape[1] != self.n_source_vars:
            raise InputError(
                f"source has {x.shape[1]} features but the baseline was fitted on "
                f"{self.n_source_vars}; use the same preprocessed modality"
            )
        return (x @ self.components.T - self.scale_mean) / self.scale_sd

    def predict(self, source) -> np.ndarray:
        """Predicted target (n_obs, n_target_vars) from the source (n_obs, n_source_vars)."""
        pred = np.asarray(self.mlp.predict(self.features(source)), dtype=np.float64)
        return pred.reshape(len(pred), self.n_target_vars)


def fit_svd_mlp(
    source,
    target,
    *,
    n_components: int = DEFAULT_COMPONENTS,
    hidden_layer_sizes: Sequence[int] = (256,),
    alpha: float = 1e-3,
    max_iter: int = 300,
    seed: int = 0,
) -> SVDMLP:
    """Fit truncated SVD on the source and an MLP from its standardised scores to the target.

    source: (n_obs, n_source_vars), target: (n_obs, n_target_vars), rows aligned, no missing
    values. n_components is clipped to [1, min(n_source_vars, n_obs) - 1] (the SVD needs fewer
    components than both). The MLP (ReLU, Adam, L2 penalty ``alpha``) stops early on a 10%
    validation split when there are at least 50 samples. Deterministic for a given ``seed``.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    x = _matrix(source, "source")
    y = _matrix(target, "target")
    if len(x) != len(y):
        raise InputError(
            f"source has {len(x)} samples but target has {len(y)}; pass rows aligned to the "
            "same samples"
        )
    n_obs, n_vars = x.shape
    if n_obs < MIN_SAMPLES:
        raise InputError(
            f"only {n_obs} paired samples: the SVD-MLP baseline needs at least {MIN_SAMPLES}"
        )
    if y.shape[1] < 1 or n_vars < 1:
        raise InputError("source and target need at least one feature each")
    if int(n_components) < 1:
        raise InputError(f"n_components must be >= 1, got {n_components}")
    hidden = tuple(int(h) for h in hidden_layer_sizes)
    if not hidden or min(hidden) < 1:
        raise InputError(f"hidden_layer_sizes must be positive integers, got {hidden_layer_sizes}")
    k = max(1, min(int(n_components), n_vars - 1, n_obs - 1))
    if n_vars == 1:  # nothing to reduce: a single feature is its own component
        components = np.ones((1, 1))
    else:
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
        components = svd.fit(x).components_.astype(np.float64)
    scores = x @ components.T
    mean = scores.mean(axis=0)
    sd = scores.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden,
        alpha=float(alpha),
        max_iter=int(max_iter),
        early_stopping=n_obs >= 50,
        n_iter_no_change=10,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit((scores - mean) / sd, y if y.shape[1] > 1 else y[:, 0])
    params = {
        "n_components": int(components.shape[0]),
        "hidden_layer_sizes": list(hidden),
        "alpha": float(alpha),
        "max_iter": int(max_iter),
        "seed": int(seed),
    }
    return SVDMLP(components, mean, sd, mlp, int(y.shape[1]), params)


def translation_baselines(
    source_train,
    target_train,
    source_test,
    target_test,
    *,
    n_components: int = DEFAULT_COMPONENTS,
    hidden_layer_sizes: Sequence[int] = (256,),
    seed: int = 0,
) -> dict:
    """Mean per-sample Pearson on the test split of the mean and SVD-MLP baselines.

    Inputs (n_train | n_test, n_vars), see the module docstring for the spaces. Returns
    {"mean": float, "svd_mlp": float, "n_train": int, "n_test": int, "svd_mlp_params": dict};
    a translator should score at least "mean" and match or beat "svd_mlp" on the same split.
    """
    xte = _matrix(source_test, "test source")
    yte = _matrix(target_test, "test target", finite=False)
    if len(xte) != len(yte):
        raise InputError(
            f"test source has {len(xte)} samples but test target has {len(yte)}; pass rows "
            "aligned to the same samples"
        )
    model = fit_svd_mlp(
        source_train,
        target_train,
        n_components=n_components,
        hidden_layer_sizes=hidden_layer_sizes,
        seed=seed,
    )
    return {
        "mean": per_sample_pearson(yte, mean_baseline(target_train, n_obs=len(yte))),
        "svd_mlp": per_sample_pearson(yte, model.predict(xte)),
        "n_train": int(np.shape(target_train)[0]),
        "n_test": int(len(yte)),
        "svd_mlp_params": model.params,
    }


__all__ = [
    "DEFAULT_COMPONENTS",
    "MIN_SAMPLES",
    "SVDMLP",
    "fit_svd_mlp",
    "mean_baseline",
    "pearson_per_sample",
    "per_sample_pearson",
    "translation_baselines",
]
