"""Train: configure a model, launch a background job, watch it live, compare runs."""

import streamlit as st

from dashboard import cache, forms, plots, state, train_parts, training
from dashboard.settings import get_settings

settings = get_settings()
st.title("Train")
dataset = state.dataset()
if not dataset:
    st.info("Choose a dataset in the sidebar first.")
    st.stop()
version = cache.dataset_version(dataset, settings.upload_dir)
mdata = cache.load_dataset(
    dataset,
    upload_dir=str(settings.upload_dir),
    version=version,
    max_file_bytes=settings.max_upload_bytes,
)

with train_parts.form_expander(dataset, has_run=bool(state.run())):
    train_parts.new_run_form(dataset, mdata, settings)

if run_name := state.run():
    train_parts.live_panel(run_name, settings.runs_dir / run_name)

st.subheader("All runs")
runs = cache.list_runs(settings.runs_dir)
if runs.empty:
    st.info("No runs yet: train one above.")
    st.stop()
table = training.runs_table(training.headline_metrics(runs), settings.upload_dir)
number = st.column_config.NumberColumn
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    placeholder="",  # an empty cell, not "None"
    column_config={
        "data": st.column_config.TextColumn("dataset"),
        "n_latent": number("latent dims", format="%d"),
        "epoch": number("epochs", format="%d"),
        "val_loss": number("val. loss", format="%.4g"),
        "knn_latent": number(
            "kNN acc. (latent)",
            format="%.3f",
            help="15-NN accuracy of the label column on held-out samples",
        ),
        "knn_pca": number("kNN acc. (PCA)", format="%.3f", help="the same on a PCA of the input"),
        "recon_vs_mean": number(
            "recon. MSE / mean baseline",
            format="%.3f",
            help="mean over modalities; below 1 beats predicting the mean",
        ),
        "seconds": number("seconds", format="%.0f"),
    },
)

names = list(table["name"])
compare = st.multiselect(
    "Compare runs (loss curves overlaid)",
    names,
    default=forms.valid_choices(state.TRAIN_COMPARE, names, []),
    **state.bound(state.TRAIN_COMPARE),
)
if compare:
    histories = {}
    for name in compare:
        hist = training.read_history(settings.runs_dir / name)
        if len(hist):
            histories[name] = hist[hist["refit"] == 0] if "refit" in hist else hist
    terms = sorted(
        {t for h in histories.values() for t in training.loss_terms(h)},
        key=lambda t: (t != "total", t != "kl", t),
    )
    chosen = st.multiselect(
        "Loss terms",
        terms,
        default=forms.valid_choices(state.TRAIN_TERM, terms, ["total", "kl"]),
        **state.bound(state.TRAIN_TERM),
    )
    st.plotly_chart(plots.loss_curves(histories, terms=chosen), key="compare_curves")
