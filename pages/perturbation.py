"""Perturbation: change one input feature, watch the samples move, see which features respond."""

import streamlit as st

from dashboard import perturb_view as pv
from dashboard import state, widgets

st.title("Perturbation")
ref = widgets.current_run()
ctx = pv.context(ref.path, ref.version)
obs = ctx.obs
st.caption(
    f"Run **{ref.name}**: {ctx.n_obs:,} samples, {ctx.n_refits} refit(s). Each sample's "
    "feature is changed, the sample re-encoded and every modality decoded, per refit."
)
choice = pv.controls(ctx, ref.path)
feature, kind, method = choice.feature, choice.kind, choice.method

with widgets.guard():
    res = pv.result(ref.path, ref.version, feature, kind, choice.value, choice.subset, method)
    table = res.table
    pv.metrics(res, categorical=choice.categorical)
    st.plotly_chart(
        pv.displacement_figure(pv.pca_map(ref.path, ref.version), res, obs), key="pert_map"
    )

    st.subheader("Associations")
    f1, f2, f3 = st.columns([3, 1, 2])
    mods = f1.multiselect(
        "Target modalities",
        list(ctx.features),
        default=list(ctx.features),
        key=state.PERT_MODALITIES,
    )
    only_sig = f2.toggle("Significant only", key=state.PERT_ONLY_SIG)
    text = f3.text_input("Search targets", key=state.PERT_SEARCH)
    shown = pv.filter_table(table, modalities=mods, only_significant=only_sig, text=text)
    event = st.dataframe(
        shown,
        hide_index=True,
        height=320,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=state.PERT_TABLE,
        column_config=pv.column_config(table),
    )
    rows = event.selection.rows if event is not None else []
    picked = shown["target"].iloc[rows[0]] if rows and rows[0] < len(shown) else None
    if picked is not None and picked != state.get(state.PERT_PICKED):  # a new row click
        state.put(state.PERT_TARGET, picked)
    state.put(state.PERT_PICKED, picked)
    targets = shown["target"].tolist() or table["target"].tolist()
    state.choose(state.PERT_TARGET, targets)
    target = st.selectbox("Target (or click a row above)", targets, key=state.PERT_TARGET)
    g1, g2 = st.columns(2)
    g1.plotly_chart(pv.volcano(shown, highlight=target), key="pert_volcano")
    before, after = res.target_values(target)
    g2.plotly_chart(pv.before_after(before, after, target=target), key="pert_dist")
    d1, d2 = st.columns(2)
    stem = f"{ref.name}_{feature.replace(':', '_')}_{kind}"
    widgets.csv_download("Association table (CSV)", table, f"{stem}_associations.csv", container=d1)
    widgets.csv_download(
        "Latent displacements (CSV)",
        pv.displacement_frame(res),
        f"{stem}_displacement.csv",
        container=d2,
    )

pv.screen_panel(ref, ctx, method)
