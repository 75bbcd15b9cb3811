"""Reconstruction quality: per-feature scores, per-sample correlation and error.

Plain numpy / pandas. Inputs are aligned matrices of shape (n_obs, n_vars) in data units; rows
that are NaN (a sample without this modality) are ignored. Nothing here mutates its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from core.errors import InputError

Kind = Literal["counts", "proportion", "continuous", "categorical"]
SCORE_COLUMNS = (
    "feature",
    "r2",
    "pearson",
    "mean_true",
    "mean_recon",
    "var_true",
    "var_recon",
    "n_obs",
)


def _pair(true: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float copies with rows kept only where both are fully observed, (n_ok, n_vars) each."""
    true = np.asarray(true, dtype=float)
    recon = np.asarray(recon, dtype=float)
    if true.ndim != 2 or true.shape != recon.shape:
        raise InputError(
            f"true and reconstructed matrices must have the same (n_obs, n_vars) shape, got "
            f"{true.shape} and {recon.shape}; reconstruct with the run's own dataset"
        )
    ok = np.isfinite(true).all(axis=1) & np.isfinite(recon).all(axis=1)
    return true[ok], recon[ok]


def feature_scores(
    true: np.ndarray, recon: np.ndarray, *, var_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-feature reconstruction scores.

    true, recon: (n_obs, n_vars). Returns a DataFrame with one row per feature and columns
    ``feature, r2, pearson, mean_true, mean_recon, var_true, var_recon, n_obs``. R^2 is
    1 - SS_res / SS_tot over the observed samples (can be negative); both R^2 and Pearson are NaN
    for a feature that is constant in the data (Pearson also when constant in the reconstruction).
    """
    t, r = _pair(true, recon)
    n_vars = np.asarray(true).shape[1]
    names = [str(v) for v in (var_names if var_names is not None else range(n_vars))]
    if len(names) != n_vars:
        raise InputError(f"got {len(names)} feature names for {n_vars} features")
    with np.errstate(invalid="ignore", divide="ignore"):
        mt, mr = t.mean(axis=0), r.mean(axis=0)
        ct, cr = t - mt, r - mr
        ss_tot = (ct**2).sum(axis=0)
        ss_res = ((t - r) ** 2).sum(axis=0)
        ss_rec = (cr**2).sum(axis=0)
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
        denom = np.sqrt(ss_tot * ss_rec)
        pearson = np.where(denom > 0, (ct * cr).sum(axis=0) / denom, np.nan)
        var_t = ss_tot / max(len(t) - 1, 1)
        var_r = ss_rec / max(len(t) - 1, 1)
    if len(t) == 0:
        mt = mr = var_t = var_r = r2 = pearson = np.full(n_vars, np.nan)
    return pd.DataFrame(
        {
            "feature": names,
            "r2": r2,
            "pearson": np.clip(pearson, -1.0, 1.0),
            "mean_true": mt,
            "mean_recon": mr,
            "var_true": var_t,
            "var_recon": var_r,
            "n_obs": np.full(n_vars, len(t), dtype=int),
        }
    )


def sample_correlation(true: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Pearson correlation across features for each sample, shape (n_obs,).

    NaN for samples without the modality (NaN rows) or with a constant profile.
    """
    t = np.asarray(true, dtype=float)
    r = np.asarray(recon, dtype=float)
    if t.shape != r.shape or t.ndim != 2:
        raise InputError(f"true and reconstructed shapes differ: {t.shape} vs {r.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        ct = t - t.mean(axis=1, keepdims=True)
        cr = r - r.mean(axis=1, keepdims=True)
        denom = np.sqrt((ct**2).sum(axis=1) * (cr**2).sum(axis=1))
        out = np.where(denom > 0, (ct * cr).sum(axis=1) / denom, np.nan)
    return np.clip(out, -1.0, 1.0)


def sample_error(true: np.ndarray, recon: np.ndarray, *, kind: Kind = "continuous") -> np.ndarray:
    """Per-sample reconstruction error, shape (n_obs,): mean squared error over features after
    putting every feature on a common scale (log1p for counts, then divided by the feature's
    standard deviation in the data), so one high-variance feature cannot dominate.
    NaN for samples without the modality.
    """
    t = np.asarray(true, dtype=float)
    r = np.asarray(recon, dtype=float)
    if t.shape != r.shape or t.ndim != 2:
        raise InputError(f"true and reconstructed shapes differ: {t.shape} vs {r.shape}")
    if kind == "counts":
        t, r = np.log1p(np.clip(t, 0, None)), np.log1p(np.clip(r, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.nanstd(t, axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    return np.mean(((t - r) / sd) ** 2, axis=1)


def score_summary(scores: pd.DataFrame) -> dict[str, float]:
    """Headline numbers of a :func:`feature_scores` table: median R^2 / Pearson, share R^2 > 0.5."""
    r2 = scores["r2"].to_numpy(dtype=float)
    ok = np.isfinite(r2)
    return {
        "median_r2": float(np.median(r2[ok])) if ok.any() else float("nan"),
        "median_pearson": float(np.nanmedian(scores["pearson"]))
        if scores["pearson"].notna().any()
        else float("nan"),
        "frac_r2_above_0.5": float((r2[ok] > 0.5).mean()) if ok.any() else float("nan"),
        "n_features": int(len(scores)),
    }
