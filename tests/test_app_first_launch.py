"""AppTest: first launch with an empty runs directory -> a ready model without a click."""

import json
import time

import pytest
from st_apptest import assert_clean, figure, new_app

from dashboard import demo


@pytest.fixture
def first_launch(ole_empty_dirs, monkeypatch):
    monkeypatch.setenv("OLE_DEMO", "1")
    return ole_empty_dirs


def test_shipped_demo_run_is_copied_and_shown(first_launch, tiny_run_template, monkeypatch):
    monkeypatch.setenv("OLE_DEMO_ASSET", str(tiny_run_template))
    at = new_app().run()
    assert_clean(at)
    assert at.session_state["dataset"] == "synthetic"
    assert at.session_state["run"] == demo.DEMO_RUN
    assert (first_launch.runs / demo.DEMO_RUN / "weights.json").is_file()
    fig = figure(at, "emb_map")
    assert fig["data"][0]["type"] == "scatter3d"
    assert not list(first_launch.runs.glob(".*tmp*"))  # copied through a temp dir + rename


@pytest.mark.slow
def test_without_a_shipped_run_the_demo_trains_in_the_background(first_launch, monkeypatch):
    monkeypatch.setenv("OLE_DEMO_ASSET", str(first_launch.cache / "no-such-run"))
    monkeypatch.setattr(
        demo,
        "DEMO_ARGS",
        [
            "--data",
            "synthetic",
            "--epochs",
            "3",
            "--latent",
            "4",
            "--set",
            "params.n_obs=150",
            "--set",
            "params.n_genes=40",
        ],
    )
    at = new_app().run()
    assert_clean(at)
    assert at.session_state["run"] == demo.DEMO_RUN
    if not at.get("plotly_chart"):  # still training: progress is shown, no click needed
        assert any("Training" in i.value for i in at.info)
        assert at.get("progress")
    status_path = first_launch.runs / demo.DEMO_RUN / "status.json"
    deadline = time.monotonic() + 120
    while json.loads(status_path.read_text()).get("state") in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    at.run()  # what the polling fragment triggers in the browser
    assert_clean(at)
    assert figure(at, "emb_map")["data"][0]["type"] == "scatter3d"
