"""AppTest: the Generation page on the tiny run."""

import numpy as np
import pytest
from st_apptest import assert_clean, figure, open_page


@pytest.fixture
def tiny_obs(ole_dirs):
    """The tiny run's sample metadata (the real samples the page compares with)."""
    from core.runs import load_run

    return load_run(ole_dirs.runs / ole_dirs.run_name).load_data().obs


def generate(at, *, n, tissues=(), age=None, timeout=120):
    at.number_input(key="gen_n").set_value(n).run()
    cols = ["tissue"] * bool(tissues) + ["age"] * (age is not None)
    if cols:
        at.multiselect(key="gen_conditions").set_value(cols).run()
    if tissues:
        at.multiselect(key="gen_value_tissue").set_value(list(tissues)).run()
    if age is not None:
        at.number_input(key="gen_value_age").set_value(age).run()
    at.button[0].click().run(timeout=timeout)
    assert_clean(at)
    return at


def test_starts_with_a_prompt(ole_dirs):
    at = open_page("generation")
    assert_clean(at)
    assert at.selectbox(key="gen_mode").options == ["prior", "posterior"]
    assert at.selectbox(key="gen_mode").value == "posterior"  # the realistic default
    assert any("press **Generate**" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_generate_condition_map_histograms_and_downloads(ole_dirs, tiny_obs):
    at = open_page("generation")
    at.multiselect(key="gen_conditions").select("tissue").run()
    level = at.multiselect(key="gen_value_tissue").options[1]
    generate(at, n=120, tissues=[level])
    assert any("120 synthetic samples" in c.value for c in at.caption)
    fig = figure(at, "gen_map")
    generated = [t for t in fig["data"] if t.get("name") == "generated"]
    assert len(generated) == 1 and generated[0]["marker"]["symbol"] == "diamond"
    assert len(generated[0]["x"]) == 120 and np.isfinite(np.asarray(generated[0]["x"])).all()
    real_points = sum(len(t["x"]) for t in fig["data"] if t.get("name") != "generated")
    assert real_points == 200  # every real sample of the tiny run, on the same PCA map
    scene = fig["layout"]["scene"]
    assert [scene[f"{a}axis"]["title"]["text"] for a in "xyz"] == ["PC 1", "PC 2", "PC 3"]
    feature = at.multiselect(key="gen_features").value[0]
    hist = figure(at, "gen_hist_rna:" + feature.split(":")[1])
    assert [t["name"] for t in hist["data"]] == ["real", "synthetic"]
    # Real = the samples of the generated tissue (fewer than the 120 synthetic ones), not all.
    n_level = int((tiny_obs["tissue"].astype(str) == level).sum())
    assert len(hist["data"][0]["x"]) == n_level < 120
    assert any(f"{n_level:,} samples of the run (tissue = {level})" in c.value for c in at.caption)
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels == ["CSV", "H5AD"]


def test_several_levels_generate_one_set_per_level(ole_dirs):
    at = open_page("generation")
    at.multiselect(key="gen_conditions").select("tissue").run()
    levels = at.multiselect(key="gen_value_tissue").options[:2]
    generate(at, n=15, tissues=levels, age=60.0)
    assert any("30 synthetic samples" in c.value for c in at.caption)
    shown = next(c.value for c in at.caption if "synthetic samples" in c.value)
    assert f"tissue={levels[0]}, age=60.0; tissue={levels[1]}, age=60.0" in shown


def test_downloads_are_not_serialised_on_reruns(ole_dirs, monkeypatch):
    """The CSV / h5ad bytes are made when a button is clicked, not on every rerun."""
    from core import generate as gen_core

    calls = []
    real_to_bytes = gen_core.to_bytes
    monkeypatch.setattr(gen_core, "to_bytes", lambda *a, **k: calls.append(k) or b"")
    at = generate(open_page("generation"), n=50)
    at.number_input(key="gen_seed").set_value(3).run()
    assert len(at.get("download_button")) == 2
    assert calls == []
    monkeypatch.setattr(gen_core, "to_bytes", real_to_bytes)


def test_quality_report_table_and_verdict(ole_dirs):
    at = generate(open_page("generation"), n=150)
    at.button[1].click().run(timeout=180)
    assert_clean(at)
    verdict = (at.success or at.warning)[0].value
    assert verdict.split(":")[0] in {"Good", "Fair", "Poor"}
    table = at.dataframe[0].value
    assert {"trtr_f1", "tstr_f1", "c2st_auc", "mmd", "memorisation"} <= set(table["metric"])
    values = dict(zip(table["metric"], table["value"], strict=True))
    assert values["n_synthetic"] == "150" and "." not in values["n_train"]  # counts as integers
    classes = at.dataframe[1].value
    assert set(classes["setting"]) == {"TRTR", "TRTS", "TSTR"}


def test_quality_report_of_a_single_condition(ole_dirs):
    """tissue=liver, age=60: one label level -> no classifier tables, the rest is reported."""
    at = generate(open_page("generation"), n=60, tissues=["liver"], age=60.0)
    at.button[1].click().run(timeout=180)
    assert_clean(at)
    assert (at.success or at.warning)[0].value.split(":")[0] in {"Good", "Poor"}
    table = at.dataframe[0].value
    values = dict(zip(table["metric"], table["value"], strict=True))
    assert values["tstr_f1"] == "n/a" and values["trtr_f1"] == "n/a"
    for key in ("c2st_auc", "mmd", "mmd_p", "mean_r", "var_r", "corr_dist", "memorisation"):
        assert values[key] != "n/a", key
    assert len(at.dataframe) == 1  # no per-class table
    notes = " ".join(c.value for c in at.caption)
    assert "skipped" in notes and "single tissue level (liver)" in notes
    assert "tissue = liver; age not filtered" in notes and "np.str_" not in notes


def test_conditions_and_values_are_in_the_url(ole_dirs):
    at = open_page("generation")
    at.multiselect(key="gen_conditions").set_value(["tissue", "age"]).run()
    for widget in (at.multiselect(key="gen_value_tissue"), at.number_input(key="gen_value_age")):
        assert widget.proto.query_param_key == widget.key  # mirrored in the URL
    # A copied link reopens the same conditions.
    again = open_page(
        "generation",
        gen_conditions=["tissue", "age"],
        gen_value_tissue=["liver", "lung"],
        gen_value_age="60",
    )
    assert_clean(again)
    assert again.multiselect(key="gen_conditions").value == ["tissue", "age"]
    assert again.multiselect(key="gen_value_tissue").value == ["liver", "lung"]
    assert again.number_input(key="gen_value_age").value == 60.0


def test_prior_mode_on_unconditional_run_shows_one_message(ole_dirs):
    at = open_page("generation")
    at.selectbox(key="gen_mode").select("prior").run()
    at.multiselect(key="gen_conditions").select("tissue").run()
    assert not at.exception
    assert len(at.error) == 1 and not at.info  # one clear message, no "press Generate"
    message = at.error[0].value
    assert "Prior mode" in message and "tissue" in message and "posterior" in message
    assert "--mode" not in message
    assert at.button[0].disabled


def test_a_condition_without_levels_asks_for_one(ole_dirs):
    at = open_page("generation")
    at.multiselect(key="gen_conditions").select("tissue").run()
    at.multiselect(key="gen_value_tissue").set_value([]).run()
    assert not at.exception and not at.info
    assert [e.value for e in at.error] == [
        "Choose at least one level of tissue, or remove it from 'Condition on'."
    ]
    assert at.button[0].disabled
