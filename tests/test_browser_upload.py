"""Real browser: upload your own CSV files on the Data page; a file over OLE_MAX_UPLOAD_MB or of
a type the app cannot read is refused with a message naming it."""

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect
from st_browser import wait_for_app_idle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def upload_server(streamlit_server, tmp_path_factory):
    from conftest import make_dirs

    dirs = make_dirs(tmp_path_factory.mktemp("upload"), None)
    return streamlit_server(dirs, extra_env={"OLE_MAX_UPLOAD_MB": "0.05"}), dirs  # ~52 KB


def upload(page, url, name, *, modality, metadata):
    """On the Data page, upload one modality CSV and a metadata CSV as dataset ``name``."""
    page.goto(f"{url}/data")
    wait_for_app_idle(page)
    page.get_by_text("Upload a dataset").click()
    page.get_by_label("Dataset name").fill(name)
    uploaders = page.get_by_test_id("stFileUploaderDropzoneInput")
    uploaders.nth(0).set_input_files([str(modality)])
    uploaders.nth(1).set_input_files([str(metadata)])
    page.get_by_role("button", name="Validate and save").click()
    expect(page.get_by_text(f"Saved {name}")).to_be_visible(timeout=60_000)


def _csv(path, df):
    df.to_csv(path, index_label="sample")
    return path


def test_upload_csvs_then_refuse_a_big_file(page, upload_server, tmp_path):
    url, dirs = upload_server
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(40)]
    rna = _csv(
        tmp_path / "rna.csv",
        pd.DataFrame(rng.poisson(4, (40, 10)), index=ids, columns=[f"g{j}" for j in range(10)]),
    )
    meta = _csv(tmp_path / "meta.csv", pd.DataFrame({"group": ["a", "b"] * 20}, index=ids))
    big = _csv(tmp_path / "protein.csv", pd.DataFrame(rng.normal(size=(40, 400)), index=ids))
    assert big.stat().st_size > 0.05 * 2**20

    upload(page, url, "mystudy", modality=rna, metadata=meta)
    wait_for_app_idle(page)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("combobox", name="Dataset")).to_have_value("mystudy")
    expect(page.get_by_role("heading", name="mystudy: 40 samples")).to_be_visible()
    assert sorted(p.name for p in (dirs.uploads / "mystudy").iterdir()) == ["obs.csv", "rna.csv"]

    dropzones = page.get_by_test_id("stFileUploaderDropzone")
    if not dropzones.first.is_visible():
        page.get_by_text("Upload a dataset").click()
    page.get_by_test_id("stFileUploaderDropzoneInput").nth(0).set_input_files([str(big)])
    page.get_by_role("button", name="Validate and save").click()
    expect(page.get_by_text("protein.csv is 0.", exact=False)).to_be_visible(timeout=30_000)
    expect(
        page.get_by_text("over the upload limit of 0.05 MB per file", exact=False)
    ).to_be_visible()
    assert not (dirs.uploads / "mystudy" / "protein.csv").exists()

    # a spreadsheet: the browser lets it through (no type filter), the form names it
    data_box = page.get_by_test_id("stFileUploader").nth(0)
    chips = data_box.get_by_test_id("stFileChipDeleteBtn")
    while chips.count():  # empty the data files box
        chips.first.click()
        page.wait_for_timeout(300)
    page.get_by_label("Dataset name").fill("sheet")
    xlsx = tmp_path / "rna.xlsx"
    xlsx.write_bytes(b"PK\x03\x04 not a table")
    page.get_by_test_id("stFileUploaderDropzoneInput").nth(0).set_input_files([str(xlsx)])
    page.get_by_role("button", name="Validate and save").click()
    expect(page.get_by_text("rna.xlsx: unsupported file type .xlsx", exact=False)).to_be_visible(
        timeout=30_000
    )
    expect(page.get_by_text("no data file uploaded", exact=False)).to_have_count(0)


def test_new_user_journey_upload_train_and_rotate_the_map(page, upload_server, tmp_path):
    """Issue 4's 'done when': own CSV files -> a trained model -> its 3D map coloured by the
    user's metadata, all in the browser."""
    from st_browser import CHART, assert_3d_chart_rendered, screenshot, wait_for_3d_chart

    url, dirs = upload_server
    rng = np.random.default_rng(1)
    ids = [f"m{i}" for i in range(60)]
    group = np.array(["ctrl", "treated"] * 30)
    counts = rng.poisson(np.where(group[:, None] == "ctrl", 3.0, 9.0), (60, 12))
    rna = _csv(
        tmp_path / "expr.csv", pd.DataFrame(counts, index=ids, columns=[f"g{j}" for j in range(12)])
    )
    meta = _csv(tmp_path / "samples.csv", pd.DataFrame({"arm": group}, index=ids))

    upload(page, url, "journey", modality=rna, metadata=meta)

    page.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("New run on")).to_be_visible(timeout=60_000)
    wait_for_app_idle(page)
    epochs = page.get_by_label("epochs", exact=True)
    for attempt in range(3):  # the form's expander may re-render while the page settles
        if not epochs.is_visible():
            page.get_by_text("New run on").click()
        try:
            epochs.fill("5", timeout=10_000)
            page.get_by_label("run name").fill("journey-vae", timeout=10_000)
            break
        except PlaywrightTimeout:
            assert attempt < 2, "the new-run form never became editable"
            wait_for_app_idle(page)
    page.get_by_role("button", name="Train").click()
    expect(page.get_by_text("journey-vae: done")).to_be_visible(timeout=120_000)
    assert (dirs.runs / "journey-vae" / "weights.json").is_file()

    page.get_by_role("link", name="Embeddings").click()
    wait_for_3d_chart(page, timeout=60_000)
    expect(page.get_by_text("coloured by arm")).to_be_visible()
    assert_3d_chart_rendered(page)
    canvas = page.locator(f"{CHART} .gl-container canvas").first
    before = canvas.screenshot()
    box = canvas.bounding_box()  # rotate: drag across the 3D scene
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40)
    page.mouse.up()
    page.wait_for_timeout(500)
    assert canvas.screenshot() != before, "dragging did not rotate the 3D map"
    assert_3d_chart_rendered(page)
    screenshot(page, "journey_map.png")
