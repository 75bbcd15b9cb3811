"""Omics data layer: read, validate and assemble multi-omics data into a MuData.

Layout every other module relies on (see CONTRACT.md):

- ``mdata.mod[name]`` is an AnnData holding only the samples that HAVE that modality; ``.X`` is
  a dense ``np.float32`` array (n_obs_mod, n_vars); ``.uns["kind"]`` is a :data:`Kind`.
  Categorical modalities store integer level codes in ``.X`` and the labels in
  ``.uns["categories"] = {var_name: [label0, label1, ...]}`` (0/1 flags -> ``["0", "1"]``).
- ``mdata.obs_names`` is the union of sample ids; :func:`present` says who has a modality.
- ``mdata.obs`` holds the shared metadata: text columns are ``category`` with missing values as
  an explicit ``"NA"`` level, numeric columns are float64 (NaN allowed; see
  :func:`check_condition`).
- ``mdata.uns["dataset"]`` is a short name, ``mdata.uns["warnings"]`` a list of one-line strings.

Kind inference (:func:`infer_kind`), decided per modality over all of its values:

1. any text column -> ``categorical``;
2. integer-valued data: only 0/1 -> ``categorical``; non-negative and at most 2**24 ->
   ``counts``; otherwise (negative values, or so large that float32 cannot tell integers from
   reals, e.g. mass-spec intensities) -> ``continuous``;
3. real values all in [0, 1] -> ``proportion``; otherwise ``continuous``.

A modality whose name contains "methyl" defaults to ``proportion`` (so 0-100 percentages are
reported, not silently modelled as counts). Override any of this with ``kinds={"rna": "counts"}``
(CLI: ``--kind rna=counts``); kinds stored in an .h5ad/.h5mu (``uns["kind"]``) are honoured.

Missing values: numeric modalities (counts, proportion, continuous) must be complete, since the
models need finite inputs; a NaN is an error that says to impute or drop. A sample that lacks a
whole modality is simply left out of that modality's file (it stays in the dataset). In
categorical modalities a missing label becomes the explicit level ``"NA"``.

Metadata: an infinite value in a numeric column becomes missing, with a warning naming the
column and row; dates and times are kept as text labels. Used as a condition
(:func:`check_condition`, called by training), a numeric column must be complete and vary, and
a categorical one needs two levels (``"NA"`` counts as one).

Data matrices refuse date / time columns and (via :func:`core.readers.read_table`) list-valued
cells and multi-level Parquet indexes. Modalities that share no sample id at all get a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import pandas as pd

from core import readers
from core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import anndata
    import mudata

Kind = Literal["counts", "proportion", "continuous", "categorical"]
KINDS: tuple[str, ...] = get_args(Kind)
NUMERIC_KINDS = ("counts", "proportion", "continuous")
ConditionType = Literal["categorical", "continuous"]

MIN_SAMPLES = 10
NA_LEVEL = "NA"
COUNT_MAX = float(2**24)  # float32 represents every integer up to here, and nothing finer above
_INT_TOL = 1e-6
# a file in a directory source is the sample metadata when its stem is one of these, or
# contains "metadata" (sample_metadata.csv, metadata_v2.tsv)
OBS_STEMS = (
    "obs",
    "metadata",
    "meta",
    "samples",
    "clinical",
    "sample_info",
    "sampleinfo",
    "samplesheet",
    "sample_sheet",
    "coldata",
    "phenodata",
)
# a text column with at least this share of distinct labels per sample (and >= 10 labels) is
# probably numbers that did not parse: warn
MANY_LEVELS_SHARE = 0.9


def is_obs_name(path: str | os.PathLike) -> bool:
    """Whether a file in a directory source is the sample metadata (see OBS_STEMS)."""
    s = readers.stem(path).lower()
    return s in OBS_STEMS or "metadata" in s


# --------------------------------------------------------------------------------------------
# Kind inference
# --------------------------------------------------------------------------------------------
def _integer_valued(v: np.ndarray) -> bool:
    return bool(np.all(np.abs(v - np.rint(v)) <= _INT_TOL * np.maximum(1.0, np.abs(v))))


def infer_kind(values: np.ndarray, *, name: str = "") -> Kind:
    """Infer a modality kind from its numeric values (NaN ignored); see the module docstring.

    ``values`` is an array of shape (n_obs, n_vars); ``name`` is the modality name (a name
    containing "methyl" defaults to ``proportion``).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if "methyl" in name.lower():
        return "proportion"
    if v.size == 0:
        return "continuous"
    lo, hi = float(v.min()), float(v.max())
    if _integer_valued(v):
        if np.all((v == 0) | (v == 1)):
            return "categorical"
        if lo >= 0 and hi <= COUNT_MAX:
            return "counts"
        return "continuous"
    if lo >= 0 and hi <= 1:
        return "proportion"
    return "continuous"


# --------------------------------------------------------------------------------------------
# One modality before validation
# --------------------------------------------------------------------------------------------
@dataclass
class ModalityInput:
    """One modality as read, before validation.

    ``values`` is float64 (n_obs, n_vars) for numeric data (NaN = missing) or an object array of
    labels (None / NaN = missing) when ``is_text``. ``kind`` is a declared kind (file metadata
    or a built-in loader); ``kinds=`` in :func:`load` overrides it.
    """

    name: str
    label: str
    obs_names: pd.Index
    var_names: pd.Index
    values: np.ndarray
    kind: str | None = None
    is_text: bool = False
    first_text_cell: tuple[int, int] | None = None  # (row, col) of the first non-numeric cell
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # added to the dataset's warnings


def _where(mi: ModalityInput, i: int, j: int) -> str:
    return f"row {mi.obs_names[i]!r}, column {mi.var_names[j]!r}"


def _first(mask: np.ndarray) -> tuple[int, int]:
    i, j = np.argwhere(mask)[0]
    return int(i), int(j)


def _num_label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _natural_levels(values: Sequence[str]) -> list[str]:
    uniq = list(dict.fromkeys(values))
    try:
        return sorted(uniq, key=float)
    except (TypeError, ValueError):
        return sorted(uniq)


def _is_time_dtype(dtype) -> bool:
    return (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    )


def _table_to_input(
    df: pd.DataFrame, *, name: str, label: str, override: str | None, in_dir: bool = False
) -> ModalityInput:
    """Classify the columns of a table (numeric / text / mixed) into a ModalityInput.

    ``in_dir``: the table is a file of a directory source (changes the advice when it looks
    like sample metadata).
    """
    obs_names = pd.Index([str(i) for i in df.index], dtype=object)
    var_names = pd.Index([str(c) for c in df.columns], dtype=object)
    if df.shape[1] == 0:
        raise InputError(
            f"{label}: modality {name!r} has no feature columns (only the sample id column); "
            "put features in columns, samples in rows"
        )
    if df.shape[0] == 0:
        raise InputError(
            f"{label}: modality {name!r} has a header but no samples (rows); add one row per "
            "sample below the header (sample id in the first column)"
        )
    for j, t in enumerate(df.dtypes):
        if _is_time_dtype(t):
            raise InputError(
                f"{label}: column {var_names[j]!r} of modality {name!r} holds dates or times "
                f"({t}); a data matrix holds numbers or labels: move it to the metadata table "
                "(--obs) as text, or drop it"
            )
    n, p = df.shape
    numeric_dtype = [
        pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes
    ]
    if all(numeric_dtype):
        return ModalityInput(
            name, label, obs_names, var_names, df.to_numpy(dtype=np.float64, na_value=np.nan)
        )

    num = np.full((n, p), np.nan)
    text_cols: list[int] = []
    first_bad: tuple[int, int] | None = None  # first non-numeric cell in a numeric-looking column
    first_text: tuple[int, int] | None = None
    for j, is_num in enumerate(numeric_dtype):
        s = df.iloc[:, j]
        if is_num:
            num[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        if pd.api.types.is_bool_dtype(s.dtype):
            num[:, j] = s.astype(float).to_numpy()
            continue
        parsed = pd.to_numeric(s, errors="coerce")
        present_ = s.notna().to_numpy()
        ok = parsed.notna().to_numpy()
        bad = present_ & ~ok
        if not bad.any():
            num[:, j] = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        if first_text is None:
            first_text = (int(bad.argmax()), j)
        # mostly numbers with a few words: a bad cell; mostly words: a text (label) column
        if first_bad is None and ok.sum() >= 0.5 * present_.sum():
            first_bad = (int(bad.argmax()), j)
        text_cols.append(j)

    mi = ModalityInput(name, label, obs_names, var_names, num)
    mi.first_text_cell = first_text
    if not text_cols:
        return mi
    if override in NUMERIC_KINDS or (first_bad is not None and override != "categorical"):
        i, j = (
            first_bad if (first_bad is not None and override not in NUMERIC_KINDS) else first_text
        )
        value = df.iat[i, j]
        hint = (
            "fix the cell"
            if override in NUMERIC_KINDS
            else f"fix the cell, or declare the modality categorical (--kind {name}=categorical)"
        )
        raise InputError(
            f"{label}: non-numeric value {readers.echo(value)} at row {obs_names[i]!r}, column "
            f"{var_names[j]!r} of modality {name!r}; {hint}"
        )
    # Text modality -> categorical labels. Numeric columns must be integer codes to join it.
    labels = np.empty((n, p), dtype=object)
    text_set = set(text_cols)
    for j in range(p):
        if j in text_set:
            s = df.iloc[:, j]
            labels[:, j] = [None if pd.isna(x) else str(x).strip() for x in s]
            continue
        col = num[:, j]
        finite = col[np.isfinite(col)]
        if override != "categorical" and finite.size and not _integer_valued(finite):
            hint = (
                "if this is the sample metadata, name it obs.csv or pass it with --obs; "
                "otherwise put text and numbers in separate files"
                if in_dir
                else "put them in separate files, or the numbers in the metadata table (--obs)"
            )
            raise InputError(
                f"{label}: modality {name!r} mixes text columns ({var_names[text_cols[0]]!r}) "
                f"with real-valued numeric columns ({var_names[j]!r}); {hint}"
            )
        labels[:, j] = [None if np.isnan(x) else _num_label(x) for x in col]
    for j in text_cols if override is None else ():  # declared categorical: labels meant
        present_labels = [x for x in labels[:, j] if x is not None]
        n_levels = len(set(present_labels))
        if n_levels >= max(10, MANY_LEVELS_SHARE * len(present_labels)):
            mi.warnings.append(
                f"{name}: text feature {var_names[j]!r} has {n_levels} distinct values for "
                f"{len(present_labels)} samples (e.g. {readers.echo(present_labels[0])}); if it "
                "holds numbers, fix the cells that do not parse (decimal mark '.', no units)"
            )
    mi.values = labels
    mi.is_text = True
    return mi


def _adata_to_input(
    adata: anndata.AnnData, *, name: str, label: str, override: str | None = None
) -> ModalityInput:
    import scipy.sparse as sp

    X = adata.X
    if X is None:
        raise InputError(f"{label}: the AnnData has no .X matrix; store the data in .X")
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    obs_names = pd.Index(adata.obs_names.astype(str), dtype=object)
    var_names = pd.Index(adata.var_names.astype(str), dtype=object)
    for what, idx in (
        ("sample id (obs_names)", obs_names),
        ("feature name (var_names)", var_names),
    ):
        dup = idx.duplicated()
        if dup.any():
            raise InputError(
                f"{label}: duplicate {what} {idx[dup][0]!r}; make them unique "
                "(e.g. AnnData.obs_names_make_unique / var_names_make_unique)"
            )
    if X.dtype.kind not in "biuf":
        raise InputError(f"{label}: .X holds {X.dtype} values, not numbers; store numbers in .X")
    declared = adata.uns.get("kind")
    if (
        declared is not None
        and override is None
        and (not isinstance(declared, str) or declared not in KINDS)
    ):
        raise InputError(
            f"{label}: uns['kind'] is {readers.echo(declared)}, not one of {', '.join(KINDS)}; "
            f"fix it in the file (adata.uns['kind'] = 'counts'), delete it to infer the kind, "
            f"or override it (--kind {name}=KIND)"
        )
    declared = declared if isinstance(declared, str) and declared in KINDS else None
    mi = ModalityInput(
        name, label, obs_names, var_names, X.astype(np.float64, copy=False), kind=declared
    )
    cats = adata.uns.get("categories")
    if declared == "categorical" and isinstance(cats, Mapping):
        labels = np.empty(X.shape, dtype=object)
        for j, var in enumerate(var_names):
            levels = [str(x) for x in np.asarray(cats.get(var, []), dtype=object).tolist()]
            col = X[:, j]
            out = []
            for x in col:
                if np.isnan(x):
                    out.append(None)
                elif levels and float(x).is_integer() and 0 <= int(x) < len(levels):
                    out.append(levels[int(x)])
                else:
                    out.append(_num_label(float(x)))
            labels[:, j] = out
        mi.values = labels
        mi.is_text = True
        mi.meta["levels"] = {
            str(k): [str(x) for x in np.asarray(v, dtype=object).tolist()] for k, v in cats.items()
        }
    return mi


# --------------------------------------------------------------------------------------------
# Validation of one modality -> AnnData
# --------------------------------------------------------------------------------------------
def _labels_as_numbers(labels: np.ndarray) -> np.ndarray | None:
    """Object labels (n, p) -> float64 (NaN = missing) when every present label is a number
    ("0", "1", "2.5"), else None."""
    flat = pd.Series(labels.ravel(), dtype=object)
    present_ = flat.notna().to_numpy()
    parsed = pd.to_numeric(flat.where(present_, np.nan), errors="coerce")
    if not (parsed.notna().to_numpy() == present_).all():
        return None
    return parsed.to_numpy(dtype=np.float64, na_value=np.nan).reshape(labels.shape)


def _encode_categorical(
    mi: ModalityInput, labels: np.ndarray, *, fixed: list[str] | None = None
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Labels (n, p) object -> codes (n, p) float32 and {var: levels}. Missing -> "NA" level."""
    n, p = labels.shape
    codes = np.empty((n, p), dtype=np.float32)
    categories: dict[str, list[str]] = {}
    known = mi.meta.get("levels", {})
    for j, var in enumerate(mi.var_names):
        col = labels[:, j]
        missing = pd.isna(col)
        present_vals = [str(x) for x in col[~missing]]
        if fixed is not None:
            levels = list(fixed)
        elif var in known and set(present_vals) <= set(known[var]):
            levels = list(known[var])
        else:
            levels = _natural_levels(present_vals)
        if missing.any() and NA_LEVEL not in levels:
            levels.append(NA_LEVEL)
        filled = np.where(missing, NA_LEVEL, col).astype(str)
        cat = pd.Categorical(filled, categories=levels)
        codes[:, j] = cat.codes.astype(np.float32)
        categories[str(var)] = levels
    return codes, categories


def _encode_numeric_categorical(
    mi: ModalityInput, values: np.ndarray
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Numeric labels (n, p) float64 (NaN = missing) -> codes float32 and {var: levels}.

    Levels are the sorted distinct values per column ("0", "1", "2.5"); a modality holding only
    0/1 gets ["0", "1"] in every column. Missing values become the last level, "NA".
    """
    finite = values[np.isfinite(values)]
    binary = bool(finite.size) and bool(np.all((finite == 0) | (finite == 1)))
    codes = np.empty(values.shape, dtype=np.float32)
    categories: dict[str, list[str]] = {}
    for j, var in enumerate(mi.var_names):
        col = values[:, j]
        missing = np.isnan(col)
        uniq = np.array([0.0, 1.0]) if binary else np.unique(col[~missing])
        levels = [_num_label(u) for u in uniq]
        c = np.searchsorted(uniq, np.where(missing, uniq[0] if uniq.size else 0.0, col))
        if missing.any():
            levels.append(NA_LEVEL)
            c = np.where(missing, len(levels) - 1, c)
        codes[:, j] = c
        categories[str(var)] = levels
    return codes, categories


def _validate_modality(mi: ModalityInput, override: str | None, warn: list[str]) -> anndata.AnnData:
    import anndata as ad

    name, label = mi.name, mi.label
    n, p = mi.values.shape
    if p == 0:
        raise InputError(
            f"{label}: modality {name!r} has no features; it needs at least one column"
        )
    if n == 0:
        raise InputError(
            f"{label}: modality {name!r} has no samples (0 rows); export it again with its "
            "samples, or leave it out"
        )
    kind = override or mi.kind
    categories: dict[str, list[str]] | None = None
    warn.extend(mi.warnings)

    if mi.is_text and kind in NUMERIC_KINDS:
        # e.g. an .h5ad/.h5mu stored as categorical with labels "0", "1", "2" and --kind counts
        numbers = _labels_as_numbers(mi.values)
        if numbers is not None:
            mi = replace(mi, values=numbers, is_text=False, first_text_cell=None)

    if mi.is_text:
        if kind is not None and kind != "categorical":
            i, j = mi.first_text_cell or (0, 0)
            raise InputError(
                f"{label}: non-numeric value {readers.echo(mi.values[i, j])} at "
                f"{_where(mi, i, j)} of modality {name!r} declared {kind}; fix the cell or "
                "declare it categorical"
            )
        kind = "categorical"
        X, categories = _encode_categorical(mi, mi.values)
    else:
        values = mi.values
        inf = np.isinf(values)
        if inf.any():
            i, j = _first(inf)
            raise InputError(
                f"{label}: infinite value ({values[i, j]}) at {_where(mi, i, j)} of modality "
                f"{name!r}; replace it with a finite number or drop the sample"
            )
        if kind is None:
            kind = infer_kind(values, name=name)
        if kind == "categorical":
            X, categories = _encode_numeric_categorical(mi, values)
        else:
            nan = np.isnan(values)
            if nan.any():
                i, j = _first(nan)
                raise InputError(
                    f"{label}: missing value (NaN) at {_where(mi, i, j)} of {kind} modality "
                    f"{name!r}; impute it or drop the sample/feature (a sample without this "
                    "modality should simply be left out of this file)"
                )
            if kind == "counts":
                neg = values < 0
                if neg.any():
                    i, j = _first(neg)
                    raise InputError(
                        f"{label}: negative value {values[i, j]:g} at {_where(mi, i, j)} of "
                        f"counts modality {name!r}; counts must be non-negative integers "
                        f"(use --kind {name}=continuous for transformed data)"
                    )
                frac = np.abs(values - np.rint(values)) > _INT_TOL * np.maximum(1.0, values)
                if frac.any():
                    i, j = _first(frac)
                    raise InputError(
                        f"{label}: non-integer value {values[i, j]:g} at {_where(mi, i, j)} of "
                        f"counts modality {name!r}; give raw integer counts "
                        f"(use --kind {name}=continuous for normalised data)"
                    )
                values = np.rint(values)
            elif kind == "proportion":
                out = (values < 0) | (values > 1)
                if out.any():
                    i, j = _first(out)
                    raise InputError(
                        f"{label}: value {values[i, j]:g} at {_where(mi, i, j)} of proportion "
                        f"(methylation beta) modality {name!r} is outside [0, 1]; divide "
                        f"percentages by 100 (use --kind {name}=continuous for M-values)"
                    )
            X = values.astype(np.float32)

    # all-constant features: dropped with a warning
    const = np.all(X[:1] == X, axis=0) if n > 0 else np.zeros(p, dtype=bool)
    if const.all():
        raise InputError(
            f"{label}: all {p} features of modality {name!r} are constant across its {n} "
            "samples; check the export (no information to learn from)"
        )
    var_names = mi.var_names
    if const.any():
        dropped = [str(v) for v in var_names[const]]
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        warn.append(f"{name}: dropped {len(dropped)} constant feature(s) ({shown})")
        keep = ~const
        X = X[:, keep]
        var_names = var_names[keep]
        if categories is not None:
            categories = {v: categories[v] for v in var_names}
    adata = ad.AnnData(
        X=np.ascontiguousarray(X, dtype=np.float32),
        obs=pd.DataFrame(index=pd.Index(mi.obs_names, dtype=object)),
        var=pd.DataFrame(index=pd.Index([str(v) for v in var_names], dtype=object)),
    )
    adata.uns["kind"] = kind
    if categories is not None:
        adata.uns["categories"] = categories
    return adata


# --------------------------------------------------------------------------------------------
# Metadata (obs)
# --------------------------------------------------------------------------------------------
def _obs_column(s: pd.Series) -> pd.Series:
    """Numeric -> float64; anything else -> category with an explicit "NA" level.

    Dates and times become text labels (their ISO form), never nanosecond numbers.
    """
    if _is_time_dtype(s.dtype):
        s = s.astype(str).where(s.notna(), None)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(np.float64)
    if isinstance(s.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in s.cat.categories]
        values = s.astype(object)
    else:
        values = s.astype(object)
        parsed = pd.to_numeric(values, errors="coerce")
        if values.notna().any() and (parsed.notna() == values.notna()).all():
            return parsed.astype(np.float64)
        levels = _natural_levels([str(x).strip() for x in values[values.notna()]])
    labels = [NA_LEVEL if pd.isna(x) else str(x).strip() for x in values]
    levels = list(dict.fromkeys(levels))
    if NA_LEVEL in labels and NA_LEVEL not in levels:
        levels.append(NA_LEVEL)
    used = set(labels)
    levels = [lv for lv in levels if lv in used] or levels
    return pd.Series(pd.Categorical(labels, categories=levels), index=s.index, name=s.name)


def _join_obs(
    frames: Sequence[tuple[str, pd.DataFrame, bool]], sample_ids: pd.Index, warn: list[str]
) -> pd.DataFrame:
    """Join metadata tables on sample id. ``frames``: (label, table, is_user_metadata_file)."""
    out = pd.DataFrame(index=sample_ids)
    source: dict[str, str] = {}  # column -> the file it came from (for messages)
    for label, df, explicit in frames:
        if df.shape[1] == 0:
            continue
        df = df.copy()
        df.index = pd.Index(df.index.astype(str), dtype=object)
        if df.index.duplicated().any():
            dup = df.index[df.index.duplicated()][0]
            raise InputError(
                f"{label}: duplicate sample id {dup!r} in the metadata; ids must be unique"
            )
        match = df.index.isin(sample_ids)
        if explicit:
            if not match.any():
                raise InputError(
                    f"{label}: none of its {len(df)} sample ids (e.g. {df.index[0]!r}) match a "
                    f"sample in the data (e.g. {sample_ids[0]!r}); the first column must hold "
                    "the same sample ids as the data files"
                )
            n_missing = int((~sample_ids.isin(df.index)).sum())
            if n_missing:
                warn.append(
                    f"{Path(label).name}: no metadata for {n_missing} sample(s); "
                    "their values are NA"
                )
            n_extra = int((~match).sum())
            if n_extra:
                warn.append(
                    f"{Path(label).name}: ignored {n_extra} metadata row(s) whose ids "
                    "match no sample"
                )
        df = df.reindex(sample_ids)
        for col in df.columns:
            col_s = str(col)
            if col_s in out.columns:
                out[col_s] = out[col_s].astype(object).where(out[col_s].notna(), df[col])
            else:
                out[col_s] = df[col]
                source[col_s] = label
    for col in list(out.columns):
        out[col] = _obs_column(out[col])
        s = out[col]
        if not isinstance(s.dtype, pd.CategoricalDtype):
            inf = np.isinf(s.to_numpy(dtype=np.float64))
            if inf.any():
                i = int(inf.argmax())
                more = f" and {int(inf.sum()) - 1} more" if inf.sum() > 1 else ""
                warn.append(
                    f"{Path(source.get(col, 'metadata')).name}: infinite value "
                    f"({s.iat[i]:g}) in metadata column {col!r} at row {sample_ids[i]!r}{more}; "
                    "treated as missing (replace it with a finite number to use it)"
                )
                out[col] = s.where(~inf, np.nan)
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            if len(s.cat.categories) == 1:
                warn.append(
                    f"metadata column {col!r} has a single level "
                    f"({s.cat.categories[0]!r}); it cannot be a condition"
                )
        else:
            n_nan = int(s.isna().sum())
            if n_nan:
                warn.append(f"metadata column {col!r} has {n_nan} missing value(s)")
    return out


def _as_obs_table(path: str, *, limit: int | None) -> pd.DataFrame:
    if Path(path).is_dir():
        raise InputError(
            f"{path}: is a directory; the metadata option (--obs) takes one table file "
            "(first column the sample id), e.g. obs.csv; a directory goes to --data"
        )
    ext = readers.extension(path)
    if ext == ".h5ad":
        adata = readers.read_h5ad(path, limit=limit)
        return adata.obs.copy()
    return readers.read_table(path, limit=limit)


# --------------------------------------------------------------------------------------------
# Sources -> inputs
# --------------------------------------------------------------------------------------------
def _is_named(source: str) -> bool:
    key, sep, value = source.partition("=")
    return (
        bool(sep)
        and bool(key)
        and bool(value)
        and "/" not in key
        and "\\" not in key
        and not os.path.exists(source)
    )


def _check_mod_name(name: str, label: str) -> str:
    name = name.strip()
    if not name or any(c in name for c in ":/\\") or name.startswith("."):
        raise InputError(
            f"{label}: {name!r} is not a valid modality name; use letters, digits, '_' or '-'"
        )
    return name


@dataclass
class _Collected:
    raw: list[tuple[str, str, object]] = field(default_factory=list)  # (name, label, df|adata)
    obs: list[tuple[str, pd.DataFrame, bool]] = field(default_factory=list)
    warn: list[str] = field(default_factory=list)
    in_dir: set[str] = field(default_factory=set)  # labels of files found in a directory source


def _collect_file(path: str, name: str | None, col: _Collected, limit: int | None) -> None:
    p = readers.check_file(path, limit=limit)
    ext = readers.extension(p)
    label = str(path)
    if ext == ".h5mu":
        if name is not None:
            raise InputError(f"{label}: an .h5mu holds several modalities; pass it without MOD=")
        mdata = readers.read_h5mu(p, limit=limit)
        if not mdata.mod:
            raise InputError(
                f"{label}: the MuData holds no modalities; write it with at least one, e.g. "
                "MuData({'rna': adata}).write(path), or pass an .h5ad / table instead"
            )
        for mod, adata in mdata.mod.items():
            col.raw.append((_check_mod_name(mod, label), f"{label} (modality {mod})", adata))
        obs = mdata.obs.copy()
        col.obs.append((label, obs, False))
        return
    mod = _check_mod_name(name if name is not None else readers.stem(p), label)
    if ext == ".h5ad":
        adata = readers.read_h5ad(p, limit=limit)
        col.raw.append((mod, label, adata))
        col.obs.append((label, adata.obs.copy(), False))
        return
    col.raw.append((mod, label, readers.read_table(p, limit=limit)))


def _collect_dir(path: Path, col: _Collected, limit: int | None, obs_given: bool) -> None:
    files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    found = False
    for f in files:
        ext = readers.extension(f)
        if ext not in readers.TABLE_EXTS + (".h5ad",):
            col.warn.append(f"{f}: skipped (not a .csv/.tsv/.parquet/.h5ad file)")
            continue
        if is_obs_name(f) and ext != ".h5ad":
            if obs_given:
                col.warn.append(f"{f}: ignored; the metadata table given with obs= is used")
            else:
                col.obs.append((str(f), readers.read_table(f, limit=limit), True))
            continue
        col.in_dir.add(str(f))
        _collect_file(str(f), None, col, limit)
        found = True
    if not found:
        raise InputError(
            f"{path}: the directory holds no modality files; add <modality>.csv/.tsv/.parquet "
            "files (samples in rows, first column the sample id) and optionally obs.csv"
        )


def _dataset_name(sources: Sequence[str]) -> str:
    paths = [Path(s.partition("=")[2] if _is_named(s) else s) for s in sources]
    if len(paths) == 1:
        p = paths[0]
        return p.resolve().name if p.is_dir() else readers.stem(p)
    parents = {p.resolve().parent for p in paths}
    if len(parents) == 1:
        return parents.pop().name
    return "+".join(readers.stem(p) for p in paths)


def load(
    sources: Sequence[str] | str,
    *,
    obs: str | os.PathLike | None = None,
    kinds: Mapping[str, str] | None = None,
    max_file_bytes: int | None = None,
    min_samples: int = MIN_SAMPLES,
) -> mudata.MuData:
    """Load, validate and assemble data into a MuData (layout: see the module docstring).

    ``sources``: built-in dataset names (alone), ``.h5ad`` / ``.h5mu`` paths, ``MODALITY=PATH``
    for a CSV / TSV / Parquet / .h5ad matrix, a bare table path (modality = file stem), or a
    directory of ``<modality>.<csv|tsv|parquet|h5ad>`` files plus a metadata table (a file
    named obs / metadata / meta / samples / clinical / sample_info / coldata, or any name
    containing "metadata", e.g. ``obs.csv``; see :func:`is_obs_name`).
    ``obs``: metadata table (first column the sample id) joined on sample id.
    ``kinds``: {modality: kind} overrides. ``max_file_bytes``: per-file size limit (default
    ``$OLE_MAX_FILE_MB`` MB). ``min_samples``: fewer samples is an error (to train, a dataset
    needs a train / validation / test split). Raises :class:`InputError` with a one-line message.
    """
    from core import datasets

    if isinstance(sources, str | os.PathLike):
        sources = [str(sources)]
    sources = [str(s).strip() for s in sources if str(s).strip()]
    if not sources:
        raise InputError("no data given; pass a built-in dataset name or a file (--data SRC)")
    kinds = dict(kinds or {})
    for mod, kind in kinds.items():
        if kind not in KINDS:
            raise InputError(
                f"unknown kind {kind!r} for modality {mod!r}; choose one of {', '.join(KINDS)}"
            )
    limit = readers.max_file_bytes(max_file_bytes)

    builtin = [s for s in sources if s in datasets.REGISTRY]
    if builtin:
        if len(sources) > 1:
            raise InputError(
                f"built-in dataset {builtin[0]!r} cannot be combined with other "
                "data sources; pass it alone"
            )
        if kinds:
            raise InputError(
                f"built-in dataset {builtin[0]!r} has fixed kinds; --kind applies to files only"
            )
        mdata = datasets.load_builtin(builtin[0])
        if obs is not None:
            warn = list(mdata.uns.get("warnings", []))
            extra = _join_obs(
                [(str(obs), _as_obs_table(str(obs), limit=limit), True)], mdata.obs_names, warn
            )
            merged = mdata.obs.copy()
            for c in extra.columns:
                merged[c] = extra[c]
            mdata.obs = merged
            mdata.uns["warnings"] = warn
        return mdata

    col = _Collected()
    for s in sources:
        key, sep, value = s.partition("=")
        if sep and key.strip() and not value.strip() and not os.path.exists(s):
            raise InputError(
                f"{s!r}: no path after '='; write MODALITY=PATH, e.g. {key.strip()}=data/rna.csv"
            )
        if _is_named(s):
            name, _, path = s.partition("=")
            _collect_file(path.strip(), name.strip(), col, limit)
        elif Path(s).is_dir():
            _collect_dir(Path(s), col, limit, obs_given=obs is not None)
        elif not Path(s).exists() and readers.extension(s) == "":
            raise InputError(
                f"{s!r} is neither a built-in dataset ({', '.join(datasets.REGISTRY)}) nor an "
                "existing file or directory; check the name or path"
            )
        else:
            _collect_file(s, None, col, limit)
    if obs is not None:
        col.obs.append((str(obs), _as_obs_table(str(obs), limit=limit), True))

    names = [name for name, _, _ in col.raw]
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        raise InputError(
            f"modality {dup[0]!r} is given twice; name each modality once (MODALITY=PATH)"
        )
    unknown = [m for m in kinds if m not in names]
    if unknown:
        raise InputError(
            f"kind given for unknown modality {unknown[0]!r}; the data has "
            f"modalities: {', '.join(names)}"
        )

    inputs = []
    for name, label, obj in col.raw:
        try:
            if isinstance(obj, pd.DataFrame):
                mi = _table_to_input(
                    obj,
                    name=name,
                    label=label,
                    override=kinds.get(name),
                    in_dir=label in col.in_dir,
                )
            else:
                mi = _adata_to_input(obj, name=name, label=label, override=kinds.get(name))
        except InputError:
            raise
        except (ValueError, TypeError) as exc:  # backstop: a table shape nobody foresaw
            raise _unexpected(label, name, exc) from None
        inputs.append(mi)
    return assemble(
        inputs,
        obs=col.obs,
        kinds=kinds,
        dataset=_dataset_name(sources),
        min_samples=min_samples,
        warnings_=col.warn,
    )


def _unexpected(label: str, name: str, exc: Exception) -> InputError:
    reason = readers.exc_reason(exc)
    return InputError(
        f"{label}: could not read modality {name!r} ({type(exc).__name__}: {reason}); every "
        "cell must be one number or label, samples in rows, first column the sample id"
    )


def _file_of(label: str) -> str:
    """The file part of an input label ("data.h5mu (modality rna)" -> "data.h5mu")."""
    return label.split(" (modality ", 1)[0]


def _warn_disjoint_ids(adatas: Mapping[str, anndata.AnnData], warn: list[str]) -> None:
    """Warn for every pair of modalities that shares no sample id (ids spelled differently?)."""
    names = list(adatas)
    for a_i, a in enumerate(names):
        ids_a = pd.Index(adatas[a].obs_names.astype(str))
        for b in names[a_i + 1 :]:
            ids_b = pd.Index(adatas[b].obs_names.astype(str))
            if not len(ids_a) or not len(ids_b) or ids_a.isin(ids_b).any():
                continue
            case = ids_a.str.lower().isin(ids_b.str.lower()).any()
            hint = (
                "they differ only in upper/lower case"
                if case
                else "samples are matched by id across files"
            )
            warn.append(
                f"modalities {a!r} and {b!r} share no sample id (e.g. {ids_a[0]!r} in {a}, "
                f"{ids_b[0]!r} in {b}); {hint}: spell the ids the same in every file"
            )


def assemble(
    inputs: Sequence[ModalityInput],
    *,
    obs: Sequence[tuple[str, pd.DataFrame, bool]] | pd.DataFrame | None = None,
    kinds: Mapping[str, str] | None = None,
    dataset: str,
    min_samples: int = MIN_SAMPLES,
    warnings_: Sequence[str] = (),
) -> mudata.MuData:
    """Validate modalities and build the MuData (built-in loaders use this too).

    ``obs``: a DataFrame indexed by sample id, or (label, table, is_user_file) tuples.
    """
    import mudata as md

    kinds = dict(kinds or {})
    warn = list(warnings_)
    adatas = {}
    for mi in inputs:
        if mi.name in adatas:
            raise InputError(f"modality {mi.name!r} is given twice; name each modality once")
        try:
            adatas[mi.name] = _validate_modality(mi, kinds.get(mi.name), warn)
        except InputError:
            raise
        except (ValueError, TypeError) as exc:  # backstop, as in load()
            raise _unexpected(mi.label, mi.name, exc) from None
    if not adatas:
        raise InputError(
            "no modalities found in the data; pass at least one data file (--data SRC)"
        )
    _warn_disjoint_ids(adatas, warn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.MuData(adatas)
    n = mdata.n_obs
    if n < min_samples:
        files = list(dict.fromkeys(_file_of(mi.label) for mi in inputs))
        shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        raise InputError(
            f"{shown}: dataset {dataset!r} has only {n} samples; at least {min_samples} are "
            "needed to split into train / validation / test sets: add samples (rows)"
        )
    frames = [("metadata", obs, False)] if isinstance(obs, pd.DataFrame) else list(obs or [])
    sample_ids = pd.Index(mdata.obs_names.astype(str), dtype=object)
    mdata.obs = _join_obs(frames, sample_ids, warn)
    mdata.uns["dataset"] = dataset
    mdata.uns["warnings"] = warn
    return mdata


# --------------------------------------------------------------------------------------------
# Accessors
# --------------------------------------------------------------------------------------------
def _check_mod(mdata: mudata.MuData, mod: str) -> anndata.AnnData:
    if mod not in mdata.mod:
        raise InputError(
            f"no modality {mod!r} in dataset {mdata.uns.get('dataset', '?')!r}; "
            f"available: {', '.join(mdata.mod)}"
        )
    return mdata.mod[mod]


def present(mdata: mudata.MuData, mod: str) -> np.ndarray:
    """Which samples have modality ``mod``: bool array of shape (n_obs,), in obs_names order."""
    adata = _check_mod(mdata, mod)
    return np.asarray(mdata.obs_names.isin(adata.obs_names), dtype=bool)


def modality_matrix(mdata: mudata.MuData, mod: str) -> np.ndarray:
    """``mdata.mod[mod].X`` aligned to ``mdata.obs_names``: float32 (n_obs, n_vars), NaN rows
    for samples that lack the modality."""
    import scipy.sparse as sp

    adata = _check_mod(mdata, mod)
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    out = np.full((mdata.n_obs, adata.n_vars), np.nan, dtype=np.float32)
    idx = mdata.obs_names.get_indexer(adata.obs_names)
    out[idx] = X
    return out


def kind_of(mdata: mudata.MuData, mod: str) -> Kind:
    """The kind of modality ``mod`` (``.uns["kind"]``)."""
    return str(_check_mod(mdata, mod).uns["kind"])  # type: ignore[return-value]


def _strata(mdata: mudata.MuData, column: str) -> np.ndarray:
    if column not in mdata.obs.columns:
        raise InputError(
            f"no metadata column {column!r} to stratify by; available: "
            f"{', '.join(map(str, mdata.obs.columns)) or '(none)'}"
        )
    s = mdata.obs[column]
    if isinstance(s.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        return pd.Categorical(s.astype(str)).codes.astype(np.int64)
    v = s.to_numpy(dtype=np.float64)
    if np.unique(v[np.isfinite(v)]).size > 10:  # continuous: quintile bins
        edges = np.nanquantile(v, [0.2, 0.4, 0.6, 0.8])
        codes = np.searchsorted(edges, v, side="right")
    else:
        codes = pd.Categorical(v).codes.astype(np.int64)
    return np.where(np.isfinite(v), codes, -1).astype(np.int64)


def _allocate(
    sizes: np.ndarray, total: int, caps: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Largest-remainder allocation of ``total`` over groups, proportional to sizes, <= caps."""
    quota = total * sizes / max(1, sizes.sum())
    out = np.minimum(np.floor(quota).astype(np.int64), caps)
    jitter = rng.random(len(sizes)) * 1e-9
    while out.sum() < total:
        room = out < caps
        if not room.any():
            break
        priority = np.where(room, quota - out + jitter, -np.inf)
        out[int(np.argmax(priority))] += 1
    return out


def split_samples(
    mdata: mudata.MuData,
    *,
    stratify: str | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Seeded train / validation / test assignment, stratified by an obs column.

    Returns a str array of shape (n_obs,) with values "train" / "val" / "test" in obs_names
    order. Each stratum is split in proportion (largest remainders); every split with a
    positive fraction gets at least one sample when there are at least 3 samples, and train
    always keeps at least one. Numeric columns with >10 distinct values are cut in quintiles.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise InputError(
            f"val_frac={val_frac} and test_frac={test_frac} must be in [0, 1) and "
            "sum to less than 1"
        )
    n = mdata.n_obs
    rng = np.random.default_rng(seed)
    groups = np.zeros(n, dtype=np.int64) if stratify is None else _strata(mdata, stratify)
    uniq, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(uniq)).astype(np.int64)

    def target(frac: float) -> int:
        t = int(round(frac * n))
        return max(t, 1) if frac > 0 and n >= 3 else t

    n_test, n_val = target(test_frac), target(val_frac)
    while n_test + n_val > n - 1 and (n_test or n_val):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    keep = np.minimum(sizes, 1)  # a train sample per stratum when the budget allows
    test_g = _allocate(sizes, n_test, sizes - keep, rng)
    if test_g.sum() < n_test:
        test_g = _allocate(sizes, n_test, sizes, rng)
    val_g = _allocate(sizes, n_val, np.maximum(sizes - test_g - keep, 0), rng)
    if val_g.sum() < n_val:
        val_g = _allocate(sizes, n_val, sizes - test_g, rng)
    out = np.full(n, "train", dtype="<U5")
    for g in range(len(uniq)):
        idx = rng.permutation(np.flatnonzero(inverse == g))
        out[idx[: test_g[g]]] = "test"
        out[idx[test_g[g] : test_g[g] + val_g[g]]] = "val"
    return out


def check_condition(mdata: mudata.MuData, column: str) -> ConditionType:
    """Check that obs ``column`` can be a model condition; return its type.

    Categorical columns need at least two levels ("NA" counts as a level, so a missing label
    is an explicit level, never a crash); continuous columns must be complete (every value
    finite: a missing number is not filled in silently) and not constant. Raises InputError
    otherwise. Training calls this for every condition column before fitting.
    """
    if column not in mdata.obs.columns:
        raise InputError(
            f"condition column {column!r} is not in the sample metadata; available: "
            f"{', '.join(map(str, mdata.obs.columns)) or '(none)'}"
        )
    s = mdata.obs[column]
    if isinstance(s.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        levels = pd.unique(s.astype(str))
        if len(levels) < 2:
            raise InputError(
                f"metadata column {column!r} has a single level ({levels[0]!r}); a "
                "condition needs at least two levels: choose another column"
            )
        return "categorical"
    v = s.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        raise InputError(
            f"metadata column {column!r} has {int(bad.sum())} missing value(s) (first at row "
            f"{str(mdata.obs_names[int(bad.argmax())])!r}); fill them in (or drop those "
            "samples) before using it as a condition"
        )
    if np.nanmax(v) == np.nanmin(v):
        raise InputError(
            f"metadata column {column!r} is constant; a condition must vary: choose another column"
        )
    return "continuous"


def summarize(mdata: mudata.MuData) -> pd.DataFrame:
    """One row per modality: modality, kind, n_obs, n_vars, n_missing (samples without it)."""
    rows = []
    for mod, adata in mdata.mod.items():
        rows.append(
            {
                "modality": mod,
                "kind": str(adata.uns.get("kind", "")),
                "n_obs": int(adata.n_obs),
                "n_vars": int(adata.n_vars),
                "n_missing": int(mdata.n_obs - adata.n_obs),
            }
        )
    return pd.DataFrame(rows, columns=["modality", "kind", "n_obs", "n_vars", "n_missing"])


def describe_obs(mdata: mudata.MuData) -> list[dict]:
    """Metadata columns: [{column, type: "categorical"|"continuous", n_levels|None, n_missing}]."""
    out = []
    for col in mdata.obs.columns:
        s = mdata.obs[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            n_na = int((s.astype(str) == NA_LEVEL).sum())
            out.append(
                {
                    "column": str(col),
                    "type": "categorical",
                    "n_levels": len(s.cat.categories),
                    "n_missing": n_na,
                }
            )
        else:
            out.append(
                {
                    "column": str(col),
                    "type": "continuous",
                    "n_levels": None,
                    "n_missing": int(s.isna().sum()),
                }
            )
    return out


def format_summary(mdata: mudata.MuData) -> str:
    """Human-readable summary (used by ``validate`` and ``datasets``)."""
    table = summarize(mdata)
    lines = [f"dataset: {mdata.uns.get('dataset', '?')}  ({mdata.n_obs} samples)"]
    lines.append(table.to_string(index=False))
    obs = describe_obs(mdata)
    if obs:
        parts = [
            f"{o['column']} ({o['n_levels']} levels)"
            if o["type"] == "categorical"
            else f"{o['column']} (numeric)"
            for o in obs
        ]
        lines.append("metadata: " + ", ".join(parts))
    for w in mdata.uns.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def validate_command(args) -> tuple[str, dict]:
    """CLI handler for ``python -m core validate`` (see core/cli.py)."""
    from core.cli import parse_assignments

    kinds = parse_assignments(getattr(args, "kind", None), flag="--kind")
    mdata = load(args.data, obs=args.obs, kinds=kinds)
    table = summarize(mdata)
    payload = {
        "dataset": str(mdata.uns.get("dataset", "")),
        "modalities": table.to_dict(orient="records"),
        "n_obs": int(mdata.n_obs),
        "obs": describe_obs(mdata),
        "warnings": [str(w) for w in mdata.uns.get("warnings", [])],
    }
    return format_summary(mdata), payload
