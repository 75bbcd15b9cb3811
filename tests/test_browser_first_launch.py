"""Real browser: the first-launch journey. An empty runs directory, the app's start page, no
click: the default dataset, a ready demo run and its 3D latent map."""

import pytest
from playwright.sync_api import expect
from st_browser import APP, assert_3d_chart_rendered, screenshot, wait_for_3d_chart

from dashboard import demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def first_launch_url(streamlit_server, tmp_path_factory, tiny_run_template):
    from conftest import make_dirs

    dirs = make_dirs(tmp_path_factory.mktemp("first-launch"), None)  # empty runs dir
    url = streamlit_server(
        dirs, extra_env={"OLE_DEMO": "1", "OLE_DEMO_ASSET": str(tiny_run_template)}
    )
    return url, dirs


def test_first_launch_shows_a_3d_map_without_a_click(page, first_launch_url):
    url, dirs = first_launch_url
    assert not any(dirs.runs.iterdir())
    page.goto(url)
    page.wait_for_selector(f'{APP}[data-test-connection-state="CONNECTED"]', timeout=60_000)
    wait_for_3d_chart(page, timeout=60_000)  # no click anywhere
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("combobox", name="Dataset")).to_have_value("synthetic")
    expect(sidebar.get_by_role("combobox", name="Run")).to_have_value(demo.DEMO_RUN)
    assert_3d_chart_rendered(page)
    assert (dirs.runs / demo.DEMO_RUN / "weights.json").is_file()
    screenshot(page, "first_launch.png")
