"""The Data page's upload form: files -> validated dataset folder under OLE_UPLOAD_DIR.

The uploaders accept any file type, so that a wrong file reaches :mod:`dashboard.uploads` and is
refused there by name, with the accepted types (with ``type=`` the browser would drop it and the
form would only say that no file was uploaded). Sizes: the uploader itself can only enforce
whole megabytes, so it gets the limit rounded up and the exact limit is checked here, with
the same figure as the help text.
"""

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
    "age). Limit: {limit} per file (OLE_MAX_UPLOAD_MB){rounded}."
)
ROUNDED = "; the upload box shows it rounded up to {mb} MB"


def browser_limit_mb(max_upload_mb: float) -> int:
    """The uploader's own cap (whole MB, at least 1): the limit rounded up, so every file up to
    the real limit gets through and a bigger one is refused here by name."""
    return max(1, math.ceil(max_upload_mb))


def upload_form(settings: Settings) -> None:
    """Draw the form; on submit validate + save, select the new dataset, or show the error."""
    limit_mb = browser_limit_mb(settings.max_upload_mb)
    limit = uploads.format_mb(settings.max_upload_bytes)
    rounded = ROUNDED.format(mb=limit_mb) if limit != f"{limit_mb} MB" else ""
    st.markdown(HELP.format(limit=limit, rounded=rounded))
    with st.form("upload", clear_on_submit=False):
        name = st.text_input("Dataset name", key=state.DATA_UPLOAD_NAME, placeholder="my_study")
        files = st.file_uploader(
            uploads.DATA_BOX,
            accept_multiple_files=True,
            help=f"{uploads.ACCEPTED} files; at most {limit} each.",
            key=state.DATA_UPLOAD_FILES,
            max_upload_size=limit_mb,
        )
        obs_file = st.file_uploader(
            f"{uploads.OBS_BOX} (optional)",
            help=f"A {uploads.TABLES_ACCEPTED} table; at most {limit}.",
            key=state.DATA_UPLOAD_OBS,
            max_upload_size=limit_mb,
        )
        kinds_text = st.text_input(
            f"{uploads.KINDS_BOX} (optional)",
            placeholder="rna=counts, protein=continuous",
            help="Override an inferred modality kind: counts, proportion, "
            "continuous or categorical.",
        )
        replace = st.checkbox(uploads.REPLACE_BOX)
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
        message = widgets.user_message(exc)
        if not files:  # the uploader refuses files over its cap before Python sees them
            message += (
                f" (a file over {limit_mb} MB never reaches the server: the box itself refuses "
                "it and marks it in red)"
            )
        st.error(message, icon=":material/error:")
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
