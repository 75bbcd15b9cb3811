"""Generation page parts: condition inputs (bound to the URL), checks in the UI's words, the
quality report and the downloads. Streamlit calls live here so pages/generation.py stays thin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import state


def condition_inputs(gen, columns: Sequence[str]) -> dict[str, Any]:
    """One input per chosen condition column, bound to the URL (``gen_value_<column>``):
    a multiselect of levels for a categorical column (several levels -> one condition set per
    level), a number for a numeric one. Returns {column: [levels] or float}."""
    values: dict[str, Any] = {}
    for col, cell in zip(columns, st.columns(max(1, len(columns))), strict=False):
        bound = state.bound(state.GEN_VALUE_PREFIX + col)
        levels = gen.levels(col)
        if levels is None:
            median = float(np.nanmedian(pd.to_numeric(gen.obs[col], errors="coerce")))
            values[col] = float(cell.number_input(col, value=median, **bound))
        else:
            values[col] = cell.multiselect(
                col, levels, default=levels[:1], placeholder="choose levels", **bound
            )
    return values


def problem(mode: str, values: Mapping[str, Any], model_conditions: Sequence[str]) -> str | None:
    """Why these settings cannot be generated, in the page's words (None when they can)."""
    empty = [c for c, v in values.items() if isinstance(v, list) and not v]
    if empty:
        return f"Choose at least one level of {', '.join(empty)}, or remove it from 'Condition on'."
    if mode == "prior":
        other = [c for c in values if c not in model_conditions]
        if other:
            have = ", ".join(model_conditions) or "nothing"
            return (
                f"Prior mode can only steer the model's own conditions ({have}), not "
                f"{', '.join(other)}. Set Mode to posterior, or remove {', '.join(other)} from "
                "'Condition on'."
            )
    return None


def report_rows(report) -> pd.DataFrame:
    """The report's headline table for display: integers as integers, n/a when skipped."""
    from core.evaluate import format_value

    table = report.table.copy()
    table["value"] = [format_value(report.summary[k]) for k in table["metric"]]
    return table


def show_report(report, label: str) -> None:
    """Verdict, notes, the headline table and (when computed) the per-class classifier table."""
    (st.success if report.verdict.startswith("Good") else st.warning)(report.verdict)
    for note in report.notes:
        st.caption(f":material/info: {note}")
    t1, t2 = st.columns([2, 3])
    t1.dataframe(report_rows(report), hide_index=True, width="stretch")
    if report.classifiers.empty:
        t2.info("No classifier tables: see the note above.", icon=":material/info:")
    else:
        t2.dataframe(report.classifiers, hide_index=True, width="stretch")
    st.caption(f"Label: {label}. TSTR = train on synthetic, test on real held-out samples.")


def downloads(syn, stem: str) -> None:
    """CSV / h5ad of one modality, serialised only when clicked (never on a rerun)."""
    from core import generate as gen_core

    d1, d2, d3 = st.columns(3)
    mod = d1.selectbox("Modality to download", list(syn.mod))
    for cell, fmt in ((d2, "csv"), (d3, "h5ad")):
        cell.download_button(
            fmt.upper(),
            lambda fmt=fmt: gen_core.to_bytes(syn, fmt=fmt, mod=mod),
            f"{stem}_{mod}_generated.{fmt}",
            mime="text/csv" if fmt == "csv" else "application/octet-stream",
            on_click="ignore",
            icon=":material/download:",
        )
