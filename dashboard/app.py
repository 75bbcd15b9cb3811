"""Omics Latent Explorer: ``python -m streamlit run dashboard/app.py`` (from the repo root).

The entry script: page navigation over ../pages/*.py, the global sidebar (dataset and run
pickers, kept across pages and mirrored in the URL) and an error guard around every page, so
a problem in the input shows as a message, never as a traceback.
"""

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # streamlit only puts dashboard/ on sys.path; core lives beside it
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from dashboard import demo, sidebar, widgets  # noqa: E402
from dashboard.settings import get_settings  # noqa: E402

st.set_page_config(
    page_title="Omics Latent Explorer", page_icon=":material/scatter_plot:", layout="wide"
)

# Paths are relative to this file's folder (dashboard/). One line per page; the order is the
# sidebar's. Embeddings is the default, so the first launch opens on the 3D map.
PAGES = [
    st.Page("../pages/data.py", title="Data", icon=":material/table_view:", url_path="data"),
    st.Page("../pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(
        "../pages/embeddings.py",
        title="Embeddings",
        icon=":material/scatter_plot:",
        url_path="embeddings",
        default=True,
    ),
    st.Page(
        "../pages/reconstruction.py",
        title="Reconstruction",
        icon=":material/compare:",
        url_path="reconstruction",
    ),
    st.Page(
        "../pages/perturbation.py",
        title="Perturbation",
        icon=":material/swap_calls:",
        url_path="perturbation",
    ),
    st.Page(
        "../pages/generation.py",
        title="Generation",
        icon=":material/auto_awesome:",
        url_path="generation",
    ),
]

nav = st.navigation(PAGES)
with widgets.guard():
    if demo.enabled() and not demo.has_runs(get_settings().runs_dir):
        demo.ensure_demo_once(str(get_settings().runs_dir))  # first launch: a ready model
    sidebar.render()
with widgets.guard():
    nav.run()
