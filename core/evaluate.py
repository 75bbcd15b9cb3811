"""Quality report: how close are synthetic samples to held-out real data?

Everything here works on plain arrays (samples in rows) plus labels; :func:`evaluate_mudata`
adapts MuData objects (one or several modalities) and :func:`evaluate_command` is the CLI.

Metrics (all seeded):

* **Classifier tables** for one label: TRTR (train real, test real), TRTS (train real, test
  synthetic) and TSTR (train synthetic, test real), with precision, recall and F1 per class and
  macro-averaged. The classifier is the same pipeline for all three: standardise and project on
  50 principal components (both fitted on its own training side) -> L2 logistic regression
  with balanced class weights. A linear model is the
  fair choice here: it cannot memorise individual samples, it is deterministic given the seed,
  and it scores small classes through ``class_weight="balanced"`` so macro-F1 is meaningful.
* **Classifier two-sample test (C2ST)**: a random forest tries to tell real (held-out) from
  synthetic samples on principal components; cross-validated ROC AUC, 0.5 = indistinguishable.
* **MMD**: unbiased squared maximum mean discrepancy with an RBF kernel (median-heuristic
  bandwidth on the pooled sample) and a permutation p-value.
* **Per-feature agreement**: Pearson r and R^2 (synthetic predicting real) of the per-feature
  means and of the per-feature variances.
* **Correlation structure**: relative Frobenius distance between the feature-feature correlation
  matrices (top-variance features), next to the real-vs-real floor (train vs held-out).
* **Memorisation**: the fraction of synthetic samples whose nearest training sample is closer
  than the 5th percentile of training-to-training nearest-neighbour distances, next to the same
  fraction for held-out real samples (about 5% when nothing is copied).

Features are compared on a common scale: counts are library-size normalised (per 10,000) and
log1p-transformed, proportions and continuous values are used as they are, multi-level
categorical codes are one-hot encoded.

**Which real samples?** A conditional generation (tissue=liver, age=60) is compared with the real
samples that match its conditions (:func:`real_match`), not with every sample of the run: the
categorical condition columns named in the provenance (``.uns["generation"]["conditions"]``)
select the real samples whose combination of values occurs among the synthetic samples' obs
(tissue in {liver, lung}); continuous conditions (age) are *not* filtered, since a posterior
draw at age=60 already sits among the real samples of nearby ages and a window would leave
almost no held-out samples. Both the real training side (TRTR / TRTS and memorisation) and the
held-out side use the same rule. Without provenance (a file not written by ``generate``) every
real sample is used.

When the label takes a single level among the synthetic samples (a generation for tissue=liver
evaluated by tissue), the classifier tables cannot be trained: they are skipped with a note
(``QualityReport.notes``; their summary values are NaN, null in JSON) and the rest of the report
is computed as usual.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from core.errors import InputError

if TYPE_CHECKING:
    import mudata

Setting = Literal["TRTR", "TRTS", "TSTR"]
SETTINGS: tuple[Setting, ...] = ("TRTR", "TRTS", "TSTR")

# Verdict thresholds (also the targets): TSTR >= 0.85 x TRTR, C2ST AUC <= 0.75.
TSTR_RATIO_OK = 0.85
C2ST_AUC_OK = 0.75
MEMORISATION_QUANTILE = 0.05
N_CLASSIFIER_PCS = 50
# Fewer held-out samples than this (after matching the conditions): the report says it is noisy.
FEW_HELD_OUT = 20
CLASSIFIER_COLUMNS = ["setting", "class", "precision", "recall", "f1", "support"]


# --------------------------------------------------------------------------- helpers


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2D array (n_samples, n_features), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values; drop incomplete samples first")
    return arr


def _subsample(n: int, max_n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``max_n`` of ``n`` rows (all rows when max_n is None)."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_n, replace=False))


def _standardise(fit_on: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    mean = fit_on.mean(axis=0)
    std = fit_on.std(axis=0)
    std[std == 0] = 1.0
    return [(a - mean) / std for a in (fit_on, *arrays)]


def _pca_basis(x: np.ndarray, *, n_components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centre and principal axes of ``x`` (n, d) -> (mean (d,), components (k, d)).

    Exact SVD for small inputs, seeded randomized SVD (Halko et al.) for large ones.
    """
    from sklearn.utils.extmath import randomized_svd

    mean = x.mean(axis=0)
    k = int(max(1, min(n_components, x.shape[1], x.shape[0] - 1)))
    centred = x - mean
    if min(x.shape) <= 4 * k or min(x.shape) <= 200:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return mean, vt[:k]
    _, _, vt = randomized_svd(centred, k, n_iter=5, random_state=seed)
    return mean, vt


def _project(x: np.ndarray, basis: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    mean, comps = basis
    return (x - mean) @ comps.T


def _levels_text(values: Sequence) -> str:
    """'liver, lung': the distinct values as plain strings (never numpy reprs)."""
    levels = sorted({str(v) for v in values})
    return ", ".join(levels) if levels else "none"


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` as a predictor of ``truth`` (1 = identical)."""
    ss_tot = float(np.sum((truth - truth.mean()) ** 2))
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((truth - pred) ** 2)) / ss_tot


# --------------------------------------------------------------------------- metrics


def classifier_table(
    x_train: np.ndarray,
    y_train: Sequence,
    x_test: np.ndarray,
    y_test: Sequence,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit the label classifier on one side and score it on the other.

    x_train: (n_train, n_features); x_test: (n_test, n_features). Returns one row per class
    present in ``y_test`` plus a ``macro`` row, columns ``class, precision, recall, f1, support``.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train = np.asarray(y_train).astype(str)
    y_test = np.asarray(y_test).astype(str)
    if len(np.unique(y_train)) < 2:
        raise InputError(
            f"the classifier needs at least 2 label levels on its training side, got "
            f"{_levels_text(y_train)}; generate samples for several levels of the label"
        )
    n_pc = min(N_CLASSIFIER_PCS, x_train.shape[1], len(x_train) - 1)
    clf = make_pipeline(
        StandardScaler(),
        PCA(n_components=n_pc, svd_solver="randomized", random_state=seed),
        LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed),
    )
    clf.fit(x_train, y_train)
    pred = clf.predict(x_test)
    labels = sorted(set(y_test))
    p, r, f, s = precision_recall_fscore_support(y_test, pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"class": labels, "precision": p, "recall": r, "f1": f, "support": s})
    macro = pd.DataFrame(
        {
            "class": ["macro"],
            "precision": [float(np.mean(p))],
            "recall": [float(np.mean(r))],
            "f1": [float(np.mean(f))],
            "support": [int(np.sum(s))],
        }
    )
    return pd.concat([macro, table], ignore_index=True)


def c2st_auc(
    x_real: np.ndarray,
    x_syn: np.ndarray,
    *,
    n_components: int = 20,
    n_folds: int = 5,
    max_n: int | None = 2000,
    seed: int = 0,
) -> float:
    """Classifier two-sample test: cross-validated ROC AUC of real vs synthetic.

    x_real: (n_real, d); x_syn: (n_syn, d). Both sides are subsampled to the same size (at most
    ``max_n``), standardised and projected on the first ``n_components`` principal axes of the
    pooled sample (label-free, so no information about which side is which); a random forest
    (60 trees) separates them under stratified k-fold CV.
    0.5 means indistinguishable, 1.0 means perfectly separable. With fewer than ``n_folds``
    samples per side (a small held-out group) it uses one fold per sample pair (at least 2).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    n = min(len(x_real), len(x_syn), max_n or len(x_real) + len(x_syn))
    if n < 2:
        raise InputError(f"the two-sample test needs at least 2 samples per side, got {n}")
    n_folds = min(n_folds, n)
    real = x_real[_subsample(len(x_real), n, rng)]
    syn = x_syn[_subsample(len(x_syn), n, rng)]
    # Standardise and project on the POOLED sample: axes fitted on one side alone carry that
    # side's own noise (n << d) and would make any two samples look separable.
    pooled = _standardise(np.vstack([real, syn]))[0]
    basis = _pca_basis(pooled, n_components=n_components, seed=seed)
    x = _project(pooled, basis)
    y = np.r_[np.zeros(len(real)), np.ones(len(syn))]
    scores = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in folds.split(x, y):
        clf = RandomForestClassifier(
            n_estimators=60, min_samples_leaf=2, random_state=seed, n_jobs=1
        )
        clf.fit(x[train_idx], y[train_idx])
        scores[test_idx] = clf.predict_proba(x[test_idx])[:, 1]
    return float(roc_auc_score(y, scores))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int = 200,
    max_n: int | None = 500,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Unbiased squared MMD with an RBF kernel and a permutation p-value.

    x: (n_x, d); y: (n_y, d). Each side is subsampled to at most ``max_n`` rows. The bandwidth
    is the median pairwise distance of the pooled sample (median heuristic):
    k(a, b) = exp(-|a - b|^2 / (2 sigma^2)). Returns ``(mmd2, p_value, sigma)``; the p-value is
    (1 + #permutations with MMD^2 >= observed) / (1 + n_permutations).
    """
    rng = np.random.default_rng(seed)
    x = x[_subsample(len(x), max_n, rng)]
    y = y[_subsample(len(y), max_n, rng)]
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        raise InputError(f"MMD needs at least 2 samples per side, got {nx} and {ny}")
    pooled = np.vstack([x, y])
    d2 = _sq_dists(pooled, pooled)
    off = d2[np.triu_indices(len(pooled), k=1)]
    med = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    sigma = float(np.sqrt(med / 2.0)) if med > 0 else 1.0
    k = np.exp(-d2 / (2.0 * sigma**2))
    np.fill_diagonal(k, 0.0)

    def stat(ix: np.ndarray, iy: np.ndarray) -> float:
        kxx = k[np.ix_(ix, ix)].sum() / (nx * (nx - 1))
        kyy = k[np.ix_(iy, iy)].sum() / (ny * (ny - 1))
        kxy = k[np.ix_(ix, iy)].mean()
        return float(kxx + kyy - 2.0 * kxy)

    idx = np.arange(nx + ny)
    observed = stat(idx[:nx], idx[nx:])
    count = 0
    for _ in range(n_permutations):
        perm = rng.permutation(nx + ny)
        if stat(perm[:nx], perm[nx:]) >= observed:
            count += 1
    return observed, (1.0 + count) / (1.0 + n_permutations), sigma


def feature_agreement(
    x_real: np.ndarray, x_syn: np.ndarray, *, var_names: Sequence[str] | None = None
) -> tuple[dict[str, float], pd.DataFrame]:
    """Per-feature means and variances, real vs synthetic.

    x_real: (n_real, d); x_syn: (n_syn, d). Returns a summary dict (``mean_r``, ``mean_r2``,
    ``var_r``, ``var_r2``; R^2 is for synthetic predicting real) and a per-feature DataFrame
    with ``feature, real_mean, syn_mean, real_var, syn_var``.
    """
    names = list(var_names) if var_names is not None else [f"f{i}" for i in range(x_real.shape[1])]
    rm, sm = x_real.mean(0), x_syn.mean(0)
    rv, sv = x_real.var(0, ddof=1), x_syn.var(0, ddof=1)
    summary = {
        "mean_r": _pearson(rm, sm),
        "mean_r2": _r2(rm, sm),
        "var_r": _pearson(rv, sv),
        "var_r2": _r2(rv, sv),
    }
    table = pd.DataFrame(
        {"feature": names, "real_mean": rm, "syn_mean": sm, "real_var": rv, "syn_var": sv}
    )
    return summary, table


def correlation_distance(a: np.ndarray, b: np.ndarray, *, top: int = 200) -> float:
    """Relative Frobenius distance between feature-feature correlation matrices.

    a, b: (n_a, d), (n_b, d) on the same features. Uses the ``top`` features with the highest
    variance in ``a``; constant features count as uncorrelated. Returns
    ||C_a - C_b||_F / ||C_a||_F over the off-diagonal entries (0 = same structure).
    """
    order = np.argsort(-a.var(0), kind="stable")[: max(2, top)]

    def corr(m: np.ndarray) -> np.ndarray:
        m = m[:, order]
        std = m.std(0)
        z = (m - m.mean(0)) / np.where(std == 0, 1.0, std)
        c = z.T @ z / len(m)
        c[:, std == 0] = 0.0
        c[std == 0, :] = 0.0
        np.fill_diagonal(c, 0.0)
        return c

    ca, cb = corr(a), corr(b)
    denom = float(np.linalg.norm(ca))
    if denom == 0:
        return float("nan")
    return float(np.linalg.norm(ca - cb) / denom)


def memorisation(
    x_train: np.ndarray,
    x_syn: np.ndarray,
    x_test: np.ndarray | None = None,
    *,
    quantile: float = MEMORISATION_QUANTILE,
    max_n: int | None = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """How many synthetic samples sit suspiciously close to a training sample?

    x_train: (n_train, d); x_syn: (n_syn, d); x_test: optional held-out real (n_test, d).
    Returns:

    - ``threshold``: the ``quantile`` of training-to-training nearest-neighbour distances;
    - ``syn_fraction``: synthetic samples closer than that to some training sample;
    - ``real_fraction``: the same for held-out real samples (about ``quantile`` normally);
    - ``exact_copies``: synthetic samples at distance ~0 from a training sample;
    - ``train_share``: among synthetic samples, the share whose nearest real neighbour is a
      training rather than a held-out sample, with as many training as held-out samples in
      the pool (0.5 = no preference for training data; needs x_test);
    - ``flagged``: 1.0 when more than 1% are exact copies, or when ``syn_fraction`` exceeds
      max(2 x reference, 0.1) AND synthetic samples prefer training samples
      (``train_share`` > 0.6). Samples that are merely less noisy than real data sit close
      to training and held-out samples alike and are not flagged.
    """
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    train = x_train[_subsample(len(x_train), max_n, rng)]
    if len(train) < 3:
        raise InputError(
            f"the memorisation check needs at least 3 training samples, got {len(train)}"
        )
    nn = NearestNeighbors(n_neighbors=2).fit(train)
    d_tt = nn.kneighbors(train, n_neighbors=2)[0][:, 1]
    threshold = float(np.quantile(d_tt, quantile))
    d_st = nn.kneighbors(x_syn, n_neighbors=1)[0][:, 0]
    scale = float(np.median(d_tt)) or 1.0
    out = {
        "threshold": threshold,
        "syn_fraction": float(np.mean(d_st < threshold)),
        "exact_copies": float(np.mean(d_st <= 1e-6 * scale)),
        "real_fraction": float("nan"),
        "train_share": float("nan"),
    }
    reference = quantile
    prefers_train = True  # without held-out data only the distance criterion is available
    if x_test is not None and len(x_test):
        d_rt = nn.kneighbors(x_test, n_neighbors=1)[0][:, 0]
        out["real_fraction"] = float(np.mean(d_rt < threshold))
        reference = max(reference, out["real_fraction"])
        k = min(len(train), len(x_test))
        pool = np.vstack(
            [train[_subsample(len(train), k, rng)], x_test[_subsample(len(x_test), k, rng)]]
        )
        nearest = NearestNeighbors(n_neighbors=1).fit(pool).kneighbors(x_syn)[1][:, 0]
        out["train_share"] = float(np.mean(nearest < k))
        prefers_train = out["train_share"] > 0.6
    close = out["syn_fraction"] > max(2.0 * reference, 0.1)
    out["flagged"] = float(out["exact_copies"] > 0.01 or (close and prefers_train))
    return out


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class QualityReport:
    """Everything the quality report computed.

    ``summary``: flat JSON-able dict of headline numbers (``trtr_f1``, ``trts_f1``, ``tstr_f1``,
    ``tstr_ratio``, ``c2st_auc``, ``mmd``, ``mmd_p``, ``mean_r``, ...). ``classifiers``: one row
    per setting x class (``setting, class, precision, recall, f1, support``; class ``macro`` is
    the overall row; empty when the label has a single level, see ``notes``). ``features``:
    per-feature means and variances. ``verdict``: plain-language sentences. ``notes``: what was
    compared with what and what was skipped (plain sentences for the UI and the CLI).
    """

    summary: dict[str, float | int | str]
    classifiers: pd.DataFrame
    features: pd.DataFrame
    verdict: str
    params: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def table(self) -> pd.DataFrame:
        """Numeric headline metrics as a table (metric, value (float), meaning)."""
        rows = [
            (k, float(v), METRIC_MEANING.get(k, ""))
            for k, v in self.summary.items()
            if isinstance(v, int | float | np.number)
        ]
        return pd.DataFrame(rows, columns=["metric", "value", "meaning"])

    def to_dict(self) -> dict:
        """JSON-able: summary + verdict + per-class classifier rows."""
        return {
            **self.summary,
            "verdict": self.verdict,
            "notes": list(self.notes),
            "classifiers": self.classifiers.to_dict(orient="records"),
        }


METRIC_MEANING = {
    "label": "label the classifiers predict",
    "n_train": "real training samples",
    "n_test": "held-out real samples",
    "n_synthetic": "synthetic samples",
    "n_features": "features compared",
    "trtr_f1": "macro-F1, train real / test real (reference)",
    "trts_f1": "macro-F1, train real / test synthetic",
    "tstr_f1": "macro-F1, train synthetic / test real",
    "tstr_ratio": f"TSTR / TRTR (>= {TSTR_RATIO_OK} is good)",
    "c2st_auc": f"real-vs-synthetic classifier ROC AUC (0.5 = indistinguishable, <= {C2ST_AUC_OK} ok)",
    "mmd": "squared maximum mean discrepancy (RBF, median bandwidth)",
    "mmd_p": "permutation p-value of MMD (small = distributions differ)",
    "mean_r": "correlation of per-feature means",
    "mean_r2": "R^2 of per-feature means (synthetic predicting real)",
    "var_r": "correlation of per-feature variances",
    "var_r2": "R^2 of per-feature variances",
    "corr_dist": "relative distance of feature-feature correlation matrices",
    "corr_dist_real": "same distance between real train and held-out real (floor)",
    "memorisation": "synthetic fraction closer to a training sample than 95% of training pairs",
    "memorisation_real": "same fraction for held-out real samples (reference)",
    "exact_copies": "synthetic fraction identical to a training sample",
    "nn_train_share": "synthetic share whose nearest real sample is a training one (0.5 = none)",
    "memorisation_flagged": "1 when synthetic samples copy training samples",
}


def verdict(summary: Mapping[str, float]) -> str:
    """A short plain-language reading of the headline numbers."""
    parts = []
    ratio = float(summary.get("tstr_ratio", float("nan")))
    auc = float(summary.get("c2st_auc", float("nan")))
    useful = np.isfinite(ratio) and ratio >= TSTR_RATIO_OK
    realistic = np.isfinite(auc) and auc <= C2ST_AUC_OK
    if not np.isfinite(ratio):  # classifier tables skipped (one label level): realism only
        head = (
            "Good: the synthetic data are hard to tell from real data."
            if realistic
            else "Poor: the synthetic data are easy to tell from real data."
        )
    elif useful and realistic:
        head = "Good: the synthetic data are realistic and keep the label signal."
    elif useful:
        head = "Fair: the synthetic data keep the label signal but are easy to tell from real data."
    elif realistic:
        head = "Fair: the synthetic data look real but lose part of the label signal."
    else:
        head = "Poor: the synthetic data lose the label signal and are easy to tell from real data."
    parts.append(head)
    if np.isfinite(ratio):
        parts.append(
            f"A classifier trained on synthetic samples reaches {ratio:.0%} of the real-data "
            f"macro-F1 ({summary.get('tstr_f1', float('nan')):.2f} vs "
            f"{summary.get('trtr_f1', float('nan')):.2f})."
        )
    else:
        parts.append("The label signal was not scored (one label level).")
    parts.append(f"Real vs synthetic classifier AUC {auc:.2f} (0.5 = indistinguishable).")
    p = summary.get("mmd_p", float("nan"))
    parts.append(
        f"MMD p = {p:.3f}: "
        + ("no detectable distribution shift." if p >= 0.05 else "the distributions differ.")
    )
    if summary.get("memorisation_flagged"):
        parts.append(
            f"Warning: {summary.get('memorisation', 0):.0%} of synthetic samples sit closer to a "
            f"training sample than training samples sit to each other (real held-out: "
            f"{summary.get('memorisation_real', float('nan')):.0%}); they may copy training data."
        )
    else:
        parts.append("No sign of memorisation.")
    return " ".join(parts)


def quality_report(
    x_train: np.ndarray,
    y_train: Sequence,
    x_test: np.ndarray,
    y_test: Sequence,
    x_syn: np.ndarray,
    y_syn: Sequence,
    *,
    var_names: Sequence[str] | None = None,
    label: str = "label",
    n_components: int = 20,
    n_permutations: int = 200,
    corr_top: int = 200,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> QualityReport:
    """Compare synthetic samples with real ones.

    x_train (n_train, d) / y_train (n_train,): real samples the generator was trained on;
    x_test (n_test, d) / y_test: held-out real samples; x_syn (n_syn, d) / y_syn: synthetic
    samples with the label they were generated for. Features must already be on a common scale
    (see :func:`evaluate_mudata`). Distribution metrics compare synthetic with held-out real.
    When the synthetic (or real training) labels have fewer than 2 levels the classifier
    tables are skipped: ``classifiers`` is empty, the F1 summary values are NaN and a note
    says why. ``notes``: sentences to put first in the report's notes.
    """
    x_train = _as_2d(x_train, "real training data")
    x_test = _as_2d(x_test, "held-out real data")
    x_syn = _as_2d(x_syn, "synthetic data")
    d = x_train.shape[1]
    if x_test.shape[1] != d or x_syn.shape[1] != d:
        raise InputError(
            f"feature counts differ: train {d}, held-out {x_test.shape[1]}, synthetic "
            f"{x_syn.shape[1]}; generate with the same run the real data belong to"
        )
    for name, x, y in (
        ("real training", x_train, y_train),
        ("held-out", x_test, y_test),
        ("synthetic", x_syn, y_syn),
    ):
        if len(x) != len(y):
            raise InputError(f"{name} data have {len(x)} samples but {len(y)} labels")

    notes = list(notes)
    syn_levels, train_levels = {str(v) for v in y_syn}, {str(v) for v in y_train}
    if len(syn_levels) < 2 or len(train_levels) < 2:
        side, levels = (
            ("synthetic", syn_levels) if len(syn_levels) < 2 else ("real training", train_levels)
        )
        notes.append(
            f"Classifier tables (TRTR, TRTS, TSTR) skipped: the {side} samples have a single "
            f"{label} level ({_levels_text(levels)}), so there is nothing to tell apart. "
            f"Generate several levels of {label} to score the label signal; the other "
            "metrics below are computed as usual."
        )
        classifiers = pd.DataFrame(columns=CLASSIFIER_COLUMNS)
        macro = pd.Series({s: float("nan") for s in SETTINGS})
    else:
        tables = []
        for setting, (xa, ya, xb, yb) in {
            "TRTR": (x_train, y_train, x_test, y_test),
            "TRTS": (x_train, y_train, x_syn, y_syn),
            "TSTR": (x_syn, y_syn, x_test, y_test),
        }.items():
            t = classifier_table(xa, ya, xb, yb, seed=seed)
            t.insert(0, "setting", setting)
            tables.append(t)
        classifiers = pd.concat(tables, ignore_index=True)
        macro = classifiers[classifiers["class"] == "macro"].set_index("setting")["f1"]

    # Two-sample statistics on axes fitted on the pooled held-out + synthetic sample (symmetric).
    auc = c2st_auc(x_test, x_syn, n_components=n_components, seed=seed)
    pooled = _standardise(np.vstack([x_test, x_syn]))[0]
    pooled_p = _project(pooled, _pca_basis(pooled, n_components=n_components, seed=seed))
    mmd2, mmd_p, _ = mmd_test(
        pooled_p[: len(x_test)], pooled_p[len(x_test) :], n_permutations=n_permutations, seed=seed
    )
    # Memorisation in the full standardised feature space: principal axes fitted on the
    # training samples would carry their own noise (n << d) and push them apart.
    train_s, test_s, syn_s = _standardise(x_train, x_test, x_syn)
    agree, features = feature_agreement(x_test, x_syn, var_names=var_names)
    mem = memorisation(train_s, syn_s, test_s, seed=seed)

    if len(x_test) < FEW_HELD_OUT:
        notes.append(
            f"Only {len(x_test)} held-out real samples to compare with: the two-sample "
            "statistics (AUC, MMD) are noisy."
        )
    trtr = float(macro["TRTR"])
    summary: dict[str, float | int | str] = {
        "label": label,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "n_synthetic": len(x_syn),
        "n_features": d,
        "trtr_f1": trtr,
        "trts_f1": float(macro["TRTS"]),
        "tstr_f1": float(macro["TSTR"]),
        "tstr_ratio": float(macro["TSTR"]) / trtr if trtr > 0 else float("nan"),  # NaN > 0: False
        "c2st_auc": auc,
        "mmd": mmd2,
        "mmd_p": mmd_p,
        **agree,
        "corr_dist": correlation_distance(x_test, x_syn, top=corr_top),
        "corr_dist_real": correlation_distance(x_test, x_train, top=corr_top),
        "memorisation": mem["syn_fraction"],
        "memorisation_real": mem["real_fraction"],
        "exact_copies": mem["exact_copies"],
        "nn_train_share": mem["train_share"],
        "memorisation_flagged": int(mem["flagged"]),
    }
    params = {
        "n_components": n_components,
        "n_permutations": n_permutations,
        "corr_top": corr_top,
        "seed": seed,
        "classifier": "logistic",
        "c2st": "forest",
    }
    return QualityReport(
        summary, classifiers, features, verdict(summary), params, notes=tuple(notes)
    )


# --------------------------------------------------------------------------- matching


def generated_columns(synthetic: mudata.MuData) -> list[str]:
    """Columns named in the synthetic data's generation conditions (provenance), in order.

    Reads ``.uns["generation"]["conditions"]`` (the JSON list of condition sets written by
    :mod:`core.generate`); [] when there is none (unconditional or foreign data).
    """
    from core.generate import PROVENANCE_KEY

    prov = synthetic.uns.get(PROVENANCE_KEY) or {}
    raw = prov.get("conditions") if isinstance(prov, Mapping) else None
    try:
        sets = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    sets = sets if isinstance(sets, list) else [sets]
    cols: list[str] = []
    for cset in sets:
        if isinstance(cset, Mapping):
            cols.extend(str(c) for c in cset if str(c) not in cols)
    return cols


def _is_continuous(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


@dataclass(frozen=True)
class RealMatch:
    """Which real samples a synthetic set is compared with (see the module docstring).

    ``columns``: categorical condition columns; a real sample matches when its values in them
    (as strings) form one of ``combos``. ``unfiltered``: continuous condition columns (age),
    deliberately not filtered. No columns: every real sample matches.
    """

    columns: tuple[str, ...] = ()
    combos: frozenset[tuple[str, ...]] = frozenset()
    unfiltered: tuple[str, ...] = ()

    def mask(self, obs: pd.DataFrame) -> np.ndarray:
        """(n_obs,) bool: the rows of ``obs`` that match."""
        if not self.columns:
            return np.ones(len(obs), dtype=bool)
        keys = zip(*(obs[c].astype(str).to_numpy() for c in self.columns), strict=True)
        return np.fromiter((k in self.combos for k in keys), dtype=bool, count=len(obs))

    def describe(self) -> str:
        """'tissue = liver; age not filtered' / 'tissue in {liver, lung}' / 'all samples'."""
        parts = []
        for i, col in enumerate(self.columns):
            levels = sorted({combo[i] for combo in self.combos})
            parts.append(
                f"{col} = {levels[0]}" if len(levels) == 1 else f"{col} in {{{', '.join(levels)}}}"
            )
        parts.extend(f"{col} not filtered" for col in self.unfiltered)
        return "; ".join(parts) if parts else "all samples"


def real_match(
    synthetic: mudata.MuData, real_obs: pd.DataFrame, *, columns: Sequence[str] | None = None
) -> RealMatch:
    """The rule for the real samples that match ``synthetic``'s conditions.

    columns: the condition columns (default: :func:`generated_columns`, from the provenance);
    columns missing from either obs are ignored. Categorical ones filter (the value
    combinations that occur in ``synthetic.obs``), continuous ones do not.
    """
    cols = generated_columns(synthetic) if columns is None else [str(c) for c in columns]
    syn_obs = synthetic.obs
    filtered, unfiltered = [], []
    for col in cols:
        if col in real_obs.columns and col in syn_obs.columns:
            (unfiltered if _is_continuous(real_obs[col]) else filtered).append(col)
    combos = frozenset(zip(*(syn_obs[c].astype(str).to_numpy() for c in filtered), strict=True))
    return RealMatch(tuple(filtered), combos if filtered else frozenset(), tuple(unfiltered))


# --------------------------------------------------------------------------- MuData adapter


def comparable_features(
    mdata: mudata.MuData, modalities: Sequence[str], kinds: Mapping[str, str]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Concatenate modalities on a common scale for the report.

    Returns ``(x (n_kept, d), feature names "MOD:FEATURE", kept sample ids)``; samples missing
    any of the modalities are dropped. counts -> log1p(counts per 10,000); proportion ->
    clipped to [0, 1]; continuous -> as is; categorical -> one-hot when a feature has more than
    two levels, the 0/1 code otherwise.
    """
    ids = pd.Index(mdata.obs_names.astype(str))
    keep = np.ones(len(ids), dtype=bool)
    for mod in modalities:
        if mod not in mdata.mod:
            raise InputError(
                f"modality '{mod}' is missing from the data (has {sorted(mdata.mod)}); "
                "generate all modalities of the run"
            )
        keep &= ids.isin(pd.Index(mdata.mod[mod].obs_names.astype(str)))
    kept = ids[keep]
    blocks, names = [], []
    for mod in modalities:
        ad = mdata.mod[mod]
        pos = pd.Index(ad.obs_names.astype(str)).get_indexer(kept)
        x = np.asarray(ad.X if not hasattr(ad.X, "toarray") else ad.X.toarray(), dtype=np.float64)
        x = x[pos]
        var = [f"{mod}:{v}" for v in ad.var_names.astype(str)]
        kind = kinds.get(mod, ad.uns.get("kind", "continuous"))
        if kind == "counts":
            lib = x.sum(1, keepdims=True)
            x = np.log1p(x / np.where(lib > 0, lib, 1.0) * 1e4)
        elif kind == "proportion":
            x = np.clip(x, 0.0, 1.0)
        elif kind == "categorical":
            cats = ad.uns.get("categories", {}) or {}
            cols, cnames = [], []
            for j, v in enumerate(ad.var_names.astype(str)):
                levels = list(cats.get(v, [])) or sorted(np.unique(x[:, j]).tolist())
                if len(levels) > 2:
                    for code, lev in enumerate(levels):
                        cols.append((np.rint(x[:, j]) == code).astype(np.float64))
                        cnames.append(f"{mod}:{v}={lev}")
                else:
                    cols.append(x[:, j])
                    cnames.append(f"{mod}:{v}")
            x, var = np.column_stack(cols), cnames
        blocks.append(x)
        names.extend(var)
    return np.hstack(blocks), names, np.asarray(kept)


def _labels(mdata: mudata.MuData, ids: np.ndarray, label: str, *, what: str) -> np.ndarray:
    obs = mdata.obs
    if label not in obs.columns:
        raise InputError(
            f"the {what} data have no column '{label}' in obs (columns: "
            f"{', '.join(map(str, list(obs.columns)[:10])) or 'none'}); choose the label among them"
        )
    col = obs[label]
    col.index = col.index.astype(str)
    return col.loc[list(ids)].astype(str).to_numpy()


def evaluate_mudata(
    real_train: mudata.MuData,
    real_test: mudata.MuData,
    synthetic: mudata.MuData,
    *,
    label: str,
    kinds: Mapping[str, str] | None = None,
    modalities: Sequence[str] | None = None,
    match: Sequence[str] | None = None,
    seed: int = 0,
    **options,
) -> QualityReport:
    """:func:`quality_report` on MuData: common modalities, common scale, ``label`` from obs.

    Modalities default to those present in all three objects; samples missing one of them are
    dropped. Features of the synthetic data are aligned to the real var_names (by name). Both
    real sides are restricted to the samples matching the synthetic conditions
    (:func:`real_match`; ``match`` overrides the condition columns, ``[]`` uses every sample).
    """
    rule = real_match(synthetic, real_test.obs, columns=match)
    n_all = real_test.n_obs
    if rule.columns:
        real_train = _subset(
            real_train, real_train.obs_names.astype(str)[rule.mask(real_train.obs)]
        )
        real_test = _subset(real_test, real_test.obs_names.astype(str)[rule.mask(real_test.obs)])
        for what, side in (("held-out", real_test), ("training", real_train)):
            if side.n_obs == 0:
                raise InputError(
                    f"no {what} real samples have {rule.describe()}, so there is nothing to "
                    "compare with; generate for levels that occur in the run's data"
                )
    notes = [
        f"Compared with {real_test.n_obs:,} of {n_all:,} held-out real samples ({rule.describe()})."
    ]
    mods = (
        list(modalities)
        if modalities is not None
        else [m for m in real_train.mod if m in real_test.mod and m in synthetic.mod]
    )
    if not mods:
        raise InputError(
            f"synthetic modalities {sorted(synthetic.mod)} share none with the real data "
            f"{sorted(real_train.mod)}; generate with the run the real data belong to"
        )
    kinds = dict(kinds or {})
    for m in mods:
        kinds.setdefault(m, str(real_train.mod[m].uns.get("kind", "continuous")))
        real_vars = set(real_train.mod[m].var_names.astype(str))
        missing = [v for v in synthetic.mod[m].var_names.astype(str) if v not in real_vars]
        if missing:
            raise InputError(
                f"synthetic modality '{m}' has {len(missing)} features the real data lack "
                f"(e.g. '{missing[0]}'); evaluate with the run that generated it"
            )
    # Compare on the synthetic features (a run may model a subset, e.g. variable genes).
    real_train = _select_vars(real_train, synthetic, mods)
    real_test = _select_vars(real_test, synthetic, mods)
    x_tr, names, ids_tr = comparable_features(real_train, mods, kinds)
    x_te, _, ids_te = comparable_features(real_test, mods, kinds)
    x_sy, _, ids_sy = comparable_features(synthetic, mods, kinds)
    for what, x in (("real training", x_tr), ("held-out real", x_te), ("synthetic", x_sy)):
        if len(x) == 0:
            raise InputError(f"no {what} samples have all of the modalities {mods}")
    return quality_report(
        x_tr,
        _labels(real_train, ids_tr, label, what="real"),
        x_te,
        _labels(real_test, ids_te, label, what="real"),
        x_sy,
        _labels(synthetic, ids_sy, label, what="synthetic"),
        var_names=names,
        label=label,
        seed=seed,
        notes=notes,
        **options,
    )


def _select_vars(real: mudata.MuData, synthetic: mudata.MuData, mods: Sequence[str]):
    """``real`` restricted to ``mods`` with the synthetic data's features, in their order."""
    from core.generate import new_mudata

    if all(list(real.mod[m].var_names) == list(synthetic.mod[m].var_names) for m in mods):
        return real
    sub = {m: real.mod[m][:, list(synthetic.mod[m].var_names.astype(str))].copy() for m in mods}
    out = new_mudata(sub)
    obs = real.obs.copy()
    obs.index = obs.index.astype(str)
    out.obs = obs.reindex(out.obs_names.astype(str))
    return out


# --------------------------------------------------------------------------- run + CLI


def read_synthetic(path: str | Path) -> mudata.MuData:
    """Read generated samples: .h5ad, .h5mu, or a directory of per-modality CSVs + obs.csv."""
    from core.generate import read_generated

    return read_generated(path)


def _subset(mdata: mudata.MuData, ids: Sequence[str]) -> mudata.MuData:
    from core.generate import new_mudata

    ids = list(ids)
    idx = set(ids)
    mods = {}
    for name, ad in mdata.mod.items():
        sel = [i for i in ad.obs_names.astype(str) if i in idx]
        sub = ad[sel].copy()
        mods[name] = sub
    out = new_mudata(mods)
    obs = mdata.obs.copy()
    obs.index = obs.index.astype(str)
    out.obs = obs.reindex(out.obs_names.astype(str))
    return out


def run_splits(run, mdata: mudata.MuData | None = None) -> tuple[mudata.MuData, mudata.MuData]:
    """The run's own real data split into (train, held-out test) MuData.

    ``mdata``: the run's dataset when already loaded (default: ``run.load_data()``). Uses the
    split stored by the run when there is one, else recomputes it with
    :func:`core.data.split_samples` and the seed / stratify / fractions in the run's config.
    """
    from core.generate import run_split

    mdata = mdata if mdata is not None else run.load_data()
    split = run_split(run, mdata)
    ids = np.asarray(mdata.obs_names.astype(str))
    return _subset(mdata, ids[split == "train"]), _subset(mdata, ids[split == "test"])


def evaluate_run(
    run,
    synthetic: mudata.MuData,
    *,
    label: str,
    seed: int = 0,
    mdata: mudata.MuData | None = None,
    **options,
) -> QualityReport:
    """Quality report of ``synthetic`` against ``run``'s held-out (test) real samples that
    match its conditions (:func:`real_match`; ``match=[...]`` in ``options`` overrides them).

    ``mdata``: the run's dataset when already loaded (default: rebuilt from the run's config).
    """
    train, test = run_splits(run, mdata)
    if len(test.obs_names) == 0:
        raise InputError(f"run '{run.name}' has no held-out test samples; train with test_frac > 0")
    return evaluate_mudata(
        train, test, synthetic, label=label, kinds=run.kinds, seed=seed, **options
    )


def format_report(report: QualityReport) -> str:
    """Human-readable text: headline table, per-class table, verdict."""
    lines = [report.verdict, *report.notes, ""]
    for key, value in report.summary.items():
        lines.append(f"  {key:<22} {format_value(value)}")
    lines.append("")
    cls = report.classifiers.copy()
    if cls.empty:
        lines.append("(no classifier tables: see the note above)")
    else:
        lines.append(cls.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return "\n".join(lines)


def format_value(value) -> str:
    """A summary value for people: integers as integers, floats to 4 significant digits,
    NaN (not computed) as 'n/a'."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return f"{int(value)}"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}" if np.isfinite(value) else "n/a"
    return str(value)


def evaluate_command(args: argparse.Namespace) -> tuple[str, dict]:
    """``python -m core evaluate RUN_DIR --synthetic FILE --label COL [--json]``."""
    from core.runs import load_run

    synthetic = read_synthetic(args.synthetic)
    run = load_run(Path(args.run_dir))
    report = evaluate_run(run, synthetic, label=args.label, seed=0)
    payload = {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v)
        for k, v in report.to_dict().items()
    }
    return format_report(report), payload
