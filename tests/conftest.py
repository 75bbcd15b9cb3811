"""Shared fixtures: Streamlit cache isolation, temporary OLE_* directories with a tiny trained
run, a real Streamlit server, and Playwright pointed at Debian's Chromium.

Fixtures for everyone:
- ``tiny_run_template`` (session): a small multi-modal run on ``synthetic`` (200 samples),
  trained once per test session; never written to by tests.
- ``ole_dirs``: OLE_RUNS_DIR / OLE_UPLOAD_DIR pointed at fresh temp dirs, with a
  copy of the tiny run in the runs dir (``ole_dirs.run_name``); use it in AppTest tests.
- ``ole_empty_dirs``: the same with an empty runs directory (OLE_DEMO=0: no demo run).
- ``streamlit_server(runs=...)`` factory and ``streamlit_url`` (a server over a copy of the tiny run).
- pytest-playwright's ``page`` uses /usr/bin/chromium (never ``playwright install``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "dashboard" / "app.py"
TINY_RUN = "tiny-synthetic"
TINY_PARAMS = {"n_obs": 200, "n_genes": 60, "n_cpgs": 30, "n_proteins": 12, "n_drugs": 4}

# Debian's /usr/bin/chromium is a shell wrapper around /usr/lib/chromium/chromium; both work.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root / containers
    "--disable-dev-shm-usage",
    "--disable-gpu",  # no real GPU; WebGL still works via SwiftShader
    "--use-angle=swiftshader-webgl",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(autouse=True)
def _clear_streamlit_caches():
    """st.cache_data / st.cache_resource are process-global: isolate AppTest tests."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield


# ------------------------------------------------------------------ tiny run + OLE_* dirs
def train_tiny_run(out: Path, *, epochs: int = 5, model: str = "multivae") -> Path:
    """Train a small run on the built-in synthetic data (about 5 s on 2 cores)."""
    from core.models import ModelConfig
    from core.runs import DataConfig, RunConfig, TrainConfig, load_data_config
    from core.train import train

    cfg = RunConfig(
        data=DataConfig(sources=["synthetic"], params=dict(TINY_PARAMS)),
        model=ModelConfig(model=model, n_latent=6, n_hidden=32),
        train=TrainConfig(epochs=epochs, refits=1, seed=0),
    )
    train(cfg, load_data_config(cfg.data), out=out, progress=None)
    return out


@pytest.fixture(scope="session")
def tiny_run_template(tmp_path_factory) -> Path:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return train_tiny_run(tmp_path_factory.mktemp("template") / TINY_RUN)


@dataclass(frozen=True)
class OleDirs:
    runs: Path
    uploads: Path
    cache: Path
    run_name: str | None

    @property
    def env(self) -> dict[str, str]:
        return {
            "OLE_RUNS_DIR": str(self.runs),
            "OLE_UPLOAD_DIR": str(self.uploads),
            "OLE_DEMO": "0",  # no first-launch demo run unless a test asks for it
        }


def make_dirs(root: Path, template: Path | None) -> OleDirs:
    dirs = OleDirs(
        root / "runs", root / "uploads", root / "cache", template.name if template else None
    )
    for d in (dirs.runs, dirs.uploads, dirs.cache):
        d.mkdir(parents=True, exist_ok=True)
    if template is not None:
        shutil.copytree(template, dirs.runs / template.name)
    return dirs


@pytest.fixture
def ole_dirs(tmp_path, monkeypatch, tiny_run_template) -> OleDirs:
    dirs = make_dirs(tmp_path, tiny_run_template)
    for k, v in dirs.env.items():
        monkeypatch.setenv(k, v)
    return dirs


@pytest.fixture
def ole_empty_dirs(tmp_path, monkeypatch) -> OleDirs:
    dirs = make_dirs(tmp_path, None)
    for k, v in dirs.env.items():
        monkeypatch.setenv(k, v)
    return dirs


# ------------------------------------------------------------------ a real Streamlit server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy
    try:
        with opener.open(url + "/_stcore/health", timeout=1) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory):
    """Factory: ``streamlit_server(dirs) -> url`` starts a server whose OLE_* variables point at
    ``dirs`` (an OleDirs); every server started is stopped (only ours) at the session's end."""
    procs: list[subprocess.Popen] = []

    def start(dirs: OleDirs, *, extra_env: dict[str, str] | None = None) -> str:
        port = _free_port()
        log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
        env = {**os.environ, **dirs.env, "OMP_NUM_THREADS": "1", **(extra_env or {})}
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ENTRY),
            "--server.headless=true",
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _health_ok(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        return url

    yield start
    for proc in procs:  # only the processes we started
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def streamlit_url(streamlit_server, tmp_path_factory, tiny_run_template) -> str:
    """A server over a copy of the tiny run (shared by the browser tests of a session)."""
    return streamlit_server(make_dirs(tmp_path_factory.mktemp("server"), tiny_run_template))


# --- pytest-playwright: make its browser/page fixtures use the system chromium
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture(scope="session")
def base_url(streamlit_url):  # lets tests do page.goto("/")
    return streamlit_url
