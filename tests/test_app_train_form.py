"""AppTest + unit tests: the Train form follows the chosen model's defaults, refuses a bad
configuration before anything is launched (in the form's words, the page still drawn), folds
away after a launch; the run comparison lives in the URL; time left; the runs table."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from st_apptest import assert_clean, open_page

from core.cli import build_parser
from core.errors import InputError
from core.model_config import model_defaults
from core.runs import train_defaults
from core.train import config_from_args
from dashboard import sidebar, training

SUBMIT = "FormSubmitter:train_form-Train"


@pytest.fixture
def launched(monkeypatch):
    """Replace the background job by a recorder: the argv of every launch."""
    calls = []
    monkeypatch.setattr("core.train.launch_job", lambda argv: calls.append(list(argv)))
    return calls


def _config(argv):
    return config_from_args(build_parser().parse_args(argv))


def _page_still_drawn(at):
    assert any(s.value == "All runs" for s in at.subheader), [s.value for s in at.subheader]
    assert len(at.dataframe) == 1


def test_translator_defaults_follow_the_model_picker(ole_dirs, launched):
    at = open_page("train")
    assert_clean(at)
    assert at.number_input(key="m_n_hidden").value == 128
    assert at.number_input(key="t_beta").value == 1.0
    at.selectbox(key="m_model").select("translator").run()
    assert_clean(at)
    expected = {**model_defaults("translator", 4), **train_defaults("translator")}
    assert expected["n_hidden"] == 256 and expected["beta"] == 0.1
    assert at.number_input(key="m_n_hidden").value == 256
    assert at.number_input(key="t_beta").value == 0.1
    at.button(key=SUBMIT).click().run()
    assert_clean(at)
    assert len(launched) == 1
    cfg = _config(launched[0])
    assert cfg.model.model == "translator"
    assert cfg.model.n_hidden == 256 and cfg.train.beta == 0.1
    assert cfg.model.n_latent == expected["n_latent"]


def test_a_value_the_user_changed_survives_a_model_switch(ole_dirs):
    at = open_page("train")
    at.selectbox(key="m_model").select("cvae").run()
    at.number_input(key="m_n_latent").set_value(7)
    at.button(key=SUBMIT).click().run()  # refused (no condition), but the value is submitted
    assert at.number_input(key="m_n_latent").value == 7
    at.selectbox(key="m_model").select("translator").run()
    assert at.number_input(key="m_n_latent").value == 7  # changed by the user: kept
    assert at.number_input(key="m_n_hidden").value == 256  # untouched: the new default
    at.selectbox(key="m_model").select("multivae").run()
    assert (
        at.number_input(key="m_n_hidden").value == 128
        and at.number_input(key="t_beta").value == 1.0
    )


def test_cvae_without_conditions_is_refused_on_the_form(ole_dirs, launched):
    at = open_page("train")
    at.selectbox(key="m_model").select("cvae").run()
    at.button(key=SUBMIT).click().run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "needs at least one condition" in errors[0] and "conditions (CVAE)" in errors[0]
    assert "Error" not in errors[0] and "--" not in errors[0]
    assert launched == [] and sorted(p.name for p in ole_dirs.runs.iterdir()) == [ole_dirs.run_name]
    _page_still_drawn(at)


def test_zero_latent_dimensions_is_refused_on_the_form(ole_dirs, launched):
    at = open_page("train")
    assert at.number_input(key="m_n_latent").min == 1  # the input itself refuses 0
    assert at.number_input(key="t_epochs").min == 1 and at.number_input(key="t_beta").min == 0
    at.number_input(key="m_n_latent").set_value(0)
    at.button(key=SUBMIT).click().run()
    assert all(_config(argv).model.n_latent >= 1 for argv in launched)  # never a doomed run
    _page_still_drawn(at)
    # what the input cannot enforce, the check before launching does, in the form's words
    with pytest.raises(InputError) as info:
        training.build_config(
            sources=["synthetic"], kinds={}, conditions=[], sections={"model": {"n_latent": 0}}
        )
    assert training.ui_message(info.value) == "latent dimensions must be >= 1, got 0"


def test_a_bad_run_name_keeps_the_page(ole_dirs, launched):
    at = open_page("train")
    next(t for t in at.text_input if t.label == "run name").input("bad name!")
    at.button(key=SUBMIT).click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("run name 'bad name!' is not allowed")
    assert launched == []
    _page_still_drawn(at)
    assert any(s.value.startswith(f"{ole_dirs.run_name}:") for s in at.subheader)  # live panel


def test_the_form_folds_away_after_a_launch(ole_dirs, launched):
    at = open_page("train", dataset="nutrimouse")  # no run yet: the form is open
    form = next(e for e in at.expander if e.label.startswith("New run on"))
    assert form.proto.expanded
    next(t for t in at.text_input if t.label == "run name").input("fold-test")
    at.button(key=SUBMIT).click().run()
    assert_clean(at)
    assert len(launched) == 1
    form = next(e for e in at.expander if e.label.startswith("New run on"))
    assert not form.proto.expanded


def test_run_comparison_comes_from_the_url(ole_dirs):
    second = "tiny-copy"
    shutil.copytree(ole_dirs.runs / ole_dirs.run_name, ole_dirs.runs / second)
    at = open_page("train", train_compare=[ole_dirs.run_name, second], train_term="kl")
    assert_clean(at)
    assert at.multiselect(key="train_compare").value == [ole_dirs.run_name, second]
    assert at.multiselect(key="train_term").value == ["kl"]
    curves = json.loads(at.get("plotly_chart")[-1].proto.spec)
    assert {t["name"].rsplit(" ", 1)[0] for t in curves["data"]} == {ole_dirs.run_name, second}
    # a run in the link that no longer exists is dropped, not an error
    shutil.rmtree(ole_dirs.runs / second)
    at = open_page("train", train_compare=[ole_dirs.run_name, second])
    assert_clean(at)
    assert at.multiselect(key="train_compare").value == [ole_dirs.run_name]


def test_failed_run_errors_read_in_the_form_words():
    status = {
        "state": "failed",
        "error": "InputError: model 'cvae' needs at least one --condition COLUMN (an obs column)",
    }
    assert training.status_error(status) == (
        "model 'cvae' needs at least one condition: choose a metadata column under "
        "'conditions (CVAE)'"
    )
    assert training.ui_message("n_latent must be >= 1, got 0") == (
        "latent dimensions must be >= 1, got 0"
    )
    assert "learning rate=1e-4" in training.ui_message(
        "TrainingFailed: the loss became nan; lower the learning rate (--set lr=1e-4)"
    )


def _history(durations, refits=1):
    rows = []
    for k in range(refits):
        t = 0.0
        for e, d in enumerate(durations[k]):
            t += d
            rows.append({"refit": k, "epoch": e + 1, "seconds": t, "phase": "joint"})
    return pd.DataFrame(rows)


def test_time_left_follows_the_recent_pace_and_counts_refits():
    # a slow start (the machine was busy), then 10 ms per epoch: the recent pace counts
    n_epochs, n_refits, done = 1500, 2, 100
    pace = np.r_[np.full(40, 0.05), np.full(n_epochs * n_refits - 40, 0.01)]
    history = _history([pace[:done]])
    true_left = pace[done:].sum()
    status = {"state": "running", "epoch": done, "n_epochs": n_epochs, "refit": 0, "n_refits": 2}
    estimate = training.seconds_left(history, n_epochs * n_refits - done)
    mean_pace = history["seconds"].iloc[-1] / done * (n_epochs * n_refits - done)  # since start
    assert abs(estimate - true_left) / true_left < 0.05, (estimate, true_left)
    assert mean_pace > 2 * true_left
    frac, text = training.progress(status, history)
    assert frac == pytest.approx(done / (n_epochs * n_refits))
    assert "refit 1/2" in text and "left" in text
    # in the second refit the first one's epochs count as done
    history = _history([pace[:n_epochs], pace[n_epochs : n_epochs + 10]], refits=2)
    frac, _ = training.progress({**status, "refit": 1, "epoch": 10}, history)
    assert frac == pytest.approx((n_epochs + 10) / (n_epochs * n_refits))
    est = training.seconds_left(history, n_epochs - 10)
    assert abs(est - pace[n_epochs + 10 :].sum()) / pace[n_epochs + 10 :].sum() < 0.05


def test_frozen_target_progress_counts_both_phases():
    history = _history([[0.1] * 5])
    status = {"state": "running", "epoch": 5, "n_epochs": 10, "refit": 0, "n_refits": 1}
    frac, text = training.progress({**status, "phase": "sources"}, history)
    assert frac == pytest.approx(15 / 20) and "source encoders" in text
    frac, _ = training.progress({**status, "phase": "target"}, history)
    assert frac == pytest.approx(5 / 20)


def test_runs_table_names_the_dataset_and_leaves_empty_cells_empty(tmp_path):
    up = tmp_path / "uploads"
    runs = pd.DataFrame(
        {
            "name": ["a", "b"],
            "state": ["done", "queued"],
            "model": ["vae", None],
            "data": [str(up / "study1"), None],
            "n_latent": [10.0, np.nan],
            "epoch": [5.0, None],
            "error": [None, "InputError: model 'cvae' needs at least one --condition COLUMN"],
        }
    )
    table = training.runs_table(runs, up)
    assert list(table["data"]) == ["study1", None]
    assert table["n_latent"].iloc[0] == 10 and str(table["n_latent"].dtype) == "Int64"
    assert table["error"].iloc[0] is None and "--" not in table["error"].iloc[1]


def test_runs_table_draws_empty_cells_empty(ole_dirs):
    queued = ole_dirs.runs / "queued-run"
    queued.mkdir()
    (queued / "status.json").write_text(json.dumps({"state": "queued", "epoch": 0}))
    at = open_page("train")
    assert_clean(at)
    table = at.dataframe[0]
    assert table.proto.placeholder == ""  # st.dataframe would write "None"
    shown = table.value
    assert sorted(shown["data"].fillna("(none)")) == ["(none)", "synthetic"]


def test_sidebar_caption_whole_numbers_and_live_epoch():
    row = {"state": "running", "model": "vae", "n_latent": 32.0, "epoch": 33.0}
    assert sidebar.caption_text(row) == "⟳ running · model: vae · n latent: 32 · epoch: 33"
    live = {"state": "running", "epoch": 693, "n_epochs": 1500}
    assert sidebar.caption_text(row, live).endswith("epoch: 693/1500")
    done = {"state": "done", "model": "vae", "n_latent": np.nan, "epoch": 40}
    assert sidebar.caption_text(done) == "✓ done · model: vae · epoch: 40"
