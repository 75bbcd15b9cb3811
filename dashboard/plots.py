"""Plotly figure builders: data in, ``go.Figure`` out. No ``st.*`` calls here.

Large point clouds use WebGL traces (``go.Scatter3d`` / ``go.Scattergl``). Categorical colours
become one trace per level (discrete colours + legend); continuous colours one trace with a
colour scale and a colour bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ColorKind = Literal["categorical", "continuous", "none"]
PALETTE = (
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
    "#4b5563", "#65a30d", "#7c3aed", "#0d9488", "#b91c1c", "#1d4ed8", "#a16207", "#be185d",
)  # fmt: skip
NA_COLOR = "#c4c4c4"
MAX_LEGEND_LEVELS = 40
_LAYOUT = {"template": "plotly_white", "margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
LAYOUT = _LAYOUT  # shared look for figures built elsewhere: fig.update_layout(**plots.LAYOUT)


NA_LEVELS = ("NA", "nan")


def category_levels(labels) -> list[str]:
    """Display order of categorical levels, the same on every page: a pandas Categorical's own
    category order (levels present only), else natural sort; missing ("NA") last."""
    text = pd.Series(np.asarray(labels, dtype=object)).astype(str)
    present = set(text)
    if isinstance(labels, pd.Series) and isinstance(labels.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in labels.cat.categories if str(c) in present]
        levels += sorted(present - set(levels), key=_natural_key)
    else:
        levels = sorted(present, key=_natural_key)
    return [lv for lv in levels if lv not in NA_LEVELS] + [lv for lv in levels if lv in NA_LEVELS]


def level_colors(levels: Sequence[str]) -> dict[str, str]:
    """A colour per level (in :func:`category_levels` order): the palette in turn, NA grey."""
    out, i = {}, 0
    for lv in levels:
        if lv in NA_LEVELS:
            out[lv] = NA_COLOR
        else:
            out[lv] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _hover_text(values: pd.Series) -> np.ndarray:
    """Metadata values as hover text: whole numbers without ".0", others to 4 significant
    digits, missing as "NA"."""
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(dtype=float)
        ok = np.isfinite(v)
        whole = ok.any() and np.all(v[ok] == np.round(v[ok])) and np.abs(v[ok]).max() < 1e15
        text = np.array(["NA"] * len(v), dtype=object)
        text[ok] = [f"{x:.0f}" if whole else f"{x:.4g}" for x in v[ok]]
        return text
    return values.astype(str).to_numpy()


def _hover(hover: pd.DataFrame | None, idx: np.ndarray) -> tuple[np.ndarray | None, str]:
    """customdata (len(idx), 1 + n_cols) + hovertemplate: sample id, then metadata columns."""
    if hover is None:
        return None, "%{x:.3g}, %{y:.3g}<extra></extra>"
    frame = hover.iloc[idx, :12]
    columns = [frame.index.astype(str).to_numpy()]
    columns += [_hover_text(frame[c]) for c in frame.columns]
    data = np.column_stack(columns).astype(object)
    lines = ["<b>%{customdata[0]}</b>"]
    lines += [f"{c}: %{{customdata[{i + 1}]}}" for i, c in enumerate(frame.columns)]
    return data, "<br>".join(lines) + "<extra></extra>"


def _trace(
    coords: np.ndarray,
    idx: np.ndarray,
    *,
    name: str | None,
    marker: dict,
    hover: pd.DataFrame | None,
    showlegend: bool,
) -> go.BaseTraceType:
    customdata, template = _hover(hover, idx)
    common = dict(
        mode="markers",
        name=name,
        marker=marker,
        customdata=customdata,
        hovertemplate=template,
        showlegend=showlegend,
    )
    if coords.shape[1] >= 3:
        return go.Scatter3d(x=coords[idx, 0], y=coords[idx, 1], z=coords[idx, 2], **common)
    return go.Scattergl(x=coords[idx, 0], y=coords[idx, 1], **common)


def embedding_scatter(
    coords: np.ndarray,
    *,
    color: np.ndarray | pd.Series | None = None,
    color_kind: ColorKind = "none",
    color_name: str = "",
    hover: pd.DataFrame | None = None,
    point_size: float = 3.0,
    opacity: float = 0.8,
    title: str = "",
    axis_prefix: str = "dim",
) -> go.Figure:
    """2D/3D scatter of an embedding.

    coords: (n_obs, 2 or 3). color: (n_obs,) labels (categorical) or numbers (continuous; NaN
    drawn grey). hover: DataFrame indexed by sample id, (n_obs, n_cols), shown on hover.
    """
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords must have shape (n_obs, 2|3), got {coords.shape}")
    n = coords.shape[0]
    base = {"size": point_size, "opacity": opacity}
    if coords.shape[1] == 3:
        base["line"] = {"width": 0}
    traces = []
    if color is None or color_kind == "none":
        traces.append(
            _trace(
                coords,
                np.arange(n),
                name="samples",
                showlegend=False,
                marker={**base, "color": PALETTE[0]},
                hover=hover,
            )
        )
    elif color_kind == "categorical":
        labels = pd.Series(np.asarray(color, dtype=object)).astype(str)
        levels = category_levels(color)
        palette = level_colors(levels)
        for level in levels:
            idx = np.flatnonzero((labels == level).to_numpy())
            col = palette[level]
            traces.append(
                _trace(
                    coords,
                    idx,
                    name=level,
                    hover=hover,
                    showlegend=len(levels) <= MAX_LEGEND_LEVELS,
                    marker={**base, "color": col},
                )
            )
    else:
        values = np.asarray(color, dtype=float)
        ok = np.isfinite(values)
        if (~ok).any():
            traces.append(
                _trace(
                    coords,
                    np.flatnonzero(~ok),
                    name="missing",
                    hover=hover,
                    showlegend=True,
                    marker={**base, "color": NA_COLOR},
                )
            )
        idx = np.flatnonzero(ok)
        traces.append(
            _trace(
                coords,
                idx,
                name=color_name,
                hover=hover,
                showlegend=False,
                marker={
                    **base,
                    "color": values[idx],
                    "colorscale": "Viridis",
                    "showscale": True,
                    "colorbar": {"title": {"text": color_name}, "thickness": 14},
                },
            )
        )
    fig = go.Figure(traces)
    legend = {"itemsizing": "constant"}
    if color_kind == "continuous":  # the colour bar takes the right edge: "missing" goes below
        legend.update(orientation="h", x=0.0, y=0.0, xanchor="left", yanchor="top")
    fig.update_layout(**_LAYOUT, title={"text": title}, legend=legend, uirevision="keep")
    if coords.shape[1] == 3:
        fig.update_layout(
            scene={
                f"{a}axis": {"title": {"text": f"{axis_prefix} {i + 1}"}}
                for i, a in enumerate("xyz")
            },
            height=640,
        )
    else:
        fig.update_layout(
            xaxis_title=f"{axis_prefix} 1", yaxis_title=f"{axis_prefix} 2", height=600
        )
    return fig


def _natural_key(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def loss_curves(
    histories: Mapping[str, pd.DataFrame], *, terms: Sequence[str], x: str = "epoch"
) -> go.Figure:
    """One panel per loss term; train solid, validation dashed; one colour per run.

    histories: run name -> history table with columns ``x``, ``train_<term>``, ``val_<term>``.
    """
    terms = list(terms)
    ncols = min(3, max(1, len(terms)))
    nrows = max(1, int(np.ceil(len(terms) / ncols)))
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=terms or ["loss"])
    for r, (name, hist) in enumerate(histories.items()):
        colour = PALETTE[r % len(PALETTE)]
        for t, term in enumerate(terms):
            row, col = t // ncols + 1, t % ncols + 1
            for split, dash in (("train", "solid"), ("val", "dash")):
                column = f"{split}_{term}"
                if column not in hist or hist[column].isna().all():
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=hist[x] if x in hist else np.arange(len(hist)),
                        y=hist[column],
                        mode="lines",
                        name=f"{name} {split}",
                        legendgroup=f"{name} {split}",
                        showlegend=t == 0,
                        line={"color": colour, "dash": dash},
                    ),
                    row=row,
                    col=col,
                )
    # room above the subplot titles for the chart toolbar; the legend below the axis titles
    layout = {**_LAYOUT, "margin": {**_LAYOUT["margin"], "t": 70}}
    fig.update_layout(
        **layout,
        height=280 * nrows + 110,
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0},
    )
    fig.update_xaxes(title_text=x)
    return fig


def histograms(
    values: Mapping[str, np.ndarray],
    *,
    title: str = "",
    nbins: int = 40,
    xlabel: str = "value",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Overlaid histograms, one per named 1-D array (NaN ignored). colors: name -> colour
    (e.g. :func:`level_colors` for groups of a metadata column); default the palette in turn."""
    fig = go.Figure()
    for i, (name, v) in enumerate(values.items()):
        v = np.asarray(v, dtype=float)
        fig.add_trace(
            go.Histogram(
                x=v[np.isfinite(v)],
                name=name,
                nbinsx=nbins,
                opacity=0.65,
                marker_color=(colors or {}).get(name, PALETTE[i % len(PALETTE)]),
            )
        )
    fig.update_layout(
        **_LAYOUT,
        barmode="overlay",
        title={"text": title},
        height=320,
        xaxis_title=xlabel,
        yaxis_title="count",
    )
    return fig


def category_bars(counts: pd.Series, *, title: str = "") -> go.Figure:
    """Bar chart of level counts (index = level, values = count)."""
    fig = go.Figure(
        go.Bar(x=counts.index.astype(str), y=counts.to_numpy(), marker_color=PALETTE[0])
    )
    fig.update_layout(**_LAYOUT, title={"text": title}, height=280, yaxis_title="samples")
    return fig


def true_vs_reconstructed(
    true: np.ndarray,
    recon: np.ndarray,
    *,
    labels: pd.Series | None = None,
    feature: str = "",
    sample_ids: Sequence[str] | None = None,
) -> go.Figure:
    """Scatter of true (x) vs reconstructed (y) values of one feature, (n_obs,) each, with y=x."""
    true = np.asarray(true, dtype=float)
    recon = np.asarray(recon, dtype=float)
    ok = np.isfinite(true) & np.isfinite(recon)
    ids = np.asarray(sample_ids if sample_ids is not None else np.arange(len(true)), dtype=str)
    fig = go.Figure()
    groups = [("samples", ok)]
    palette = {"samples": PALETTE[0]}
    if labels is not None:
        lab = pd.Series(np.asarray(labels, dtype=object)).astype(str).to_numpy()
        levels = category_levels(labels)
        palette = level_colors(levels)
        groups = [(lv, ok & (lab == lv)) for lv in levels if (ok & (lab == lv)).any()]
    for name, mask in groups:
        fig.add_trace(
            go.Scattergl(
                x=true[mask],
                y=recon[mask],
                mode="markers",
                name=str(name),
                text=ids[mask],
                marker={"size": 5, "opacity": 0.7, "color": palette[name]},
                hovertemplate="<b>%{text}</b><br>true %{x:.3g}<br>reconstructed %{y:.3g}<extra></extra>",
            )
        )
    if ok.any():
        lo, hi = (
            float(min(true[ok].min(), recon[ok].min())),
            float(max(true[ok].max(), recon[ok].max())),
        )
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="y = x",
                line={"color": "#6b7280", "dash": "dot"},
            )
        )
    fig.update_layout(
        **_LAYOUT,
        title={"text": f"{feature}: true vs reconstructed"},
        height=420,
        xaxis_title="true",
        yaxis_title="reconstructed",
    )
    return fig


def variance_shrinkage(
    var_true: np.ndarray, var_recon: np.ndarray, *, names: Sequence[str]
) -> go.Figure:
    """Per-feature reconstructed vs true variance on log axes, (n_vars,) each, with y=x."""
    vt = np.asarray(var_true, dtype=float)
    vr = np.asarray(var_recon, dtype=float)
    ok = (vt > 0) & (vr > 0) & np.isfinite(vt) & np.isfinite(vr)
    names = np.asarray(names, dtype=str)
    fig = go.Figure(
        go.Scattergl(
            x=vt[ok],
            y=vr[ok],
            mode="markers",
            text=names[ok],
            name="features",
            marker={"size": 5, "opacity": 0.7, "color": PALETTE[0]},
            hovertemplate="<b>%{text}</b><br>true var %{x:.3g}<br>reconstructed var %{y:.3g}<extra></extra>",
        )
    )
    if ok.any():
        lo, hi = float(min(vt[ok].min(), vr[ok].min())), float(max(vt[ok].max(), vr[ok].max()))
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="no shrinkage",
                line={"color": "#6b7280", "dash": "dot"},
            )
        )
    # one labelled tick per power of ten once the range spans a few decades (plotly's default
    # labels 2 and 5 in between, which crowd the axis)
    decades = np.log10(hi / lo) if ok.any() else 0.0
    ticks = {"dtick": 1, "exponentformat": "power"} if decades >= 2 else {}
    fig.update_layout(
        **_LAYOUT,
        title={"text": "Variance shrinkage"},
        height=420,
        xaxis={"type": "log", "title": {"text": "true variance"}, **ticks},
        yaxis={"type": "log", "title": {"text": "reconstructed variance"}, **ticks},
    )
    return fig


def score_matrix(matrix: pd.DataFrame, *, title: str = "", zlabel: str = "score") -> go.Figure:
    """Heatmap of a (n_source, n_target) score table; NaN cells stay blank."""
    fig = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy(dtype=float),
            x=[str(c) for c in matrix.columns],
            y=[str(i) for i in matrix.index],
            colorscale="Viridis",
            colorbar={"title": {"text": zlabel}},
            texttemplate="%{z:.2f}",
            hovertemplate="%{y} -> %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **_LAYOUT,
        title={"text": title},
        height=120 + 60 * len(matrix),
        xaxis_title="target",
        yaxis_title="source",
    )
    return fig
