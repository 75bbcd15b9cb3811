"""The one place session-state keys live.

Pages never write raw key strings: they use the constants and helpers here. View options that
belong in a shareable link (dataset, run, method, dimensions, colour, ...) are widgets bound to
the URL query parameters (``bind="query-params"``) whose values persist across page switches
(``persist_state="session"``); :func:`bound` returns those keyword arguments. Everything lives
in ``st.session_state``, so two browser sessions never share a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

# Global pickers (sidebar, app.py); the key is also the query-parameter name.
DATASET = "dataset"
RUN = "run"

# Embeddings page
EMB_METHOD = "emb_method"
EMB_DIMS = "emb_dims"
EMB_COLOR = "emb_color"
EMB_FEATURE = "emb_feature"
EMB_SIZE = "emb_size"
EMB_OPACITY = "emb_opacity"
EMB_MAX_POINTS = "emb_max_points"
EMB_NEIGHBORS = "emb_neighbors"
EMB_MIN_DIST = "emb_min_dist"
EMB_PERPLEXITY = "emb_perplexity"
EMB_SEED = "emb_seed"
EMB_MAP = "emb_map"  # the map chart widget (box / lasso selection on 2D maps)
EMB_SELECTION = "emb_selection"  # (run path, tuple of sample ids) picked on the map

# Data page
DATA_FEATURES = "data_features"
DATA_UPLOAD_NAME = "data_upload_name"
DATA_UPLOAD_FILES = "data_upload_files"
DATA_UPLOAD_OBS = "data_upload_obs"
DATA_UPLOAD_MSG = "data_upload_msg"

# Train page
TRAIN_COMPARE = "train_compare"
TRAIN_LAUNCHED = "train_launched"  # run path launched in this session (followed live)
TRAIN_TERM = "train_term"

# Reconstruction page
REC_MODALITY = "rec_modality"
REC_FEATURE = "rec_feature"
REC_COLOR = "rec_color"
REC_LOG1P = "rec_log1p"

# Generation page (added by the GENERATE helper)
GEN_CONDITIONS = "gen_conditions"  # obs columns to set
GEN_VALUE_PREFIX = "gen_value_"  # + column name: the chosen value of that column
GEN_N = "gen_n"
GEN_MODE = "gen_mode"
GEN_TEMPERATURE = "gen_temperature"
GEN_OUTPUT = "gen_output"
GEN_SEED = "gen_seed"
GEN_FEATURES = "gen_features"
GEN_LABEL = "gen_label"
GEN_RESULT = "gen_result"  # (run path, generated MuData) of this session
GEN_REPORT = "gen_report"  # (run path, label, QualityReport) of this session

# Perturbation page (added by the PERTURB helper)
PERT_FEATURE = "pert_feature"  # "MOD:FEATURE"
PERT_KIND = "pert_kind"
PERT_VALUE = "pert_value"
PERT_LEVEL = "pert_level"  # categorical: the level label to set
PERT_SUBSET_COL = "pert_subset_col"
PERT_SUBSET_VAL = "pert_subset_val"
PERT_METHOD = "pert_method"
PERT_MODALITIES = "pert_modalities"  # table filter: target modalities
PERT_ONLY_SIG = "pert_only_sig"
PERT_SEARCH = "pert_search"
PERT_TARGET = "pert_target"  # the target whose distribution is shown
PERT_SCREEN = "pert_screen"  # (run path, modality, method, screen table) of this session
PERT_SCREEN_MOD = "pert_screen_mod"
PERT_TABLE = "pert_table"  # the association table widget (row selection)
PERT_PICKED = "pert_picked"  # the target of the last clicked row (applied once)

# Requests from one script run to the next (applied before widgets are created)
_PENDING_DATASET = "_pending_dataset"
_PENDING_RUN = "_pending_run"


def bound(key: str) -> dict[str, Any]:
    """Widget kwargs that mirror ``key`` in the URL and keep it across page switches."""
    return {"key": key, "bind": "query-params", "persist_state": "session"}


def get(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)


def put(key: str, value: Any) -> None:
    """Set a non-widget value (or a widget's value *before* the widget is created)."""
    st.session_state[key] = value


def dataset() -> str | None:
    """The dataset chosen in the sidebar (a built-in name or an uploaded dataset's name)."""
    return st.session_state.get(DATASET)


def run() -> str | None:
    """The run chosen in the sidebar (its directory name inside the runs directory)."""
    return st.session_state.get(RUN)


def request_dataset(name: str, *, run: str | None = None) -> None:
    """Ask the sidebar to select ``name`` (and optionally a run) on the next script run."""
    st.session_state[_PENDING_DATASET] = name
    if run is not None:
        st.session_state[_PENDING_RUN] = run


def request_run(name: str) -> None:
    st.session_state[_PENDING_RUN] = name


def choose(key: str, options: Sequence[Any], *, preferred: Any = None) -> None:
    """Before a bound selectbox is drawn: keep its value valid for ``options``.

    Order of precedence: a pending request, the current value, the URL, ``preferred``, the
    first option. Must run before the widget with this key is created.
    """
    pending_key = {DATASET: _PENDING_DATASET, RUN: _PENDING_RUN}.get(key)
    pending = st.session_state.pop(pending_key, None) if pending_key else None
    options = list(options)
    for candidate in (pending, st.session_state.get(key), st.query_params.get(key), preferred):
        if candidate is not None and candidate in options:
            st.session_state[key] = candidate
            return
    st.session_state[key] = options[0] if options else None


def selection(run_path: str) -> tuple[str, ...]:
    """Sample ids selected on the Embeddings map for this run (empty when none)."""
    picked = st.session_state.get(EMB_SELECTION)
    return picked[1] if picked and picked[0] == str(run_path) else ()


# Added for the Data / Train pages' URL-bound options and the Train form (append only)
DATA_SPLIT = "data_split"  # Data page: "Split by" metadata column
TRAIN_FORM = "train_form_open"  # Train page: whether the new-run expander is open
TRAIN_FORM_DEFAULTS = "_train_form_defaults"  # ((dataset, model), {widget key: default shown})
TRAIN_MODEL_DEFAULT = "_train_model_default"  # (dataset, {model picker key: default model})
TRAIN_FOLD = "_train_fold_form"  # a run was just launched: fold the new-run form on the next run

# Perturbation page, URL-bound values and what they were chosen for (added for issue 4/5 fixes)
PERT_VALUE_SET = "pert_value_set"  # continuous "set": the value in data units
PERT_SHIFT = "pert_value_shift"  # "shift": k standard deviations
PERT_KIND_FOR = "_pert_kind_for"  # (feature type, {PERT_KIND: its default}): forms.follow_defaults
PERT_VALUE_FOR = "pert_value_for"  # the feature "MOD:FEATURE" PERT_VALUE_SET was chosen for
