"""dashboard.plots: figure builders (data in, figure out)."""

import numpy as np
import pandas as pd
import pytest

from dashboard import plots


def _coords(n=30, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_categorical_colour_one_trace_per_level_with_hover():
    labels = pd.Series(pd.Categorical(["b", "a", "b"] * 10, categories=["a", "b", "c"]))
    hover = pd.DataFrame(
        {"tissue": labels.astype(str).to_numpy()}, index=[f"s{i}" for i in range(30)]
    )
    fig = plots.embedding_scatter(_coords(), color=labels, color_kind="categorical", hover=hover)
    assert [t.type for t in fig.data] == ["scatter3d", "scatter3d"]
    assert [t.name for t in fig.data] == ["a", "b"]  # unused level "c" dropped, order kept
    assert sum(len(t.x) for t in fig.data) == 30
    assert fig.data[0].customdata[0][0].startswith("s")
    assert "tissue" in fig.data[0].hovertemplate


def test_continuous_colour_has_scale_and_missing_trace():
    values = np.linspace(0, 1, 30)
    values[0] = np.nan
    fig = plots.embedding_scatter(
        _coords(d=2), color=values, color_kind="continuous", color_name="age"
    )
    assert [t.type for t in fig.data] == ["scattergl", "scattergl"]
    assert fig.data[0].name == "missing" and len(fig.data[0].x) == 1
    assert fig.data[1].marker.showscale and len(fig.data[1].marker.color) == 29


def test_bad_coords_rejected():
    with pytest.raises(ValueError, match="n_obs"):
        plots.embedding_scatter(np.zeros((5, 4)))


def test_loss_curves_train_and_val_per_run():
    hist = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [3, 2, 1],
            "val_loss": [3.5, 2.5, 2],
            "train_kl": [1, 1, 1],
        }
    )
    fig = plots.loss_curves({"r1": hist, "r2": hist}, terms=["loss", "kl"])
    names = [t.name for t in fig.data]
    assert names.count("r1 train") == 2 and names.count("r1 val") == 1 and "r2 val" in names


def test_reconstruction_figures():
    rng = np.random.default_rng(0)
    t = rng.normal(size=40)
    fig = plots.true_vs_reconstructed(t, t * 0.5, labels=pd.Series(["x", "y"] * 20), feature="g1")
    assert [tr.name for tr in fig.data] == ["x", "y", "y = x"]
    fig = plots.variance_shrinkage(
        np.array([1.0, 2.0, 0.0]), np.array([0.5, 1.0, 1.0]), names=["a", "b", "c"]
    )
    assert list(fig.data[0].text) == ["a", "b"]  # zero variance can't go on a log axis
    m = pd.DataFrame(
        [[np.nan, 0.5], [0.3, np.nan]], index=["rna", "protein"], columns=["rna", "protein"]
    )
    assert plots.score_matrix(m).data[0].type == "heatmap"


def test_a_level_has_the_same_colour_in_every_figure():
    """Embeddings map, true-vs-reconstructed scatter and split histograms agree on colours."""
    tissue = (
        pd.Series(
            pd.Categorical(
                ["lung", "liver", "kidney", "lung", None], categories=["liver", "lung", "kidney"]
            )
        )
        .cat.add_categories("NA")
        .fillna("NA")
    )
    levels = plots.category_levels(tissue)
    assert levels == ["liver", "lung", "kidney", "NA"]  # the Categorical's order, NA last
    colours = plots.level_colors(levels)
    assert colours["NA"] == plots.NA_COLOR
    emb = plots.embedding_scatter(
        np.random.default_rng(0).normal(size=(5, 3)), color=tissue, color_kind="categorical"
    )
    rec = plots.true_vs_reconstructed(np.arange(5.0), np.arange(5.0), labels=tissue)
    hist = plots.histograms({lv: np.ones(2) for lv in reversed(levels)}, colors=colours)
    for fig in (emb, rec, hist):
        got = {t.name: t.marker.color for t in fig.data if t.name in colours}
        assert got == {lv: colours[lv] for lv in got} and len(got) >= 3


def test_hover_shows_whole_numbers_without_decimals():
    hover = pd.DataFrame(
        {"age": [67.0, np.nan, 30.0], "ratio": [0.123456, 1.5, 2.0]}, index=["a", "b", "c"]
    )
    fig = plots.embedding_scatter(np.zeros((3, 2)), hover=hover)
    data = np.asarray(fig.data[0].customdata)
    assert list(data[:, 1]) == ["67", "NA", "30"]
    assert list(data[:, 2]) == ["0.1235", "1.5", "2"]
