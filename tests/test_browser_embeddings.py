"""Real browser (headless Debian Chromium): the Embeddings page draws a 3D map, colour changes
reach the URL and a copied link reopens the same view; screenshots of every page."""

import re

import pytest
from playwright.sync_api import expect
from st_browser import (
    CHART,
    assert_3d_chart_rendered,
    chart_with_title,
    choose,
    screenshot,
    wait_for_3d_chart,
    wait_for_app_idle,
)

pytestmark = pytest.mark.browser


def test_embeddings_3d_map_draws_pixels(page):
    page.goto("/")
    wait_for_app_idle(page)
    wait_for_3d_chart(page)
    expect(page.get_by_role("heading", name="Embeddings")).to_be_visible()
    stats = assert_3d_chart_rendered(page)
    assert stats["colored_frac"] > 0.005
    screenshot(page, "embeddings.png", readme=True)


def test_colour_change_is_in_the_url_and_the_link_reopens_it(page, browser):
    page.goto("/")
    wait_for_app_idle(page)
    wait_for_3d_chart(page)
    choose(page, "Colour by", "metadata: age")
    expect(chart_with_title(page, "coloured by age")).to_have_count(1, timeout=30_000)
    wait_for_app_idle(page)
    expect(page.locator(CHART)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"emb_color=metadata"))
    link = page.url
    other = browser.new_page()  # a second, independent session from the copied link
    try:
        other.goto(link)
        wait_for_app_idle(other)
        expect(chart_with_title(other, "coloured by age")).to_have_count(1, timeout=30_000)
        wait_for_3d_chart(other)
        assert_3d_chart_rendered(other)
    finally:
        other.close()


@pytest.mark.parametrize(
    "page_name, heading",
    [("data", "Data"), ("train", "Train"), ("reconstruction", "Reconstruction")],
)
def test_page_renders_in_the_browser(page, page_name, heading):
    page.goto(f"/{page_name}")
    wait_for_app_idle(page)
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(page.locator(f"{CHART} .js-plotly-plot").first).to_be_visible(timeout=60_000)
    assert "Traceback" not in page.inner_text("body")
    page.wait_for_timeout(500)
    screenshot(page, f"{page_name}.png", readme=True)
