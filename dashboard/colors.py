"""What the Embeddings map can be coloured by, and the values for each choice.

Choices are strings (they go into the URL): ``none``, ``obs:<column>``, ``feature`` (the
feature picked in a second, searchable box, as ``<modality>:<feature>``) and ``error:<mod>``
(per-sample reconstruction error; ``error:all`` averages the modalities).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.plots import ColorKind

NONE, FEATURE = "none", "feature"


@dataclass(frozen=True)
class Coloring:
    values: np.ndarray | pd.Series | None  # (n_obs,)
    kind: ColorKind
    name: str


def options(obs: pd.DataFrame, error_columns: list[str]) -> list[str]:
    return (
        [f"obs:{c}" for c in obs.columns]
        + [FEATURE]
        + [f"error:{m}" for m in error_columns]
        + [NONE]
    )


def label(option: str) -> str:
    if option == NONE:
        return "nothing (one colour)"
    if option == FEATURE:
        return "a feature's value..."
    prefix, _, name = option.partition(":")
    if prefix == "error":
        return "reconstruction error (" + ("all modalities" if name == "all" else name) + ")"
    return f"metadata: {name}"


def is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or isinstance(
        series.dtype, pd.CategoricalDtype
    )


def feature_options(var_names: dict[str, list[str]]) -> list[str]:
    """Every feature of every modality as ``<modality>:<feature>``."""
    return [f"{mod}:{v}" for mod, names in var_names.items() for v in names]


def feature_coloring(feature: str, matrix_of, data) -> Coloring:
    """Values of ``<mod>:<feature>`` (NaN for samples without the modality). Categorical
    modalities map level codes to their labels (missing -> "NA"). data() -> the MuData."""
    mod, _, var = feature.partition(":")
    adata = data().mod[mod]
    col = list(adata.var_names).index(var)
    values = matrix_of(mod)[:, col]
    if adata.uns.get("kind") == "categorical":
        levels = list(adata.uns.get("categories", {}).get(var, []))
        labels = np.array(["NA"] * len(values), dtype=object)
        ok = np.isfinite(values)
        codes = values[ok].astype(int)
        labels[ok] = [levels[c] if 0 <= c < len(levels) else str(c) for c in codes]
        return Coloring(labels, "categorical", feature)
    return Coloring(values, "continuous", feature)


def coloring(
    option: str, *, obs: pd.DataFrame, feature: str | None, matrix_of, data, errors
) -> Coloring:
    """Resolve a colour choice to values aligned with ``obs`` (n_obs,).

    matrix_of(mod) -> (n_obs, n_vars) matrix; data() -> the MuData; errors() -> DataFrame of
    per-sample errors. Each is called only when the choice needs it (loading the data and
    reconstructing are the expensive parts).
    """
    if option.startswith("obs:") and option[4:] in obs:
        series = obs[option[4:]]
        if is_categorical(series):
            return Coloring(series, "categorical", option[4:])
        return Coloring(series.to_numpy(dtype=float), "continuous", option[4:])
    if option == FEATURE and feature:
        return feature_coloring(feature, matrix_of, data)
    if option.startswith("error:"):
        frame = errors()
        name = option[6:]
        if name in frame:
            title = "recon. error" + ("" if name == "all" else f" ({name})")
            return Coloring(frame[name].to_numpy(dtype=float), "continuous", title)
    return Coloring(None, "none", "")
