"""Per-modality preprocessing with fit / transform / inverse_transform and JSON state.

One transform per modality kind (see the table in shared/DESIGN.md):

=========== =============================================== =================================
kind        encoder input ``x``                             likelihood target / decoder space
=========== =============================================== =================================
counts      log1p(counts / library * 1e4), optional HVG      raw counts (negative binomial)
proportion  standardised logit(clip(beta, eps, 1 - eps))     same standardised logit (Gaussian)
continuous  optional log1p / CLR, then standardised          same standardised value (Gaussian)
categorical one-hot per variable (levels concatenated)       integer level codes (softmax CE)
=========== =============================================== =================================

``inverse_transform`` maps the decoder's mean (in the target space) back to DATA units: counts
stay counts, proportions go back to [0, 1], continuous values are un-standardised (and expm1 /
inverse-CLR applied), categorical probabilities become the expected level code (for 0/1 flags
that is the probability of level 1; :meth:`CategoricalTransform.split_probabilities` gives the
per-variable probabilities).

Conditions from ``.obs`` (:class:`ConditionEncoder`): categorical columns one-hot (with an "NA"
level for missing values), numeric columns standardised (missing -> the training mean).

All state is plain JSON (lists and floats); nothing is pickled. Fitting only sees the training
samples. Every function is pure: inputs are never modified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from core.errors import InputError

Kind = Literal["counts", "proportion", "continuous", "categorical"]
ContinuousOption = Literal["none", "log1p", "clr"]
SCALE_FACTOR = 1e4  # counts are normalised to counts per 10k before log1p
NA_LEVEL = "NA"
# counts are transformed in row blocks: float64 temporaries stay ~ 2048 x n_vars x 8 bytes
# (33 MB for 2,000 genes) instead of several full (n_obs, n_vars) float64 copies
BLOCK_ROWS = 2048


@dataclass
class PreprocessConfig:
    """Preprocessing options (saved inside the run's config.json).

    n_top_genes: keep this many highly variable features of each counts modality (None = all).
    proportion_eps: proportions are clipped to (eps, 1 - eps) before the logit.
    continuous: per-modality transform of continuous modalities before standardising
        ("none", "log1p" for non-negative skewed values, "clr" for compositions).
    """

    n_top_genes: int | None = None
    proportion_eps: float = 1e-3
    continuous: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_top_genes is not None and int(self.n_top_genes) < 1:
            raise InputError(
                f"n_top_genes must be a positive integer or None, got {self.n_top_genes}"
            )
        if not 0 < float(self.proportion_eps) < 0.5:
            raise InputError(f"proportion_eps must be in (0, 0.5), got {self.proportion_eps}")
        for mod, how in self.continuous.items():
            if how not in get_args(ContinuousOption):
                raise InputError(
                    f"continuous transform for {mod!r} must be one of "
                    f"{', '.join(get_args(ContinuousOption))}, got {how!r}"
                )


@dataclass
class Encoded:
    """A modality turned into model tensors (numpy, float32), rows aligned with the input.

    x: encoder input (n_obs, n_in); target: likelihood target (n_obs, n_target);
    library: (n_obs, 1) total counts for counts modalities, else None;
    mask: (n_obs, n_target) 1.0 where the target is observed, None when nothing is missing.
    """

    x: np.ndarray
    target: np.ndarray
    library: np.ndarray | None = None
    mask: np.ndarray | None = None


def _as_float(X: Any, what: str, *, keep_float32: bool = False) -> np.ndarray:
    """X (dense or sparse) -> 2-D float64 array; with ``keep_float32`` a float32 X stays
    float32. No copy when X already is a dense array of that dtype (callers must not mutate)."""
    dense = X.toarray() if hasattr(X, "toarray") else X
    if keep_float32 and getattr(dense, "dtype", None) == np.float32:
        arr = np.asarray(dense)
    else:
        arr = np.asarray(dense, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(
            f"{what}: expected a 2-D matrix (samples x features), got shape {arr.shape}"
        )
    return arr


def _check_n_vars(arr: np.ndarray, n_vars: int, what: str) -> None:
    if arr.shape[1] != n_vars:
        raise InputError(
            f"{what}: expected {n_vars} features, got {arr.shape[1]}; use the dataset the "
            "preprocessing was fitted on"
        )


def _mask_of(arr: np.ndarray) -> np.ndarray | None:
    nan = np.isnan(arr)
    return None if not nan.any() else (~nan).astype(np.float32)


def _std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and standard deviation (NaN ignored; sd of constant columns -> 1)."""
    with np.errstate(all="ignore"):
        mean = np.nanmean(values, axis=0)
        sd = np.nanstd(values, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    sd = np.where(np.isfinite(sd) & (sd > 1e-8), sd, 1.0)
    return mean, sd


def highly_variable(counts: np.ndarray, *, n_top: int) -> np.ndarray:
    """Indices (sorted) of the ``n_top`` features with the highest normalised dispersion.

    counts: (n_obs, n_vars). Features are ranked by variance / mean of log1p(CP10k) values
    after z-scoring the dispersion within up to 20 mean bins of >= ~10 features each (the
    Seurat flavour, without scanpy).
    """
    n_vars = counts.shape[1]
    if n_top >= n_vars:
        return np.arange(n_vars)
    lib = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    norm = counts / lib  # one (n_obs, n_vars) temporary, then in place: log1p(counts / lib * 1e4)
    norm *= SCALE_FACTOR
    np.log1p(norm, out=norm)
    mean = norm.mean(axis=0)
    var = norm.var(axis=0)
    disp = np.log(np.maximum(var, 1e-12) / np.maximum(mean, 1e-12))
    n_bins = int(np.clip(n_vars // 10, 1, 20))  # at least ~10 features per bin
    bins = np.digitize(mean, np.quantile(mean, np.linspace(0, 1, n_bins + 1)[1:-1]))
    score = np.zeros(n_vars)
    for b in np.unique(bins):
        sel = bins == b
        sd = disp[sel].std()
        score[sel] = (disp[sel] - disp[sel].mean()) / (sd if sd > 0 else 1.0)
    score[mean <= 0] = -np.inf
    order = np.argsort(-score, kind="stable")[:n_top]
    return np.sort(order)


class ModalityTransform:
    """Base class: fit on training rows, transform any rows, inverse to data units."""

    kind: Kind

    def __init__(self, var_names: Sequence[str]) -> None:
        self.var_names = [str(v) for v in var_names]  # input features, in the dataset's order
        self.keep = list(range(len(self.var_names)))  # indices into var_names used by the model

    @property
    def features(self) -> list[str]:
        """The model's features (a subset of var_names for HVG selection)."""
        return [self.var_names[i] for i in self.keep]

    @property
    def n_in(self) -> int:
        """Encoder input width."""
        return len(self.keep)

    @property
    def n_target(self) -> int:
        """Likelihood target width (columns of Encoded.target)."""
        return len(self.keep)

    def fit(self, X: np.ndarray) -> ModalityTransform:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, X: np.ndarray) -> Encoded:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse_transform(self, mean: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def state(self) -> dict:
        return {"kind": self.kind, "var_names": self.var_names, "keep": self.keep}

    def _load(self, state: Mapping) -> None:
        self.keep = [int(i) for i in state["keep"]]


class CountsTransform(ModalityTransform):
    """Counts: encoder input log1p(CP10k); target raw counts; library = row total."""

    kind = "counts"

    def __init__(self, var_names: Sequence[str], *, n_top_genes: int | None = None) -> None:
        super().__init__(var_names)
        self.n_top_genes = n_top_genes
        self.median_library = 1.0

    def _blocks(self, X: np.ndarray):
        """Yield (start, stop, counts): X[start:stop, keep] as float64, NaN kept, in one
        reused (BLOCK_ROWS, n_features) buffer that callers may change in place (and must
        not keep: the next block overwrites it).

        The arithmetic is float64 as on a whole float64 matrix (row sums do not depend on
        other rows), so results are identical; only BLOCK_ROWS rows are float64 at a time.
        """
        cols = None if self.keep == list(range(X.shape[1])) else np.asarray(self.keep, np.intp)
        buf = np.empty((min(BLOCK_ROWS, X.shape[0]), len(self.keep)), dtype=np.float64)
        for start in range(0, X.shape[0], BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, X.shape[0])
            counts = buf[: stop - start]
            counts[...] = X[start:stop] if cols is None else X[start:stop, cols]
            yield start, stop, counts

    def fit(self, X: np.ndarray) -> CountsTransform:
        X = _as_float(X, "counts", keep_float32=True)
        _check_n_vars(X, len(self.var_names), "counts")
        if self.n_top_genes is not None:  # HVG ranks need every training row at once
            dense = np.array(X, dtype=np.float64)
            np.nan_to_num(dense, copy=False, nan=0.0)
            self.keep = highly_variable(dense, n_top=int(self.n_top_genes)).tolist()
            del dense
        lib = np.zeros(X.shape[0])
        for start, stop, counts in self._blocks(X):
            lib[start:stop] = np.nan_to_num(counts, copy=False, nan=0.0).sum(axis=1)
        self.median_library = float(np.median(lib)) if lib.size else 1.0
        self.median_library = max(self.median_library, 1.0)
        return self

    def transform(self, X: np.ndarray) -> Encoded:
        """(n_obs, n_vars) counts (float32 stays float32, no full-size float64 copy) ->
        Encoded with float32 x, target (n_obs, n_features), library (n_obs, 1), mask."""
        X = _as_float(X, "counts", keep_float32=True)
        _check_n_vars(X, len(self.var_names), "counts")
        n_obs, n_features = X.shape[0], len(self.keep)
        x = np.empty((n_obs, n_features), dtype=np.float32)
        target = np.empty((n_obs, n_features), dtype=np.float32)
        library = np.empty((n_obs, 1), dtype=np.float32)
        mask = None  # created at the first missing value: rows before it are all observed
        for start, stop, counts in self._blocks(X):
            nan = np.isnan(counts)
            if nan.any():
                if mask is None:
                    mask = np.ones((n_obs, n_features), dtype=np.float32)
                mask[start:stop] = ~nan
            np.nan_to_num(counts, copy=False, nan=0.0)
            target[start:stop] = counts
            lib = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
            library[start:stop] = lib
            counts /= lib  # in place: log1p(counts / lib * SCALE_FACTOR)
            counts *= SCALE_FACTOR
            x[start:stop] = np.log1p(counts, out=counts)
        return Encoded(x, target, library, mask)

    def inverse_transform(self, mean: np.ndarray) -> np.ndarray:
        """Decoder mean counts (n, n_features) -> counts (identity; already data units)."""
        return np.asarray(mean, dtype=np.float32)

    def state(self) -> dict:
        return {
            **super().state(),
            "n_top_genes": self.n_top_genes,
            "median_library": self.median_library,
        }

    def _load(self, state: Mapping) -> None:
        super()._load(state)
        self.n_top_genes = state.get("n_top_genes")
        self.median_library = float(state["median_library"])


class _StandardisedTransform(ModalityTransform):
    """Shared logic: forward map f, then standardise with training mean/sd."""

    def __init__(self, var_names: Sequence[str]) -> None:
        super().__init__(var_names)
        self.mean = np.zeros(len(self.var_names))
        self.sd = np.ones(len(self.var_names))

    def _forward(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, Y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X: np.ndarray) -> _StandardisedTransform:
        X = _as_float(X, self.kind)
        _check_n_vars(X, len(self.var_names), self.kind)
        self.mean, self.sd = _std(self._forward(X))
        return self

    def transform(self, X: np.ndarray) -> Encoded:
        X = _as_float(X, self.kind)
        _check_n_vars(X, len(self.var_names), self.kind)
        z = self._forward(X) - self.mean  # a new array (the forward map may return X itself)
        z /= self.sd
        mask = _mask_of(z)
        z = np.nan_to_num(z, copy=False, nan=0.0).astype(np.float32)
        return Encoded(z, z.copy(), None, mask)

    def inverse_transform(self, mean: np.ndarray) -> np.ndarray:
        """Standardised values (n, n_vars) -> data units (n, n_vars)."""
        y = np.asarray(mean, dtype=np.float64) * self.sd + self.mean
        return self._backward(y).astype(np.float32)

    def state(self) -> dict:
        return {**super().state(), "mean": self.mean.tolist(), "sd": self.sd.tolist()}

    def _load(self, state: Mapping) -> None:
        super()._load(state)
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.sd = np.asarray(state["sd"], dtype=np.float64)


class ProportionTransform(_StandardisedTransform):
    """Proportions (methylation beta values): clip, logit (M-value scale), standardise.

    The inverse of the decoder mean is sigmoid(mean), i.e. the median of the Gaussian-on-logit
    distribution in [0, 1].
    """

    kind = "proportion"

    def __init__(self, var_names: Sequence[str], *, eps: float = 1e-3) -> None:
        super().__init__(var_names)
        self.eps = float(eps)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        p = np.clip(X, self.eps, 1.0 - self.eps)
        return np.log(p) - np.log1p(-p)

    def _backward(self, Y: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-Y))

    def state(self) -> dict:
        return {**super().state(), "eps": self.eps}

    def _load(self, state: Mapping) -> None:
        super()._load(state)
        self.eps = float(state["eps"])


class ContinuousTransform(_StandardisedTransform):
    """Continuous values: optional log1p or centred log-ratio (CLR), then standardise.

    "clr" is the centred log-ratio with a pseudo-count of 1: y = log1p(x) - mean(log1p(x)) per
    row. The row total is not recoverable from y, so the inverse returns the composition whose
    total is the training median row total T: x = exp(y + c) - 1 with
    c = log((T + n_vars) / sum(exp(y))), so that sum(x) = T. A row that sums to T round-trips
    exactly (rows of a closed composition, e.g. percentages, all do); tiny parts that would come
    out negative are clipped to 0.
    """

    kind = "continuous"

    def __init__(self, var_names: Sequence[str], *, how: ContinuousOption = "none") -> None:
        super().__init__(var_names)
        if how not in get_args(ContinuousOption):
            raise InputError(f"continuous transform must be one of {get_args(ContinuousOption)}")
        self.how = how
        self.median_total = 1.0

    def fit(self, X: np.ndarray) -> ContinuousTransform:
        X = _as_float(X, "continuous")
        if self.how in ("log1p", "clr") and np.nanmin(X, initial=0.0) < 0:
            raise InputError(
                f"continuous transform {self.how!r} needs non-negative values; use 'none'"
            )
        if self.how == "clr":
            total = float(np.nanmedian(np.nansum(X, axis=1))) if X.size else 0.0
            self.median_total = total if np.isfinite(total) and total > 0 else 1.0
        return super().fit(X)  # type: ignore[return-value]

    def _forward(self, X: np.ndarray) -> np.ndarray:
        if self.how == "log1p":
            return np.log1p(np.maximum(X, 0.0))
        if self.how == "clr":
            logx = np.log1p(np.maximum(X, 0.0))
            return logx - np.nanmean(logx, axis=1, keepdims=True)
        return X

    def _backward(self, Y: np.ndarray) -> np.ndarray:
        if self.how == "log1p":
            return np.expm1(Y)
        if self.how == "clr":
            # x = exp(y + c) - 1 with sum(x) = T: exp(c) = (T + n) / sum(exp(y)); shifting y by
            # its row max first keeps exp() finite and leaves the ratio unchanged
            e = np.exp(Y - np.max(Y, axis=1, keepdims=True))
            scale = (self.median_total + Y.shape[1]) / e.sum(axis=1, keepdims=True)
            return np.maximum(e * scale - 1.0, 0.0)
        return Y

    def state(self) -> dict:
        return {**super().state(), "how": self.how, "median_total": self.median_total}

    def _load(self, state: Mapping) -> None:
        super()._load(state)
        self.how = state["how"]
        self.median_total = float(state["median_total"])


class CategoricalTransform(ModalityTransform):
    """Categorical variables stored as integer level codes: one-hot input, codes as target."""

    kind = "categorical"

    def __init__(
        self, var_names: Sequence[str], *, categories: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        super().__init__(var_names)
        categories = categories or {}
        self.levels = [[str(x) for x in categories.get(v, [])] for v in self.var_names]

    @property
    def n_levels(self) -> list[int]:
        return [len(self.levels[i]) for i in self.keep]

    @property
    def n_in(self) -> int:
        return int(sum(self.n_levels))

    def fit(self, X: np.ndarray) -> CategoricalTransform:
        X = _as_float(X, "categorical")
        _check_n_vars(X, len(self.var_names), "categorical")
        for j in range(X.shape[1]):
            col = X[:, j][~np.isnan(X[:, j])]
            top = int(col.max()) + 1 if col.size else 1
            if len(self.levels[j]) < max(top, 2):  # no labels given: name levels by code
                self.levels[j] = self.levels[j] + [
                    str(k) for k in range(len(self.levels[j]), max(top, 2))
                ]
        return self

    def transform(self, X: np.ndarray) -> Encoded:
        X = _as_float(X, "categorical")
        _check_n_vars(X, len(self.var_names), "categorical")
        codes = X[:, self.keep]
        n_levels = self.n_levels
        bad = (~np.isnan(codes)) & (
            (codes < 0) | (codes >= np.asarray(n_levels)[None, :]) | (codes != np.round(codes))
        )
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(
                f"categorical feature {self.features[c]!r}, row {r}: level code {codes[r, c]:g} "
                f"is not one of the {n_levels[c]} levels seen in training"
            )
        mask = _mask_of(codes)
        onehot = np.zeros((codes.shape[0], self.n_in), dtype=np.float32)
        offset = 0
        for j, k in enumerate(n_levels):
            ok = ~np.isnan(codes[:, j])
            onehot[np.nonzero(ok)[0], offset + codes[ok, j].astype(int)] = 1.0
            offset += k
        return Encoded(onehot, np.nan_to_num(codes, nan=0.0).astype(np.float32), None, mask)

    def split_probabilities(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """(n, sum(levels)) concatenated probabilities -> {feature: (n, n_levels)}."""
        out, offset = {}, 0
        for name, k in zip(self.features, self.n_levels, strict=True):
            out[name] = np.asarray(probs[:, offset : offset + k])
            offset += k
        return out

    def inverse_transform(self, mean: np.ndarray) -> np.ndarray:
        """Probabilities (n, sum(levels)) -> expected level code per variable (n, n_vars)."""
        parts = self.split_probabilities(np.asarray(mean, dtype=np.float64))
        cols = [p @ np.arange(p.shape[1]) for p in parts.values()]
        return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(mean), 0))

    def state(self) -> dict:
        return {**super().state(), "levels": self.levels}

    def _load(self, state: Mapping) -> None:
        super()._load(state)
        self.levels = [[str(x) for x in lv] for lv in state["levels"]]


def make_transform(
    kind: str,
    var_names: Sequence[str],
    *,
    config: PreprocessConfig,
    modality: str,
    categories: Mapping | None = None,
) -> ModalityTransform:
    """The transform for one modality of the given kind (not yet fitted)."""
    if kind == "counts":
        return CountsTransform(var_names, n_top_genes=config.n_top_genes)
    if kind == "proportion":
        return ProportionTransform(var_names, eps=config.proportion_eps)
    if kind == "continuous":
        return ContinuousTransform(var_names, how=config.continuous.get(modality, "none"))
    if kind == "categorical":
        return CategoricalTransform(var_names, categories=categories)
    raise InputError(
        f"modality {modality!r} has unknown kind {kind!r}; use one of {', '.join(get_args(Kind))}"
    )


def transform_from_state(state: Mapping) -> ModalityTransform:
    """Rebuild a fitted transform from :meth:`ModalityTransform.state` (plain JSON)."""
    kind = state.get("kind")
    if kind == "counts":
        t: ModalityTransform = CountsTransform(state["var_names"])
    elif kind == "proportion":
        t = ProportionTransform(state["var_names"])
    elif kind == "continuous":
        t = ContinuousTransform(state["var_names"])
    elif kind == "categorical":
        t = CategoricalTransform(state["var_names"])
    else:
        raise InputError(f"preprocessing state has unknown kind {kind!r}")
    t._load(state)
    return t


class ConditionEncoder:
    """Encode .obs columns as a condition matrix (n_obs, n_cond), float32.

    Categorical (category / object / bool dtype) -> one-hot over the training levels plus "NA";
    numeric -> standardised with the mean / sd of the finite training values; a missing or
    infinite value -> 0 (the mean). Training refuses such values in a condition column first
    (:func:`core.data.check_condition`); the fill is for new samples given without a value.
    """

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.columns = [str(c) for c in columns]
        self.specs: list[dict] = []

    def fit(self, obs: pd.DataFrame) -> ConditionEncoder:
        self.specs = []
        for col in self.columns:
            if col not in obs.columns:
                raise InputError(
                    f"condition column {col!r} is not in the sample metadata; available: "
                    f"{', '.join(map(str, obs.columns)) or 'none'}"
                )
            s = obs[col]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                v = s.to_numpy(dtype=np.float64)
                v = v[np.isfinite(v)]  # NaN and +-Inf never reach the saved (JSON) state
                mean = float(np.mean(v)) if v.size else 0.0
                sd = float(np.std(v)) if v.size else 1.0
                mean = mean if np.isfinite(mean) else 0.0
                sd = sd if np.isfinite(sd) else 1.0
                self.specs.append(
                    {
                        "column": col,
                        "type": "continuous",
                        "mean": mean,
                        "sd": sd if sd > 1e-8 else 1.0,
                    }
                )
            else:
                labels = s.astype(str).where(s.notna(), NA_LEVEL)
                levels = sorted(set(labels.tolist()))
                if isinstance(s.dtype, pd.CategoricalDtype):
                    order = [str(c) for c in s.cat.categories]
                    levels = [c for c in order if c in set(levels)] + [
                        c for c in levels if c not in set(order)
                    ]
                if NA_LEVEL not in levels:
                    levels.append(NA_LEVEL)
                self.specs.append({"column": col, "type": "categorical", "levels": levels})
        return self

    @property
    def names(self) -> list[str]:
        """Column names of the condition matrix ("tissue=liver", "age", ...)."""
        out = []
        for spec in self.specs:
            if spec["type"] == "continuous":
                out.append(spec["column"])
            else:
                out.extend(f"{spec['column']}={lv}" for lv in spec["levels"])
        return out

    @property
    def n_cond(self) -> int:
        return len(self.names)

    def levels(self, column: str) -> list[str]:
        """Training levels of a categorical condition column (without "NA" unless seen)."""
        for spec in self.specs:
            if spec["column"] == column and spec["type"] == "categorical":
                return list(spec["levels"])
        raise KeyError(column)

    def transform(self, obs: pd.DataFrame | None, *, n_obs: int | None = None) -> np.ndarray:
        """obs (n_obs rows) -> (n_obs, n_cond) float32. Unknown categorical levels are errors."""
        if not self.specs:
            n = n_obs if obs is None else len(obs)
            return np.zeros((int(n or 0), 0), dtype=np.float32)
        if obs is None:
            raise InputError(
                f"this model is conditioned on {', '.join(self.columns)}; give values for them"
            )
        blocks = []
        for spec in self.specs:
            col = spec["column"]
            if col not in obs.columns:
                raise InputError(
                    f"condition column {col!r} is missing from the sample metadata; the run was "
                    f"trained with conditions {', '.join(self.columns)}"
                )
            s = obs[col]
            if spec["type"] == "continuous":
                v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    z = (v - spec["mean"]) / spec["sd"]
                blocks.append(np.where(np.isfinite(z), z, 0.0)[:, None])
            else:
                labels = s.astype(str).where(s.notna(), NA_LEVEL).to_numpy()
                index = {lv: i for i, lv in enumerate(spec["levels"])}
                unknown = sorted({lv for lv in labels if lv not in index})
                if unknown:
                    raise InputError(
                        f"condition {col!r} has level {unknown[0]!r} not seen in training; "
                        f"use one of {', '.join(spec['levels'])}"
                    )
                onehot = np.zeros((len(labels), len(spec["levels"])))
                onehot[np.arange(len(labels)), [index[lv] for lv in labels]] = 1.0
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def state(self) -> dict:
        return {"columns": self.columns, "specs": self.specs}

    @classmethod
    def from_state(cls, state: Mapping) -> ConditionEncoder:
        enc = cls(state["columns"])
        enc.specs = [dict(s) for s in state["specs"]]
        return enc


def present_mask(mdata, mod: str) -> np.ndarray:
    """(n_obs,) bool: which of mdata.obs_names have modality ``mod``."""
    return np.asarray(mdata.obs_names.isin(mdata.mod[mod].obs_names), dtype=bool)


def aligned_matrix(mdata, mod: str) -> np.ndarray:
    """(n_obs, n_vars) float64 of modality ``mod`` aligned to mdata.obs_names; absent rows NaN.

    A new array: the caller may change it without touching ``mdata``.
    """
    return _aligned(mdata, mod, keep_float32=False, copy=True)


def _positions(mdata, mod: str) -> np.ndarray:
    """(mdata.n_obs,) row of each sample in mdata.mod[mod], -1 where the sample lacks it."""
    return pd.Index(mdata.mod[mod].obs_names).get_indexer(mdata.obs_names)


def _is_identity(pos: np.ndarray, n_rows: int) -> bool:
    """True when ``pos`` picks every one of ``n_rows`` rows, in order (a gather is a no-op)."""
    return len(pos) == n_rows and bool((pos == np.arange(n_rows)).all())


def _aligned(mdata, mod: str, *, keep_float32: bool, copy: bool) -> np.ndarray:
    """:func:`aligned_matrix`, optionally float32 (for float32 data) and without a copy when
    the modality already has every sample in mdata's order (``copy=False``: read only).

    Rows are gathered BLOCK_ROWS at a time, so the only full-size array is the result.
    """
    adata = mdata.mod[mod]
    what = f"modality {mod!r}"
    pos = _positions(mdata, mod)
    if _is_identity(pos, adata.n_obs):
        out = _as_float(adata.X, what, keep_float32=keep_float32)
        shared = isinstance(adata.X, np.ndarray) and np.may_share_memory(out, adata.X)
        return out.copy() if copy and shared else out
    rows = np.nonzero(pos >= 0)[0]
    first = _as_float(adata.X[pos[rows[:1]]], what, keep_float32=keep_float32)  # dtype, width
    out = np.full((mdata.n_obs, adata.n_vars), np.nan, dtype=first.dtype)
    for i in range(0, len(rows), BLOCK_ROWS):
        r = rows[i : i + BLOCK_ROWS]
        out[r] = _as_float(adata.X[pos[r]], what, keep_float32=keep_float32)
    return out


def feature_hash(var_names: Sequence[str]) -> str:
    """sha256 of the ordered feature names (newline-joined)."""
    return hashlib.sha256("\n".join(map(str, var_names)).encode()).hexdigest()


@dataclass
class ModalityTensors:
    """One modality aligned to all samples (numpy float32). Absent samples have zero rows."""

    x: np.ndarray  # (n_obs, n_in)
    target: np.ndarray  # (n_obs, n_target)
    present: np.ndarray  # (n_obs,) bool
    library: np.ndarray | None = None  # (n_obs, 1)
    mask: np.ndarray | None = None  # (n_obs, n_target)


class Preprocessor:
    """All modalities of a dataset plus the condition encoder, fitted on the training samples."""

    def __init__(
        self,
        transforms: Mapping[str, ModalityTransform],
        conditions: ConditionEncoder | None = None,
    ) -> None:
        self.transforms = dict(transforms)
        self.conditions = conditions or ConditionEncoder()

    @property
    def modalities(self) -> list[str]:
        return list(self.transforms)

    @property
    def kinds(self) -> dict[str, str]:
        return {m: t.kind for m, t in self.transforms.items()}

    @classmethod
    def fit(
        cls,
        mdata,
        *,
        train: np.ndarray | None = None,
        conditions: Sequence[str] = (),
        config: PreprocessConfig | None = None,
        modalities: Sequence[str] | None = None,
    ) -> Preprocessor:
        """Fit on the samples where ``train`` (n_obs,) bool is True (all when None)."""
        config = config or PreprocessConfig()
        n_obs = mdata.n_obs
        train = np.ones(n_obs, dtype=bool) if train is None else np.asarray(train, dtype=bool)
        if train.shape != (n_obs,):
            raise InputError(f"train mask must have shape ({n_obs},), got {train.shape}")
        transforms: dict[str, ModalityTransform] = {}
        for mod in modalities or list(mdata.mod):
            if mod not in mdata.mod:
                raise InputError(
                    f"modality {mod!r} is not in the data; have {', '.join(mdata.mod)}"
                )
            adata = mdata.mod[mod]
            kind = str(adata.uns.get("kind", "continuous"))
            cats = adata.uns.get("categories")
            t = make_transform(
                kind,
                list(adata.var_names),
                config=config,
                modality=mod,
                categories=dict(cats) if cats is not None else None,
            )
            pos = _positions(mdata, mod)
            rows = pos[train & (pos >= 0)]  # training samples' rows of adata, in mdata's order
            if not rows.size:
                raise InputError(
                    f"modality {mod!r} has no samples in the training split; add samples or "
                    "lower the validation/test fractions"
                )
            # fit only reads X: no copy when training uses every row of the modality in order
            X = adata.X if _is_identity(rows, adata.n_obs) else adata.X[rows]
            t.fit(_as_float(X, f"modality {mod!r}", keep_float32=True))
            transforms[mod] = t
        enc = (
            ConditionEncoder(conditions).fit(mdata.obs.iloc[np.nonzero(train)[0]])
            if conditions
            else ConditionEncoder()
        )
        if conditions:  # categorical levels seen only in val/test must not crash later
            full = ConditionEncoder(conditions).fit(mdata.obs)
            for spec, spec_full in zip(enc.specs, full.specs, strict=True):
                if spec["type"] == "categorical":
                    spec["levels"] = spec["levels"] + [
                        lv for lv in spec_full["levels"] if lv not in spec["levels"]
                    ]
        return cls(transforms, enc)

    def check_features(self, mdata, *, run_name: str = "this run") -> None:
        """Raise RunError-style InputError if mdata lacks a modality or has other features."""
        from core.errors import RunError

        for mod, t in self.transforms.items():
            if mod not in mdata.mod:
                raise RunError(
                    f"Run {run_name!r} was trained on modality {mod!r}, which this dataset lacks "
                    f"(it has {', '.join(mdata.mod)}); choose the run's own dataset"
                )
            have = [str(v) for v in mdata.mod[mod].var_names]
            if have != t.var_names:
                what = {"counts": "genes"}.get(t.kind, "features")
                hint = (
                    "the same features in another order"
                    if sorted(have) == sorted(t.var_names)
                    else f"{len(have)}"
                )
                raise RunError(
                    f"Run {run_name!r} was trained on {len(t.var_names)} {what} in {mod!r} but "
                    f"this dataset has {hint}; choose the matching dataset (the one in the run's "
                    "config) or train a new run on this one"
                )

    def tensors(self, mdata) -> dict[str, ModalityTensors]:
        """Transform every modality, aligned to mdata.obs_names -> {mod: ModalityTensors}."""
        arrays = {m: _aligned(mdata, m, keep_float32=True, copy=False) for m in self.transforms}
        return self.tensors_from_arrays(arrays)

    def tensors_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, ModalityTensors]:
        """{mod: (n, n_vars) data-unit matrix, all-NaN row = sample lacks the modality}
        -> {mod: ModalityTensors}. Modalities not given are absent for every sample."""
        n = {len(np.asarray(a)) for a in arrays.values()}
        if len(n) != 1:
            raise InputError("every modality matrix must have the same number of rows (samples)")
        n_obs = n.pop()
        out = {}
        for mod, t in self.transforms.items():
            if mod not in arrays:
                X = np.full((n_obs, len(t.var_names)), np.nan)
            else:  # float32 stays float32; X is only read (no copy when every sample has it)
                X = _as_float(arrays[mod], f"modality {mod!r}", keep_float32=True)
                _check_n_vars(X, len(t.var_names), f"modality {mod!r}")
            pres = ~np.isnan(X).all(axis=1)
            if not pres.all():  # absent rows -> a harmless value (same dtype as X)
                X = np.where(pres[:, None], X, np.asarray(_fill_value(t), dtype=X.dtype))
            enc = t.transform(X)
            x, target, mask = enc.x, enc.target, enc.mask
            x[~pres] = 0.0
            target[~pres] = 0.0
            if mask is not None:
                mask[~pres] = 0.0
            c = np.ascontiguousarray  # row gathers (mini-batches) need C order
            out[mod] = ModalityTensors(
                c(x),
                c(target),
                pres,
                None if enc.library is None else c(enc.library),
                None if mask is None else c(mask),
            )
        return out

    def condition_matrix(self, obs: pd.DataFrame | None, *, n_obs: int | None = None) -> np.ndarray:
        """(n_obs, n_cond) float32 condition matrix (zero columns for unconditional models)."""
        return self.conditions.transform(obs, n_obs=n_obs)

    def state(self) -> dict:
        return {
            "modalities": {m: t.state() for m, t in self.transforms.items()},
            "conditions": self.conditions.state(),
        }

    def to_json(self) -> str:
        """The state as strict JSON (raises ValueError on NaN / Infinity, which it never holds)."""
        return json.dumps(self.state(), allow_nan=False)

    @classmethod
    def from_state(cls, state: Mapping) -> Preprocessor:
        try:
            transforms = {m: transform_from_state(s) for m, s in state["modalities"].items()}
            cond = ConditionEncoder.from_state(state["conditions"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"preprocessing state is incomplete or corrupt ({exc})") from None
        return cls(transforms, cond)


def _fill_value(t: ModalityTransform) -> float:
    """A harmless value for absent rows before transforming (they are zeroed afterwards)."""
    return {"counts": 0.0, "proportion": 0.5, "continuous": 1.0, "categorical": 0.0}[t.kind]


__all__ = [
    "BLOCK_ROWS",
    "SCALE_FACTOR",
    "CategoricalTransform",
    "ConditionEncoder",
    "ContinuousOption",
    "ContinuousTransform",
    "CountsTransform",
    "Encoded",
    "Kind",
    "ModalityTensors",
    "ModalityTransform",
    "PreprocessConfig",
    "Preprocessor",
    "ProportionTransform",
    "aligned_matrix",
    "feature_hash",
    "highly_variable",
    "make_transform",
    "present_mask",
    "transform_from_state",
]
