"""AppTest + unit tests: the Train page (form from the config dataclasses, background job,
live curves, comparison) and its helpers."""

import json
import time

import pandas as pd
import pytest
from st_apptest import assert_clean, figure, open_page

from core.cli import build_parser
from core.train import config_from_args
from dashboard import training


def _wait_done(path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = json.loads((path / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("state") in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"training did not finish: {status}")


def test_form_fields_come_from_the_config_dataclasses(ole_dirs):
    at = open_page("train")
    assert_clean(at)
    labels = {w.label for w in at.number_input} | {w.label for w in at.selectbox}
    assert {
        "latent dimensions",
        "epochs",
        "beta (KL weight)",
        "ensemble refits",
        "hidden units",
        "learning rate",
        "model",
        "translator scheme",
        "device",
    } <= labels
    assert at.selectbox(key="m_model").options == ["vae", "cvae", "multivae", "translator"]
    assert at.selectbox(key="m_model").value == "multivae"  # synthetic has 4 modalities
    # the runs table lists the tiny run with its status
    table = at.dataframe[0].value
    assert list(table["name"]) == [ole_dirs.run_name] and list(table["state"]) == ["done"]
    assert 0 <= table["knn_latent"].iloc[0] <= 1 and table["recon_vs_mean"].iloc[0] > 0


@pytest.mark.slow
def test_launch_follow_and_compare(ole_dirs):
    at = open_page("train", dataset="nutrimouse")  # 40 samples: trains in seconds
    at.number_input(key="t_epochs").set_value(3)
    at.number_input(key="m_n_latent").set_value(4)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert_clean(at)
    name = at.session_state["train_launched"]
    assert name.startswith("nutrimouse-multivae-")
    status = _wait_done(ole_dirs.runs / name)
    assert status["state"] == "done", status
    config = json.loads((ole_dirs.runs / name / "config.json").read_text())
    assert config["model"]["n_latent"] == 4 and config["train"]["epochs"] == 3
    at.run()
    assert_clean(at)
    assert at.session_state["run"] == name  # the new run is selected in the sidebar
    assert any(s.value == f"{name}: done" for s in at.subheader)
    live = figure(at, "live_curves")
    names = {t["name"] for t in live["data"]}
    assert names == {f"{name} train", f"{name} val"}
    assert len(live["data"][0]["x"]) == 3  # one point per epoch
    # compare two runs
    at.multiselect(key="train_compare").set_value([name, ole_dirs.run_name]).run()
    assert_clean(at)
    compare = figure(at, "compare_curves")
    runs_drawn = {t["name"].rsplit(" ", 1)[0] for t in compare["data"]}
    assert runs_drawn == {name, ole_dirs.run_name}


def test_argv_round_trips_through_the_cli(tmp_path):
    argv = training.train_argv(
        out=tmp_path / "r",
        sources=["synthetic"],
        kinds={"protein": "continuous"},
        conditions=["tissue"],
        sections={
            "model": {"model": "cvae", "n_latent": 7, "n_hidden": 64, "translator_target": None},
            "train": {
                "epochs": 12,
                "beta": 0.5,
                "refits": 2,
                "seed": 3,
                "lr": 0.002,
                "device": "cpu",
            },
            "data": {"val_frac": 0.2, "label": None},
        },
    )
    cfg = config_from_args(build_parser().parse_args(argv))
    assert cfg.model.model == "cvae" and cfg.model.n_latent == 7 and cfg.model.n_hidden == 64
    assert cfg.train.epochs == 12 and cfg.train.beta == 0.5 and cfg.train.refits == 2
    assert cfg.train.seed == 3 and cfg.train.lr == 0.002 and cfg.train.device == "cpu"
    assert cfg.data.val_frac == 0.2 and cfg.data.conditions == ["tissue"]
    assert cfg.data.kinds == {"protein": "continuous"}


def test_progress_and_time_left():
    history = pd.DataFrame({"refit": [0] * 5, "epoch": range(1, 6), "seconds": [1, 2, 3, 4, 5]})
    frac, text = training.progress(
        {"state": "running", "epoch": 5, "n_epochs": 10, "refit": 0, "n_refits": 2}, history
    )
    assert frac == 0.25
    assert "epoch 5/10" in text and "refit 1/2" in text and "15 s left" in text
    frac, text = training.progress({"state": "queued"}, pd.DataFrame())
    assert frac == 0.0 and "queued" in text
    assert training.loss_terms(
        pd.DataFrame(columns=["train_kl", "train_recon_rna", "train_total", "val_total"])
    ) == ["total", "kl", "recon_rna"]


@pytest.mark.slow
def test_cancel_a_running_job(ole_dirs):
    at = open_page("train", dataset="nutrimouse")
    at.number_input(key="t_epochs").set_value(5000)
    at.number_input(key="t_patience").set_value(0)  # no early stop: it must be the cancel
    at.button(key="FormSubmitter:train_form-Train").click().run()
    name = at.session_state["train_launched"]
    path = ole_dirs.runs / name
    deadline = time.monotonic() + 120
    while json.loads((path / "status.json").read_text()).get("state") != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    at.run()
    assert at.get("progress"), "a running job shows a progress bar"
    assert "left" in at.get("progress")[0].proto.text or "epoch" in at.get("progress")[0].proto.text
    at.button(key="train_cancel").click().run()
    assert (path / "cancel").exists()
    assert _wait_done(path)["state"] == "cancelled"
