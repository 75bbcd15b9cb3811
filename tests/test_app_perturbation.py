"""AppTest: the Perturbation page on the tiny run (one refit, 200 samples)."""

import json

import numpy as np
from st_apptest import assert_clean, figure, new_app, open_page


def test_default_drug_perturbation_map_table_and_downloads(ole_dirs):
    at = open_page("perturbation")
    assert_clean(at)
    feature = at.selectbox(key="pert_feature")
    assert feature.value.startswith("drug:")  # categorical features come first
    assert at.selectbox(key="pert_kind").options == ["set", "min", "max"]
    assert at.selectbox(key="pert_level").value == "1"  # drug 0 -> 1 by default
    fig = figure(at, "pert_map")
    names = [t.get("name") for t in fig["data"]]
    assert names[:3] == ["baseline", "displacement (refit 0)", "direction"]
    base = fig["data"][0]
    n_pert = len(base["x"])
    assert 0 < n_pert < 200 and np.isfinite(np.asarray(base["x"], dtype=float)).all()
    assert fig["data"][2]["type"] == "cone"
    table = at.dataframe[0].value
    assert {"source", "target", "effect", "score", "fdr", "significant"} <= set(table.columns)
    assert (table["source"] == feature.value).all()
    assert feature.value not in set(table["target"])
    volcano = figure(at, "pert_volcano")
    assert {t["name"] for t in volcano["data"]} >= {"significant", "not significant"}
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels[:2] == ["Association table (CSV)", "Latent displacements (CSV)"]


def test_continuous_shift_subset_method_and_target(ole_dirs):
    at = open_page("perturbation")
    protein = next(f for f in at.selectbox(key="pert_feature").options if f.startswith("protein:"))
    at.selectbox(key="pert_feature").select(protein).run()
    assert at.selectbox(key="pert_kind").options[0] == "plus_std"
    at.selectbox(key="pert_kind").select("shift").run()
    at.number_input(key="pert_value_shift").set_value(2.0).run()
    at.selectbox(key="pert_subset_col").select("tissue").run()
    level = at.selectbox(key="pert_subset_val").options[0]
    at.selectbox(key="pert_subset_val").select(level).run()
    at.selectbox(key="pert_method").select("ttest").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert "p_value" in table.columns and (table["source"] == protein).all()
    target = at.selectbox(key="pert_target").options[3]
    at.selectbox(key="pert_target").select(target).run()
    assert_clean(at)
    dist = figure(at, "pert_dist")
    assert [t["name"] for t in dist["data"]] == ["before", "after"]
    assert dist["layout"]["title"]["text"].startswith(target)
    # filters: only the chosen modality remains
    mod = target.split(":")[0]
    at.multiselect(key="pert_modalities").set_value([mod]).run()
    assert set(at.dataframe[0].value["target_modality"]) == {mod}


def test_screen_a_modality(ole_dirs):
    at = open_page("perturbation")
    at.selectbox(key="pert_screen_mod").select("drug").run()
    next(b for b in at.button if b.label == "Run screen").click().run(timeout=120)
    assert_clean(at)
    assert any("features of drug" in c.value for c in at.caption)
    labels = [d.proto.label for d in at.get("download_button")]
    assert "Screen table (CSV)" in labels


def test_samples_selected_on_the_embeddings_map_are_the_subset(ole_dirs):
    from core.runs import load_run
    from dashboard.maps import selected_ids

    at = new_app(emb_dims="2D").run()  # the Embeddings page is the landing page
    assert any("box or lasso" in c.value for c in at.caption)
    run_path = str(ole_dirs.runs / ole_dirs.run_name)
    ids = list(load_run(run_path).load_data().obs_names[:12])
    # what plotly sends for a lasso over points of two traces (customdata[0] = sample id)
    event = {"points": [{"customdata": [i, "x"]} for i in ids] + [{"customdata": [ids[0]]}]}
    picked = selected_ids(event)
    assert picked == tuple(ids)
    assert selected_ids({"points": []}) == ()
    at.session_state["emb_selection"] = (run_path, picked)
    at.run()
    assert any("12 samples selected" in c.value for c in at.caption)
    at.switch_page("../pages/perturbation.py").run()
    subset = at.selectbox(key="pert_subset_col")
    label = next(o for o in subset.options if "selected on the Embeddings map" in o)
    assert "12 samples" in label
    subset.select(label).run()
    assert_clean(at)
    base = figure(at, "pert_map")["data"][0]
    assert 0 < len(base["x"]) <= 12  # only selected samples (those not yet at the drug level)


def test_kind_resets_when_switching_between_categorical_and_continuous(ole_dirs):
    at = open_page("perturbation")
    options = at.selectbox(key="pert_feature").options
    drugs = [f for f in options if f.startswith("drug:")]
    proteins = [f for f in options if f.startswith("protein:")]
    assert at.selectbox(key="pert_kind").value == "set"  # drug01, set level 1
    at.selectbox(key="pert_feature").select(proteins[0]).run()
    assert at.selectbox(key="pert_kind").value == "plus_std"  # not "set to the median"
    assert not at.number_input  # no value widget for plus_std
    assert_clean(at)
    # a kind chosen for one continuous feature stays for the next one; the value follows
    at.selectbox(key="pert_kind").select("set").run()
    first = at.number_input(key="pert_value_set").value
    at.number_input(key="pert_value_set").set_value(first + 1.0).run()
    at.selectbox(key="pert_feature").select(proteins[1]).run()
    assert at.selectbox(key="pert_kind").value == "set"
    ctx_median = at.number_input(key="pert_value_set").value
    assert ctx_median != first + 1.0  # the new feature's median, not the old value
    # back to a categorical feature: set a level again; its kind then stays across drugs
    at.selectbox(key="pert_feature").select(drugs[1]).run()
    assert at.selectbox(key="pert_kind").value == "set"
    at.selectbox(key="pert_kind").select("max").run()
    at.selectbox(key="pert_feature").select(drugs[2]).run()
    assert at.selectbox(key="pert_kind").value == "max"
    assert_clean(at)


def test_a_copied_link_reopens_the_same_perturbation(ole_dirs):
    """Issue 4: every option of the page is in the URL; reopening the query string gives the
    same feature, kind, size, subset and method."""
    from core.runs import load_run

    obs = load_run(ole_dirs.runs / ole_dirs.run_name).load_data().obs
    tissue = sorted(map(str, obs["tissue"].unique()))[-1]
    query = {
        "pert_feature": "protein:P03",
        "pert_kind": "shift",
        "pert_value_shift": "2.5",
        "pert_subset_col": "tissue",
        "pert_subset_val": tissue,
        "pert_method": "ttest",
    }
    at = open_page("perturbation", **query)
    assert_clean(at)
    assert at.selectbox(key="pert_feature").value == "protein:P03"
    assert at.selectbox(key="pert_kind").value == "shift"
    assert at.number_input(key="pert_value_shift").value == 2.5
    assert at.selectbox(key="pert_subset_col").value == "tissue"
    assert at.selectbox(key="pert_subset_val").value == tissue
    assert at.selectbox(key="pert_method").value == "ttest"
    base = figure(at, "pert_map")["data"][0]
    # only that tissue (those of its samples that have the protein modality)
    assert 0 < len(base["x"]) <= int((obs["tissue"].astype(str) == tissue).sum()) < len(obs)
    assert "p_value" in at.dataframe[0].value.columns
    # a categorical level and a continuous value come back too
    at = open_page("perturbation", pert_feature="drug:drug02", pert_kind="set", pert_level="0")
    assert at.selectbox(key="pert_level").value == "0"
    at = open_page(
        "perturbation", pert_feature="protein:P02", pert_kind="set", pert_value_set="0.25"
    )
    assert at.selectbox(key="pert_kind").value == "set"  # a link's kind is not reset
    assert at.number_input(key="pert_value_set").value == 0.25
    assert_clean(at)
    # and every option widget writes itself to the URL
    for key in ("pert_feature", "pert_kind", "pert_method"):
        assert at.selectbox(key=key).proto.query_param_key == key
    assert at.number_input(key="pert_value_set").proto.query_param_key == "pert_value_set"


def test_association_and_screen_tables_format_numbers_alike(ole_dirs):
    at = open_page("perturbation")
    next(b for b in at.button if b.label == "Run screen").click().run(timeout=120)
    assert_clean(at)
    assoc_cols = json.loads(at.dataframe[0].proto.columns)
    screen_cols = json.loads(at.dataframe[1].proto.columns)
    for col in ("effect", "score", "fdr"):
        fmt = assoc_cols[col]["type_config"]["format"]
        assert fmt == screen_cols[col]["type_config"]["format"] == "%.4g", col
