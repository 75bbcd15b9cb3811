"""Reconstruction: how well the run reproduces each feature, sample and modality."""

import numpy as np
import streamlit as st

from core.metrics import score_summary
from dashboard import cache, colors, plots, state, widgets

st.title("Reconstruction")
ref = widgets.current_run()
run = ref.run
mdata = cache.run_data(ref.path, ref.version)
obs = mdata.obs

c1, c2 = st.columns([2, 3])
mod = c1.selectbox("Modality", list(run.modalities), **state.bound(state.REC_MODALITY))
kind = run.kinds[mod]
log1p = False
if kind == "counts":
    log1p = c2.toggle(
        "Score counts on log1p scale",
        value=True,
        help="Raw counts are dominated by the most expressed genes.",
        **state.bound(state.REC_LOG1P),
    )
st.caption(
    f"**{mod}** ({kind}): model features {len(run.var_names[mod]):,}; values in data "
    "units"
    + (" (log1p)" if log1p else "")
    + ("; categorical values are expected level codes." if kind == "categorical" else ".")
)

scores = cache.feature_scores(ref.path, ref.version, mod, log1p)
summary = score_summary(scores)
m1, m2, m3, m4 = st.columns(4)
m1.metric("median R²", f"{summary['median_r2']:.3f}")
m2.metric("median Pearson", f"{summary['median_pearson']:.3f}")
m3.metric("features with R² > 0.5", f"{summary['frac_r2_above_0.5']:.0%}")
corr = cache.sample_correlation(ref.path, ref.version, mod, log1p)
m4.metric(
    "median per-sample correlation",
    f"{np.nanmedian(corr):.3f}" if np.isfinite(corr).any() else "n/a",
)

left, right = st.columns([3, 2])
with left:
    st.markdown("**Per feature** (click a column header to sort)")
    st.dataframe(
        scores.sort_values("r2", ascending=False),
        hide_index=True,
        height=360,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("r2", "pearson", "mean_true", "mean_recon", "var_true", "var_recon")
        },
    )
    widgets.csv_download("Scores (CSV)", scores, f"{ref.name}_{mod}_scores.csv")
with right:
    st.plotly_chart(
        plots.histograms(
            {"R²": scores["r2"].to_numpy(), "Pearson": scores["pearson"].to_numpy()},
            title="Per-feature scores",
            xlabel="score",
        ),
        key="rec_hist",
    )
    st.plotly_chart(
        plots.histograms(
            {"samples": corr},
            title="Per-sample correlation",
            xlabel="Pearson r (true vs reconstructed profile)",
        ),
        key="rec_samples",
    )

st.subheader("True vs reconstructed")
ranked = scores.sort_values("r2", ascending=False, na_position="last")["feature"].tolist()
f1, f2 = st.columns(2)
feature = f1.selectbox(
    "Feature (best reconstructed first; type to search)", ranked, **state.bound(state.REC_FEATURE)
)
categorical = [c for c in obs.columns if colors.is_categorical(obs[c])]
color_by = f2.selectbox("Colour by", ["(none)", *categorical], **state.bound(state.REC_COLOR))
j = list(run.var_names[mod]).index(feature) if feature in run.var_names[mod] else 0
truth = cache.run_matrices(ref.path, ref.version)[mod][:, j]
recon = cache.reconstruction(ref.path, ref.version)[mod][:, j]
if log1p:
    truth, recon = np.log1p(np.clip(truth, 0, None)), np.log1p(np.clip(recon, 0, None))
labels = obs[color_by] if color_by and color_by != "(none)" else None
g1, g2 = st.columns(2)
g1.plotly_chart(
    plots.true_vs_reconstructed(
        truth, recon, labels=labels, feature=feature, sample_ids=list(obs.index)
    ),
    key="rec_scatter",
)
g2.plotly_chart(
    plots.variance_shrinkage(
        scores["var_true"].to_numpy(),
        scores["var_recon"].to_numpy(),
        names=scores["feature"].tolist(),
    ),
    key="rec_shrink",
)
st.caption(
    "Points below the diagonal on the right are features whose reconstructed variance is "
    "smaller than the data's: the usual VAE shrinkage towards the mean."
)

if len(run.modalities) > 1:
    st.subheader("Cross-modal translation")
    is_translator = run.config.model.model == "translator"
    if is_translator or st.toggle(
        "Score every source → target translation",
        help="Encodes from one modality only and decodes another.",
    ):
        table = cache.translation_scores(ref.path, ref.version)
        st.plotly_chart(
            plots.score_matrix(
                table, title="Median per-feature R² (source → target)", zlabel="median R²"
            ),
            key="rec_translate",
        )
