"""AppTest: the Reconstruction page on the tiny run."""

import numpy as np
from st_apptest import assert_clean, figure, open_page


def test_scores_table_metrics_and_plots(ole_dirs):
    at = open_page("reconstruction")
    assert_clean(at)
    assert at.selectbox(key="rec_modality").options == ["rna", "methylation", "protein", "drug"]
    table = at.dataframe[0].value
    assert {"feature", "r2", "pearson", "var_true", "var_recon"} <= set(table.columns)
    assert len(table) == 60 and table["r2"].is_monotonic_decreasing  # sorted best first
    assert {m.label for m in at.metric} >= {"median R²", "median Pearson"}
    shrink = figure(at, "rec_shrink")
    assert len(shrink["data"][0]["x"]) == 60
    scatter = figure(at, "rec_scatter")
    assert scatter["layout"]["title"]["text"].startswith(table["feature"].iloc[0])


def test_colour_and_modality_change_the_figures(ole_dirs):
    at = open_page("reconstruction")
    assert [t["name"] for t in figure(at, "rec_scatter")["data"]] == ["samples", "y = x"]
    at.selectbox(key="rec_color").select("tissue").run()
    assert_clean(at)
    names = [t["name"] for t in figure(at, "rec_scatter")["data"]]
    assert len(names) == 5 and names[-1] == "y = x"  # 4 tissues + diagonal
    at.selectbox(key="rec_modality").select("protein").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 12
    assert "log1p" not in " ".join(t.label for t in at.toggle)  # only for counts


def test_translation_matrix(ole_dirs):
    at = open_page("reconstruction")
    at.toggle[-1].set_value(True).run()
    assert_clean(at)
    heat = figure(at, "rec_translate")["data"][0]
    z = np.asarray(heat["z"], dtype=float).reshape(4, 4)
    assert np.isnan(np.diag(z)).all() and np.isfinite(z[~np.eye(4, dtype=bool)]).all()
    assert list(heat["x"]) == ["rna", "methylation", "protein", "drug"]


def test_log1p_choice_is_restored_from_the_url(ole_dirs):
    (toggle,) = [t for t in open_page("reconstruction").toggle if "log1p" in t.label]
    assert toggle.value
    at = open_page("reconstruction", rec_log1p="false")  # a copied link
    assert_clean(at)
    assert not [t for t in at.toggle if "log1p" in t.label][0].value
    assert "(log1p)" not in " ".join(c.value for c in at.caption)
