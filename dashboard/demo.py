"""First launch: with an empty runs directory, provide a ready model on the default dataset.

If the repository ships a demo run (``assets/demo-run/``, made by ``DEMO_COMMAND``, which
trains with ``DEMO_ARGS``), it is copied into the runs directory: the 3D map shows at once.
Otherwise the same model is trained in the background (``python -m core train``, about 40 s
on 2 cores) and the Embeddings page shows its progress, then the map, without a click.
Set ``OLE_DEMO=0`` to switch this off; ``OLE_DEMO_ASSET`` points at another ready run to copy.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import streamlit as st

from dashboard.settings import REPO

DEMO_RUN = "demo-synthetic"
DEMO_ASSET = REPO / "assets" / "demo-run"
DEMO_ARGS = ["--data", "synthetic", "--model", "multivae", "--refits", "3", "--seed", "0"]
DEMO_COMMAND = "bash assets/build-demo-run.sh"  # trains with DEMO_ARGS, caches PCA/UMAP maps


def enabled() -> bool:
    return os.environ.get("OLE_DEMO", "1").strip().lower() not in ("0", "false", "no", "off")


def has_runs(runs_dir: Path) -> bool:
    return runs_dir.is_dir() and any(
        p.is_dir() and not p.name.startswith(".") for p in runs_dir.iterdir()
    )


def demo_asset() -> Path:
    value = os.environ.get("OLE_DEMO_ASSET", "").strip()
    return Path(value).expanduser() if value else DEMO_ASSET


def ensure_demo_run(runs_dir: Path, *, asset: Path | None = None) -> str | None:
    """Install (copy) or start training the demo run when ``runs_dir`` has no run.

    Returns the demo run's name when it did something, else None. The copy goes through a
    temporary directory and a rename, so a half-copied run is never listed.
    """
    if has_runs(runs_dir):
        return None
    asset = demo_asset() if asset is None else asset
    runs_dir.mkdir(parents=True, exist_ok=True)
    target = runs_dir / DEMO_RUN
    if (asset / "config.json").is_file() and (asset / "weights.json").is_file():
        tmp = runs_dir / f".{DEMO_RUN}.tmp-{uuid.uuid4().hex[:8]}"
        shutil.copytree(asset, tmp, ignore=shutil.ignore_patterns("train.log", "cancel"))
        os.replace(tmp, target)
    else:
        from core.train import launch_job

        launch_job(["train", "--out", str(target), *DEMO_ARGS])
    return DEMO_RUN


@st.cache_resource(show_spinner=False)
def ensure_demo_once(runs_dir: str) -> str | None:
    """:func:`ensure_demo_run` at most once per server process and runs directory (two
    sessions opening at the same time must not start two jobs)."""
    return ensure_demo_run(Path(runs_dir))
