"""Make the README's screenshots (not a test): ``python tests/screenshots.py RUNS_DIR``.

Starts the app on RUNS_DIR (e.g. a directory holding a copy of the demo run
``assets/demo-run``, made by ``bash assets/build-demo-run.sh``), opens every page in headless
Chromium, waits until it is drawn (on Generation: after pressing Generate) and writes
assets/screenshots/<page>.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conftest import CHROMIUM, CHROMIUM_ARGS, ENTRY, REPO, _free_port, _health_ok  # noqa: E402
from st_browser import SCREENSHOTS, wait_for_3d_chart, wait_for_app_idle  # noqa: E402

# page, query string, what to wait for
SHOTS = [
    ("embeddings", "?emb_method=UMAP", "umap"),
    ("data", "", "chart"),
    ("train", "", "chart"),
    ("reconstruction", "", "chart"),
    ("perturbation", "", "3d"),
    ("generation", "", "generate"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {
        **os.environ,
        "OLE_RUNS_DIR": str(args.runs_dir.resolve()),
        "OLE_DEMO": "0",
        "OLE_UPLOAD_DIR": tempfile.mkdtemp(prefix="ole-shots-"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ENTRY),
            "--server.headless=true",
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            "--browser.gatherUsageStats=false",
            "--client.toolbarMode=minimal",
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _health_ok(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("streamlit did not start")
            time.sleep(0.2)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            for name, query, wait in SHOTS:
                page.goto(f"{url}/{'' if name == 'embeddings' else name}{query}")
                wait_for_app_idle(page, timeout=300_000)
                if wait == "umap":  # a slow map is computed in the background: wait for it
                    page.wait_for_selector(".gtitle:has-text('UMAP')", timeout=300_000)
                    wait_for_app_idle(page, timeout=300_000)
                if wait == "generate":
                    page.get_by_role("button", name="Generate").click()
                    page.wait_for_timeout(1000)
                    wait_for_app_idle(page, timeout=300_000)
                if wait in ("umap", "3d", "generate"):
                    wait_for_3d_chart(page, timeout=120_000)
                else:
                    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
                page.wait_for_timeout(1500)
                out = SCREENSHOTS / f"{name}.png"
                page.screenshot(path=str(out))
                print(out)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
