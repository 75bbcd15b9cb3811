"""AppTest: the Generation page on the tiny run."""

import numpy as np
from st_apptest import assert_clean, figure, open_page


def test_starts_with_a_prompt(ole_dirs):
    at = open_page("generation")
    assert_clean(at)
    assert at.selectbox(key="gen_mode").options == ["prior", "posterior"]
    assert at.selectbox(key="gen_mode").value == "posterior"  # the realistic default
    assert any("press **Generate**" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_generate_condition_map_histograms_and_downloads(ole_dirs):
    at = open_page("generation")
    at.selectbox(key="gen_mode").select("posterior").run()
    at.number_input(key="gen_n").set_value(40).run()
    at.multiselect(key="gen_conditions").select("tissue").run()
    level = at.selectbox(key="gen_value_tissue").options[1]
    at.selectbox(key="gen_value_tissue").select(level).run()
    at.button[0].click().run(timeout=120)
    assert_clean(at)
    assert any("40 synthetic samples" in c.value for c in at.caption)
    fig = figure(at, "gen_map")
    generated = [t for t in fig["data"] if t.get("name") == "generated"]
    assert len(generated) == 1 and generated[0]["marker"]["symbol"] == "diamond"
    assert len(generated[0]["x"]) == 40 and np.isfinite(np.asarray(generated[0]["x"])).all()
    real_points = sum(len(t["x"]) for t in fig["data"] if t.get("name") != "generated")
    assert real_points == 200  # every real sample of the tiny run, on the same PCA map
    hist = figure(at, "gen_hist_rna:" + at.multiselect(key="gen_features").value[0].split(":")[1])
    assert [t["name"] for t in hist["data"]] == ["real", "synthetic"]
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels == ["CSV", "H5AD"]


def test_quality_report_table_and_verdict(ole_dirs):
    at = open_page("generation")
    at.selectbox(key="gen_mode").select("posterior").run()
    at.number_input(key="gen_n").set_value(150).run()
    at.button[0].click().run(timeout=120)
    assert_clean(at)
    at.button[1].click().run(timeout=180)
    assert_clean(at)
    verdict = (at.success or at.warning)[0].value
    assert verdict.split(":")[0] in {"Good", "Fair", "Poor"}
    table = at.dataframe[0].value
    assert {"trtr_f1", "tstr_f1", "c2st_auc", "mmd", "memorisation"} <= set(table["metric"])
    classes = at.dataframe[1].value
    assert set(classes["setting"]) == {"TRTR", "TRTS", "TSTR"}


def test_prior_mode_on_unconditional_run_shows_an_error(ole_dirs):
    at = open_page("generation")
    at.selectbox(key="gen_mode").select("prior").run()
    at.multiselect(key="gen_conditions").select("tissue").run()
    at.button[0].click().run(timeout=120)
    assert not at.exception
    assert any("not conditioned on 'tissue'" in e.value for e in at.error)
