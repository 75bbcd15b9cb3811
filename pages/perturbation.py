"""Perturbation: change one input feature, watch the samples move, see which features respond."""

import numpy as np
import streamlit as st

from core import perturb as core_perturb
from core.associations import METHODS
from dashboard import colors, state, widgets
from dashboard import perturb_view as pv

ALL = "(all samples)"
HELP_METHOD = ("bayes: MOVE's sign-consistency Bayes factor + empirical-null effect filter; "
               "ttest: per-refit paired t-tests, moderated across refits; ks: MOVE's KS approach")

st.title("Perturbation")
ref = widgets.current_run()
ctx = pv.context(ref.path, ref.version)
obs = ctx.obs
st.caption(f"Run **{ref.name}**: {ctx.n_obs:,} samples, {ctx.n_refits} refit(s). Each sample's "
           "feature is changed, the sample re-encoded and every modality decoded, per refit.")

# categorical features (drugs, genotypes) first: they are the usual question
features = sorted(ctx.target_names(), key=lambda f: ctx.kinds[f.split(":")[0]] != "categorical")
c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
feature = c1.selectbox("Feature to perturb (type to search)", features,
                       **state.bound(state.PERT_FEATURE))
mod, _, name = feature.partition(":")
categorical = ctx.kinds[mod] == "categorical"
kinds = core_perturb.CATEGORICAL_KINDS if categorical else core_perturb.PERTURB_KINDS
state.choose(state.PERT_KIND, kinds)
kind = c2.selectbox("Perturbation", kinds, key=state.PERT_KIND)
value = None
if categorical and kind == "set":
    levels = ctx.pre.transforms[mod].levels[ctx.pre.transforms[mod].var_names.index(name)]
    state.choose(state.PERT_LEVEL, levels, preferred=levels[-1])
    value = float(levels.index(c3.selectbox("Set level to", levels, key=state.PERT_LEVEL)))
elif kind in ("set", "shift"):
    column = ctx.data[mod][:, ctx.pre.transforms[mod].var_names.index(name)]
    default = 1.0 if kind == "shift" else float(np.nanmedian(column))
    label = "k (standard deviations)" if kind == "shift" else "value (data units)"
    value = float(c3.number_input(label, value=default, key=f"{state.PERT_VALUE}_{kind}"))
method = c4.selectbox("Statistics", METHODS, help=HELP_METHOD, **state.bound(state.PERT_METHOD))

s1, s2 = st.columns(2)
cat_cols = [c for c in obs.columns if colors.is_categorical(obs[c])]
sub_col = s1.selectbox("Perturb only samples with", [ALL, *cat_cols], key=state.PERT_SUBSET_COL)
subset = None
if sub_col != ALL:
    levels = sorted(map(str, obs[sub_col].dropna().unique()))
    state.choose(state.PERT_SUBSET_VAL, levels)
    subset = f"{sub_col}={s2.selectbox(sub_col, levels, key=state.PERT_SUBSET_VAL)}"

with widgets.guard():
    res = pv.result(ref.path, ref.version, feature, kind, value, subset, method)
    table = res.table
    disp = np.linalg.norm(res.displacement, axis=2)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("perturbed samples", f"{len(res.rows):,}")
    m2.metric("mean |Δz|", f"{disp.mean():.3g}",
              help="Latent displacement, averaged over samples and refits")
    m3.metric("spread over refits", f"{disp.mean(axis=1).std():.2g}",
              help="SD over refits of the mean displacement")
    m4.metric("significant pairs", f"{int(table['significant'].sum()):,} / {len(table):,}")
    if categorical and kind == "set":
        st.caption("Samples already at the chosen level are left out (as in MOVE): the "
                   "question is what changes when the others get it.")
    st.plotly_chart(pv.displacement_figure(pv.pca_map(ref.path, ref.version), res, obs),
                    key="pert_map")

    st.subheader("Associations")
    f1, f2, f3 = st.columns([3, 1, 2])
    mods = f1.multiselect("Target modalities", list(ctx.features), default=list(ctx.features),
                          key=state.PERT_MODALITIES)
    only_sig = f2.toggle("Significant only", key=state.PERT_ONLY_SIG)
    text = f3.text_input("Search targets", key=state.PERT_SEARCH)
    shown = pv.filter_table(table, modalities=mods, only_significant=only_sig, text=text)
    event = st.dataframe(
        shown, hide_index=True, height=320, width="stretch", on_select="rerun",
        selection_mode="single-row", key="pert_table",
        column_config={c: st.column_config.NumberColumn(format="%.4g")
                       for c in ("effect", "score", "fdr", "effect_std", "baseline")})
    picked = event.selection.rows if event is not None else []
    targets = shown["target"].tolist() or table["target"].tolist()
    if picked and picked[0] < len(shown):
        state.put(state.PERT_TARGET, shown["target"].iloc[picked[0]])
    state.choose(state.PERT_TARGET, targets)
    target = st.selectbox("Target (or click a row above)", targets, key=state.PERT_TARGET)
    g1, g2 = st.columns(2)
    g1.plotly_chart(pv.volcano(shown, highlight=target), key="pert_volcano")
    before, after = res.target_values(target)
    g2.plotly_chart(pv.before_after(before, after, target=target), key="pert_dist")
    d1, d2 = st.columns(2)
    stem = f"{ref.name}_{feature.replace(':', '_')}_{kind}"
    d1.download_button("Association table (CSV)", table.to_csv(index=False),
                       file_name=f"{stem}_associations.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:")
    d2.download_button("Latent displacements (CSV)", pv.displacement_frame(res).to_csv(index=False),
                       file_name=f"{stem}_displacement.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:")

with st.expander("Screen every feature of a modality", icon=":material/manage_search:"):
    sm1, sm2 = st.columns([2, 1])
    screen_mod = sm1.selectbox("Modality", list(ctx.features), key="pert_screen_mod")
    if sm2.button("Run screen", icon=":material/play_arrow:"):
        bar = st.progress(0.0, "Screening...")
        with widgets.guard():
            screened = pv.screen(ref.path, ref.version, screen_mod, None, method,
                                 lambda f, msg: bar.progress(f, msg))
            state.put(state.PERT_SCREEN, (ref.path, screen_mod, method, screened))
    done = state.get(state.PERT_SCREEN)
    if done and done[0] == ref.path:
        _, smod, smethod, screened = done
        st.caption(f"{screened['source'].nunique()} features of {smod} ({smethod}): "
                   f"{int(screened['significant'].sum()):,} significant pairs.")
        st.dataframe(screened[screened["significant"]], hide_index=True, height=300,
                     width="stretch")
        st.download_button("Screen table (CSV)", screened.to_csv(index=False),
                           file_name=f"{ref.name}_{smod}_screen.csv", mime="text/csv",
                           on_click="ignore", icon=":material/download:")
