"""AppTest: the Perturbation page on the tiny run (one refit, 200 samples)."""

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
