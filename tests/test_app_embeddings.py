"""AppTest: the Embeddings page on a tiny trained run (200 samples)."""

import time

import numpy as np
import pytest
from st_apptest import assert_clean, figure, new_app


def _points(fig) -> int:
    return sum(len(t["x"]) for t in fig["data"])


def test_default_view_is_3d_pca_coloured_by_first_metadata_column(ole_dirs):
    at = new_app().run()  # Embeddings is the default page
    assert_clean(at)
    assert at.session_state["dataset"] == "synthetic"
    assert at.session_state["run"] == ole_dirs.run_name
    fig = figure(at, "emb_map")
    assert {t["type"] for t in fig["data"]} == {"scatter3d"}
    assert at.session_state["emb_color"] == "obs:tissue"
    levels = [str(v) for v in at.session_state["emb_color"] and []]
    assert len(fig["data"]) >= 2 and all(t["showlegend"] for t in fig["data"]), levels
    assert _points(fig) == 200
    assert "3D PCA" in fig["layout"]["title"]["text"]
    # hover: sample id first, then metadata
    assert "customdata[0]" in fig["data"][0]["hovertemplate"]
    assert "tissue" in fig["data"][0]["hovertemplate"]


def test_colour_change_changes_figure_not_map(ole_dirs):
    at = new_app().run()
    before = figure(at, "emb_map")
    at.selectbox(key="emb_color").select("obs:age").run()
    assert_clean(at)
    after = figure(at, "emb_map")
    assert len(before["data"]) > 1 and len(after["data"]) == 1  # categorical -> colour scale
    marker = after["data"][0]["marker"]
    assert marker["showscale"] and len(marker["color"]) == 200
    # same coordinates: the map is not recomputed when only the colour changes
    xs_before = np.sort(np.concatenate([np.asarray(t["x"], float) for t in before["data"]]))
    np.testing.assert_allclose(np.sort(np.asarray(after["data"][0]["x"], float)), xs_before)


def test_feature_and_error_colouring(ole_dirs):
    at = new_app().run()
    at.selectbox(key="emb_color").select("feature").run()
    feats = at.selectbox(key="emb_feature").options
    assert any(f.startswith("protein:") for f in feats) and any(f.startswith("rna:") for f in feats)
    at.selectbox(key="emb_feature").select(next(f for f in feats if f.startswith("protein:"))).run()
    assert_clean(at)
    fig = figure(at, "emb_map")
    assert fig["data"][-1]["marker"]["colorbar"]["title"]["text"].startswith("protein:")
    at.selectbox(key="emb_color").select("error:all").run()
    assert_clean(at)
    err = np.asarray(figure(at, "emb_map")["data"][-1]["marker"]["color"], float)
    assert err.shape == (200,) and (err >= 0).all() and err.std() > 0


def test_method_and_dims_change_figure(ole_dirs):
    at = new_app().run()
    groups = {g.key: g for g in at.get("button_group")}
    groups["emb_dims"].set_value(2)
    at.run()
    assert_clean(at)
    fig = figure(at, "emb_map")
    assert {t["type"] for t in fig["data"]} == {"scattergl"}
    pca_x = np.sort(np.concatenate([np.asarray(t["x"], float) for t in fig["data"]]))
    groups = {g.key: g for g in at.get("button_group")}
    groups["emb_method"].set_value("tsne")
    at.run()
    deadline = time.monotonic() + 120  # background job: PCA shown meanwhile, with progress
    while "t-SNE" not in figure(at, "emb_map")["layout"]["title"]["text"]:
        assert_clean(at)
        assert at.get("progress"), "a pending map must show its progress"
        assert time.monotonic() < deadline, "t-SNE of 200 points did not finish"
        time.sleep(1)
        at.run()
    fig = figure(at, "emb_map")
    assert "2D t-SNE" in fig["layout"]["title"]["text"]
    tsne_x = np.sort(np.concatenate([np.asarray(t["x"], float) for t in fig["data"]]))
    assert not np.allclose(tsne_x, pca_x)
    assert list((ole_dirs.runs / ole_dirs.run_name / "embeddings").glob("tsne2d-*.npz"))


def test_view_is_restored_from_url(ole_dirs):
    # bound widgets keep their option *labels* in the URL (as the browser writes them)
    at = new_app(emb_color="metadata: age", emb_dims="2D", emb_method="PCA", emb_size="6").run()
    assert_clean(at)
    fig = figure(at, "emb_map")
    assert fig["data"][0]["type"] == "scattergl"
    assert fig["data"][0]["marker"]["size"] == 6
    assert "coloured by age" in fig["layout"]["title"]["text"]


def test_large_data_subsample_is_stated(ole_dirs):
    at = new_app(emb_max_points="100").run()
    assert_clean(at)
    assert _points(figure(at, "emb_map")) == 100
    assert any("100 of 200" in i.value for i in at.info)


def test_no_run_prompts_training(ole_empty_dirs):
    at = new_app().run()
    assert_clean(at)
    assert not at.get("plotly_chart")
    assert "Train" in at.info[0].value


@pytest.mark.parametrize("page_name", ["embeddings", "reconstruction"])
def test_tampered_weights_show_an_error_not_a_traceback(ole_dirs, page_name):
    weights = ole_dirs.runs / ole_dirs.run_name / "refit_0.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    at = new_app().run()
    if page_name != "embeddings":
        at.switch_page(f"../pages/{page_name}.py").run()
    assert not at.exception
    assert at.error and "checksum" in at.error[0].value


def test_a_cancelled_run_with_weights_opens_with_a_note(ole_dirs):
    import json

    status = ole_dirs.runs / ole_dirs.run_name / "status.json"
    status.write_text(json.dumps({"state": "cancelled", "error": "cancelled by request"}))
    at = new_app().run()
    assert_clean(at)
    assert _points(figure(at, "emb_map")) == 200
    assert any("was cancelled" in c.value for c in at.caption)
    (ole_dirs.runs / ole_dirs.run_name / "weights.json").unlink()  # cancelled before epoch 1
    at = new_app().run()
    assert not at.get("plotly_chart")
    assert any("no weights" in i.value for i in at.info)
