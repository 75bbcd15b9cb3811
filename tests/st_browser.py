"""Playwright helpers for Streamlit pages (waits, pixel checks, screenshots, widgets)."""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

ARTIFACTS = Path(
    os.environ.get("ARTIFACT_DIR", Path(__file__).resolve().parents[1] / "test-artifacts")
)
APP = '[data-testid="stApp"]'
CHART = '[data-testid="stPlotlyChart"]'
# plotly.js attaches its state to the graph div; a gl3d scene has a .glplot only if WebGL worked
GL3D_SETTLED = """() => {
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const s = gd && gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene;
  return !!(s && s.glplot) || document.body.innerText.includes('WebGL is not supported');
}"""
GL3D_OK = """() => { const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  return !!gd._fullLayout.scene._scene.glplot; }"""


def wait_for_app_idle(page, timeout=60_000):
    """stApp carries data-test-script-state: initial -> running -> notRunning.
    (stStatusWidget only shows up ~0.5 s into a run, so 'wait until it is gone' is racy.)"""
    page.wait_for_selector(f'{APP}[data-test-connection-state="CONNECTED"]', timeout=timeout)
    page.wait_for_selector(f'{APP}[data-test-script-state="notRunning"]', timeout=timeout)


def wait_for_3d_chart(page, timeout=60_000):
    """Script finished != chart drawn: the 4.7 MB plotly chunk loads lazily afterwards."""
    page.wait_for_selector(f"{CHART} .js-plotly-plot", timeout=timeout)
    page.wait_for_function(GL3D_SETTLED, timeout=timeout)
    page.wait_for_timeout(300)  # let the first WebGL frame reach the compositor


def webgl_pixel_stats(page) -> dict:
    """Read pixels from a *screenshot* of the gl canvas (JS readback returns blank:
    plotly creates the context with preserveDrawingBuffer=false)."""
    canvas = page.locator(f"{CHART} .gl-container canvas").first
    rgb = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
    saturation = rgb.max(-1) - rgb.min(-1)
    return {
        "colored_frac": float((saturation > 60).mean()),
        "n_colors": len(np.unique(rgb.reshape(-1, 3), axis=0)),
    }


def assert_3d_chart_rendered(page):
    assert "WebGL is not supported" not in page.inner_text("body")
    assert page.evaluate(GL3D_OK), "plotly gl3d scene has no WebGL context"
    stats = webgl_pixel_stats(page)
    # measured: ok ~0.04 / ~900 colours; WebGL disabled: 0.0 / 2 colours
    assert stats["colored_frac"] > 0.005 and stats["n_colors"] > 50, stats
    return stats


SCREENSHOTS = Path(__file__).resolve().parents[1] / "assets" / "screenshots"


def screenshot(page, name: str, *, readme: bool = False) -> Path:
    """Full-page screenshot into test-artifacts/; with OLE_UPDATE_SCREENSHOTS=1 and
    ``readme=True`` also into assets/screenshots/ (the README's pictures)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if readme and os.environ.get("OLE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=False)
    return path


def chart_with_title(page, text: str):
    """The plotly chart whose title contains ``text`` (during a rerun the stale chart is still
    in the DOM beside the new one, so filter by text)."""
    return page.locator(f"{CHART}", has=page.locator(".gtitle", has_text=text))


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the st.selectbox labelled ``label``."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()
