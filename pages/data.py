"""Data: choose a built-in dataset or upload your own; validation, summary, distributions."""

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import cache, forms, plots, state, upload_form
from dashboard.settings import get_settings

settings = get_settings()
st.title("Data")
st.caption(
    "Pick a dataset in the sidebar, or upload your own below. Every page works on the "
    "sidebar's dataset and run."
)

with st.expander("Upload a dataset", icon=":material/upload:", expanded=False):
    upload_form.upload_form(settings)
if msg := state.get(state.DATA_UPLOAD_MSG):
    st.success(msg, icon=":material/check_circle:")
    state.put(state.DATA_UPLOAD_MSG, None)

name = state.dataset()
if not name:
    st.info("Choose a dataset in the sidebar.")
    st.stop()
version = cache.dataset_version(name, settings.upload_dir)
mdata = cache.load_dataset(
    name,
    upload_dir=str(settings.upload_dir),
    version=version,
    max_file_bytes=settings.max_upload_bytes,
)
key = (name, version)

st.subheader(f"{name}: {mdata.n_obs:,} samples")
for warning in list(mdata.uns.get("warnings", [])):
    st.warning(str(warning), icon=":material/warning:")
summary = cache.dataset_summary(mdata, key)
st.dataframe(
    summary,
    hide_index=True,
    width="stretch",
    column_config={
        "n_obs": st.column_config.NumberColumn("samples", format="%d"),
        "n_vars": st.column_config.NumberColumn("features", format="%d"),
        "n_missing": st.column_config.NumberColumn("samples without it", format="%d"),
    },
)

st.subheader("Feature distributions")
features = [f"{m}:{v}" for m in mdata.mod for v in mdata.mod[m].var_names]
default = features[: min(2, len(features))]
left, right = st.columns([3, 1])
# in the URL; another dataset's features are dropped (none left: this dataset's first two)
chosen = left.multiselect(
    "Features (type to search across all modalities)",
    features,
    default=forms.valid_choices(state.DATA_FEATURES, features, default),
    max_selections=6,
    **state.bound(state.DATA_FEATURES),
)
obs = mdata.obs
groups_ok = [
    c
    for c in obs.columns
    if isinstance(obs[c].dtype, pd.CategoricalDtype) and obs[c].nunique() <= 12
]
split_by = right.selectbox("Split by", ["(none)", *groups_ok], **state.bound(state.DATA_SPLIT))
cols = st.columns(2)
for i, feat in enumerate(chosen):
    mod, var = feat.split(":", 1)
    col = list(mdata.mod[mod].var_names).index(var)
    values = cache.modality_matrix(mdata, key, mod)[:, col]
    if split_by == "(none)":
        groups = {var: values}
    else:
        labels = obs[split_by].astype(str).to_numpy()
        groups = {lv: values[labels == lv] for lv in plots.category_levels(obs[split_by])}
    present = int(np.isfinite(values).sum())
    cols[i % 2].plotly_chart(
        plots.histograms(
            groups,
            colors=plots.level_colors(list(groups)),
            title=f"{feat} ({present:,} samples)",
            xlabel=mdata.mod[mod].uns.get("kind", "value"),
        ),
        key=f"dist_{feat}",
    )

st.subheader("Metadata")
if obs.shape[1] == 0:
    st.info(
        "This dataset has no sample metadata; upload a metadata table to colour and "
        "condition by it."
    )
else:
    cols = st.columns(3)
    for i, c in enumerate(obs.columns[:9]):
        series = obs[c]
        if pd.api.types.is_numeric_dtype(series):
            fig = plots.histograms({c: series.to_numpy(dtype=float)}, title=c, xlabel=c)
        else:
            fig = plots.category_bars(series.astype(str).value_counts().head(30), title=c)
        cols[i % 3].plotly_chart(fig, key=f"obs_{c}")
    st.dataframe(obs.head(500), width="stretch")
