"""The Data page's upload form: files -> validated dataset folder under OLE_UPLOAD_DIR."""

from __future__ import annotations

import math

import streamlit as st

from core.errors import InputError
from dashboard import cache, state, uploads, widgets
from dashboard.settings import Settings

HELP = (
    "One **.h5ad / .h5mu** file, or **one table per modality** (CSV / TSV / Parquet; samples in "
    "rows, first column the sample id; the file name is the modality name, e.g. `rna.csv`, "
    "`protein.csv`) plus an optional **metadata table** (sample id + columns such as tissue or "
    "age). Limit: {mb:g} MB per file (OLE_MAX_UPLOAD_MB)."
)


def upload_form(settings: Settings) -> None:
    """Draw the form; on submit validate + save, select the new dataset, or show the error."""
    st.markdown(HELP.format(mb=settings.max_upload_mb))
    limit_mb = max(1, math.ceil(settings.max_upload_mb))  # the browser refuses bigger files too
    with st.form("upload", clear_on_submit=False):
        name = st.text_input("Dataset name", key=state.DATA_UPLOAD_NAME, placeholder="my_study")
        files = st.file_uploader(
            "Data files",
            type=uploads.UPLOAD_TYPES,
            accept_multiple_files=True,
            key=state.DATA_UPLOAD_FILES,
            max_upload_size=limit_mb,
        )
        obs_file = st.file_uploader(
            "Metadata table (optional)",
            type=["csv", "tsv", "txt", "parquet"],
            key=state.DATA_UPLOAD_OBS,
            max_upload_size=limit_mb,
        )
        kinds_text = st.text_input(
            "Kinds (optional)",
            placeholder="rna=counts, protein=continuous",
            help="Override an inferred modality kind: counts, proportion, "
            "continuous or categorical.",
        )
        replace = st.checkbox("Replace a dataset with the same name")
        submitted = st.form_submit_button("Validate and save", type="primary")
    if not submitted:
        return
    name = (name or "").strip()
    all_files = [*(files or []), *([obs_file] if obs_file else [])]
    try:
        for f in all_files:  # refuse before reading the bytes into memory
            uploads.check_size(f.name, f.size, max_bytes=settings.max_upload_bytes)
        mdata = uploads.save_upload(
            name,
            [(f.name, f.getvalue()) for f in files or []],
            obs=(obs_file.name, obs_file.getvalue()) if obs_file else None,
            kinds=uploads.parse_kinds(kinds_text),
            upload_dir=settings.upload_dir,
            max_bytes=settings.max_upload_bytes,
            reserved=cache.builtin_datasets(),
            overwrite=replace,
        )
    except InputError as exc:
        st.error(widgets.user_message(exc), icon=":material/error:")
        return
    cache.load_dataset.clear()
    state.request_dataset(name)
    state.put(
        state.DATA_UPLOAD_MSG,
        f"Saved **{name}**: {mdata.n_obs:,} samples, modalities "
        f"{', '.join(mdata.mod)}. It is now selected in the sidebar; train a model on the "
        "**Train** page.",
    )
    st.rerun()
