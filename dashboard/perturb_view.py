"""Perturbation page helpers: cached core.perturb calls and the page's figures.

Cached objects (the perturbation context, results, the 3D PCA map) are shared by every browser
session: never mutate them. Figure builders take arrays and return ``go.Figure`` (no ``st.*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import colors, forms, plots, state, widgets

MAX_ARROWS = 400  # samples drawn with a segment and a cone; the rest as points only
NUMBER_FORMAT = "%.4g"  # every float column of the association and screen tables (1e-08, 0.0123)
ALL = "(all samples)"
HELP_METHOD = (
    "bayes: MOVE's sign-consistency Bayes factor + empirical-null effect filter; "
    "ttest: per-refit paired t-tests, moderated across refits; ks: MOVE's KS approach"
)


@dataclass(frozen=True)
class Choice:
    """What the user asked for: feature "MOD:FEATURE", perturbation kind / value, subset
    ("COL=VALUE", sample positions or None), statistics method, and whether the feature is categorical."""

    feature: str
    kind: str
    value: float | None
    subset: str | tuple[int, ...] | None
    method: str
    categorical: bool


def controls(ctx, run_path: str) -> Choice:
    """The perturbation widgets (feature, kind, size, statistics, subset); the subset can be
    the samples selected on the Embeddings map of the run at ``run_path``.

    Every choice is bound to the URL (``state.bound``), so a copied link reopens the same
    perturbation. Switching between a categorical and a continuous feature resets the kind
    to that type's default (set a level / plus_std); a new feature resets "set to a value"
    to its median.
    """
    from core.associations import METHODS

    # categorical features (drugs, genotypes) first: they are the usual question
    features = sorted(ctx.target_names(), key=lambda f: ctx.kinds[f.split(":")[0]] != "categorical")
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    feature = c1.selectbox(
        "Feature to perturb (type to search)", features, **state.bound(state.PERT_FEATURE)
    )
    mod, _, name = feature.partition(":")
    t = ctx.pre.transforms[mod]
    categorical = ctx.kinds[mod] == "categorical"
    kind = c2.selectbox(
        "Perturbation", _kind_options(ctx.kinds[mod]), **state.bound(state.PERT_KIND)
    )
    value = None
    if categorical and kind == "set":
        levels = t.levels[t.var_names.index(name)]
        state.choose(state.PERT_LEVEL, levels, preferred=levels[-1])
        level = c3.selectbox("Set level to", levels, **state.bound(state.PERT_LEVEL))
        value = float(levels.index(level))
    elif kind == "shift":
        value = float(
            c3.number_input("k (standard deviations)", value=1.0, **state.bound(state.PERT_SHIFT))
        )
    elif kind == "set":
        median = float(np.nanmedian(ctx.data[mod][:, t.var_names.index(name)]))
        if state.get(state.PERT_VALUE_FOR, feature) != feature:  # a new feature: its median
            state.put(state.PERT_VALUE_SET, median)
        state.put(state.PERT_VALUE_FOR, feature)
        value = float(
            c3.number_input("value (data units)", value=median, **state.bound(state.PERT_VALUE_SET))
        )
    method = c4.selectbox("Statistics", METHODS, help=HELP_METHOD, **state.bound(state.PERT_METHOD))
    s1, s2 = st.columns(2)
    obs = ctx.obs
    cat_cols = [c for c in obs.columns if colors.is_categorical(obs[c])]
    picked = state.selection(run_path)
    picked_label = f"(the {len(picked):,} samples selected on the Embeddings map)"
    options = [ALL, *([picked_label] if picked else []), *cat_cols]
    state.choose(state.PERT_SUBSET_COL, options)
    sub_col = s1.selectbox(
        "Perturb only samples with", options, **state.bound(state.PERT_SUBSET_COL)
    )
    subset = None
    if sub_col == picked_label:
        subset = tuple(int(i) for i in np.flatnonzero(obs.index.isin(picked)))
    elif sub_col != ALL:
        levels = sorted(map(str, obs[sub_col].dropna().unique()))
        state.choose(state.PERT_SUBSET_VAL, levels)
        chosen = s2.selectbox(sub_col, levels, **state.bound(state.PERT_SUBSET_VAL))
        subset = f"{sub_col}={chosen}"
    return Choice(feature, kind, value, subset, method, categorical)


def _kind_options(data_kind: str) -> tuple[str, ...]:
    """The perturbation kinds for a feature of ``data_kind``, with the kind widget's state
    made valid first: a switch between a categorical and a continuous feature moves it to that
    type's default (``core.perturb.default_kind``) unless the user picked another kind that
    the new type also has (:func:`dashboard.forms.follow_defaults`). Must run before the
    widget."""
    from core import perturb as core_perturb

    family = "categorical" if data_kind == "categorical" else "continuous"
    kinds = (
        core_perturb.CATEGORICAL_KINDS if family == "categorical" else core_perturb.PERTURB_KINDS
    )
    default = core_perturb.default_kind(data_kind)
    forms.follow_defaults(state.PERT_KIND_FOR, family, {state.PERT_KIND: default})
    state.choose(state.PERT_KIND, kinds, preferred=default)  # a kind the new type lacks
    return kinds


def metrics(res, *, categorical: bool) -> None:
    """The headline numbers of a perturbation result."""
    disp = np.linalg.norm(res.displacement, axis=2)  # (n_refits, n_pert)
    table = res.table
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("perturbed samples", f"{len(res.rows):,}")
    m2.metric(
        "mean |Δz|",
        f"{disp.mean():.3g}",
        help="Latent displacement, averaged over samples and refits",
    )
    m3.metric(
        "spread over refits",
        f"{disp.mean(axis=1).std():.2g}",
        help="SD over refits of the mean displacement",
    )
    m4.metric("significant pairs", f"{int(table['significant'].sum()):,} / {len(table):,}")
    if categorical and res.kind == "set":
        st.caption(
            "Samples already at the chosen level are left out (as in MOVE): the "
            "question is what changes when the others get it."
        )


def screen_panel(ref, ctx, method: str) -> None:
    """Expander: screen every feature of a modality, with a progress bar and a download."""
    with st.expander("Screen every feature of a modality", icon=":material/manage_search:"):
        sm1, sm2 = st.columns([2, 1])
        screen_mod = sm1.selectbox("Modality", list(ctx.features), key=state.PERT_SCREEN_MOD)
        if sm2.button("Run screen", icon=":material/play_arrow:"):
            bar = st.progress(0.0, "Screening...")
            with widgets.guard():
                table = screen(
                    ref.path,
                    ref.version,
                    screen_mod,
                    None,
                    method,
                    lambda f, msg: bar.progress(f, msg),
                )
                state.put(state.PERT_SCREEN, (ref.path, screen_mod, method, table))
        done = state.get(state.PERT_SCREEN)
        if done and done[0] == ref.path:
            _, smod, smethod, table = done
            st.caption(
                f"{table['source'].nunique()} features of {smod} ({smethod}): "
                f"{int(table['significant'].sum()):,} significant pairs."
            )
            st.dataframe(
                table[table["significant"]],
                hide_index=True,
                height=300,
                width="stretch",
                column_config=column_config(table),
            )
            widgets.csv_download("Screen table (CSV)", table, f"{ref.name}_{smod}_screen.csv")


@st.cache_resource(show_spinner="Encoding the baseline of every refit...", max_entries=2)
def context(path: str, version: float):
    """core.perturb.PerturbContext of the run on its own dataset (shared, read-only)."""
    from core import perturb
    from dashboard import cache

    return perturb.build_context(cache.load_run(path, version), cache.run_data(path, version))


@st.cache_resource(show_spinner="Perturbing...", max_entries=6)
def result(path: str, version: float, feature: str, kind: str, value, subset, method: str):
    """core.perturb.perturb(...) for the page's choices (shared, read-only).

    subset: None, "COL=VALUE" or a tuple of sample positions (hashable).
    """
    from core import perturb
    from dashboard import cache

    sub = np.asarray(subset, dtype=int) if isinstance(subset, tuple) else subset
    return perturb.perturb(
        cache.load_run(path, version),
        feature=feature,
        kind=kind,
        value=value,
        subset=sub,
        method=method,
        context=context(path, version),
    )


def screen(path: str, version: float, modality: str, kind, method: str, progress) -> pd.DataFrame:
    """Every feature of ``modality``; progress(fraction, text) drives a progress bar."""
    from core import perturb
    from dashboard import cache

    def report(event: dict) -> None:
        if event.get("stage") == "screen":
            progress(
                event["step"] / event["total"],
                f"{event['feature']} ({event['step']}/{event['total']})",
            )

    return perturb.screen(
        cache.load_run(path, version),
        modality=modality,
        kind=kind,
        method=method,
        context=context(path, version),
        progress=report,
    )


@st.cache_resource(show_spinner="Fitting the 3D PCA map...", max_entries=4)
def pca_map(path: str, version: float):
    """The run's 3D PCA map of refit 0 (core.embed, disk-cached); transform places new points."""
    from core import embed
    from dashboard import cache

    return embed.cached(
        Path(path), cache.latent(path, version), method="pca", n_components=3, seed=0
    )


def column_config(table: pd.DataFrame) -> dict:
    """st.dataframe column_config: every float column (effect, score, fdr, ...) in one number
    format, so the association table and the screen table show p-values and FDRs alike."""
    return {
        c: st.column_config.NumberColumn(format=NUMBER_FORMAT)
        for c in table.columns
        if pd.api.types.is_float_dtype(table[c])
    }


def filter_table(
    table: pd.DataFrame, *, modalities, only_significant: bool, text: str
) -> pd.DataFrame:
    """Rows of the association table matching the page's filters."""
    keep = table["target_modality"].isin(list(modalities))
    if only_significant:
        keep &= table["significant"]
    if text:
        keep &= table["target"].str.contains(text, case=False, regex=False)
    return table[keep]


def displacement_figure(
    emb, res, obs: pd.DataFrame, *, max_arrows: int = MAX_ARROWS, seed: int = 0
) -> go.Figure:
    """3D map: perturbed samples at their baseline position, a segment + cone to their mean
    perturbed position, coloured by latent displacement; per-refit end points show the spread.

    emb: core.embed Embedding fitted on refit 0's latent (placed with ``emb.transform``);
    res: core.perturb.PerturbResult. Only refit 0 shares the map's latent space, so the
    other refits' displacements are applied from the baseline position in that space as
    vectors (each refit's own latent axes are arbitrary; only the length and spread compare).
    """
    n = len(res.rows)
    rng = np.random.default_rng(seed)
    show = np.sort(rng.choice(n, min(n, max_arrows), replace=False))
    base = emb.transform(res.z_before[0])
    after = emb.transform(res.z_after[0])
    disp = np.linalg.norm(res.displacement, axis=2)  # (n_refits, n_pert)
    colour = disp.mean(axis=0)
    names = obs.index.to_numpy()[res.rows].astype(str)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter3d(
            x=base[:, 0],
            y=base[:, 1],
            z=base[:, 2],
            mode="markers",
            name="baseline",
            marker={
                "size": 3,
                "color": colour,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "|Δz|"},
            },
            text=[
                f"{s}<br>|Δz| {c:.3g} ± {sd:.2g} over refits"
                for s, c, sd in zip(names, colour, disp.std(axis=0), strict=True)
            ],
            hoverinfo="text",
        )
    )
    seg = np.full((3 * show.size, 3), np.nan)
    seg[0::3], seg[1::3] = base[show], after[show]
    fig.add_trace(
        go.Scatter3d(
            x=seg[:, 0],
            y=seg[:, 1],
            z=seg[:, 2],
            mode="lines",
            name="displacement (refit 0)",
            hoverinfo="skip",
            line={"color": "rgba(80,80,80,0.5)", "width": 2},
        )
    )
    vec = after[show] - base[show]
    fig.add_trace(
        go.Cone(
            x=after[show, 0],
            y=after[show, 1],
            z=after[show, 2],
            u=vec[:, 0],
            v=vec[:, 1],
            w=vec[:, 2],
            anchor="tip",
            sizemode="absolute",
            sizeref=max(float(np.linalg.norm(vec, axis=1).max()) * 0.3, 1e-6),
            colorscale="Viridis",
            cmin=float(colour.min()),
            cmax=float(colour.max()),
            showscale=False,
            name="direction",
            hoverinfo="skip",
        )
    )
    if res.z_after.shape[0] > 1:  # other refits: the same sample's end point, as a vector
        ends = [
            emb.transform(res.z_before[0] + res.displacement[r])[show]
            for r in range(1, res.z_after.shape[0])
        ]
        ends = np.concatenate(ends)
        fig.add_trace(
            go.Scatter3d(
                x=ends[:, 0],
                y=ends[:, 1],
                z=ends[:, 2],
                mode="markers",
                name="end point, other refits",
                hoverinfo="skip",
                marker={"size": 1.5, "color": "rgba(220,38,38,0.35)"},
            )
        )
    fig.update_layout(
        **plots._LAYOUT,
        height=560,
        legend={"orientation": "h"},
        title=f"{res.source}: {n} samples moved ({res.kind})",
        scene={
            "xaxis_title": emb.axis_names[0],
            "yaxis_title": emb.axis_names[1],
            "zaxis_title": emb.axis_names[2],
        },
    )
    return fig


def volcano(table: pd.DataFrame, *, highlight: str | None = None) -> go.Figure:
    """Effect (in SDs of each target) vs score, significant pairs in colour."""
    fig = go.Figure()
    for sig, colour in ((False, plots.NA_COLOR), (True, plots.PALETTE[1])):
        part = table[table["significant"] == sig]
        fig.add_trace(
            go.Scattergl(
                x=part["effect_std"],
                y=part["score"],
                mode="markers",
                name="significant" if sig else "not significant",
                marker={"size": 5, "color": colour},
                text=part["target"],
                hovertemplate="%{text}<br>effect %{x:.3g} SD<br>score %{y:.3g}<extra></extra>",
            )
        )
    if highlight is not None and highlight in set(table["target"]):
        row = table[table["target"] == highlight].iloc[0]
        fig.add_trace(
            go.Scattergl(
                x=[row["effect_std"]],
                y=[row["score"]],
                mode="markers",
                name=highlight,
                marker={"size": 12, "symbol": "circle-open", "color": "black"},
            )
        )
    fig.update_layout(
        **plots._LAYOUT,
        height=380,
        title="Volcano",
        xaxis_title="effect (SD of the target)",
        yaxis_title="score",
    )
    return fig


def before_after(before: np.ndarray, after: np.ndarray, *, target: str) -> go.Figure:
    """Distribution of a target's decoded value before / after (mean over refits per sample),
    with the per-refit spread of the mean shown in the title.

    before, after: (n_refits, n_pert).
    """
    ok = np.isfinite(before).all(axis=0)  # samples that have the target's modality
    before, after = before[:, ok], after[:, ok]
    b, a = before.mean(axis=0), after.mean(axis=0)
    shift = np.nanmean(after - before, axis=1)  # per refit
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=b, name="before", opacity=0.6, marker_color=plots.PALETTE[0]))
    fig.add_trace(go.Histogram(x=a, name="after", opacity=0.6, marker_color=plots.PALETTE[1]))
    fig.update_layout(
        **plots._LAYOUT,
        height=380,
        barmode="overlay",
        xaxis_title=target,
        title=f"{target}: mean change {np.nanmean(shift):+.3g} "
        f"(refits {np.nanmin(shift):+.3g} .. {np.nanmax(shift):+.3g})",
    )
    return fig


def displacement_frame(res) -> pd.DataFrame:
    """Per perturbed sample and refit: |Δz| and the latent displacement (long format)."""
    n_refits, n, k = res.displacement.shape
    frame = pd.DataFrame(res.displacement.reshape(-1, k), columns=[f"dz{i + 1}" for i in range(k)])
    frame.insert(0, "refit", np.repeat(np.arange(n_refits), n))
    frame.insert(0, "sample", np.tile(res.obs_names, n_refits))
    frame["norm"] = np.linalg.norm(res.displacement.reshape(-1, k), axis=1)
    return frame
