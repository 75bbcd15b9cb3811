"""core.metrics: per-feature scores, per-sample correlation and error."""

import numpy as np
import pytest

from core.errors import InputError
from core.metrics import feature_scores, sample_correlation, sample_error, score_summary


def _data(seed=0):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(50, 4))
    return rng, true


def test_perfect_reconstruction_scores_one():
    _, true = _data()
    scores = feature_scores(true, true.copy(), var_names=["a", "b", "c", "d"])
    assert list(scores["feature"]) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(scores["r2"], 1.0)
    np.testing.assert_allclose(scores["pearson"], 1.0)
    np.testing.assert_allclose(scores["var_true"], true.var(axis=0, ddof=1))


def test_r2_matches_definition_and_shrinkage_visible():
    rng, true = _data(1)
    recon = 0.5 * true + rng.normal(scale=0.1, size=true.shape)
    scores = feature_scores(true, recon)
    j = 2
    expected = (
        1 - ((true[:, j] - recon[:, j]) ** 2).sum() / ((true[:, j] - true[:, j].mean()) ** 2).sum()
    )
    assert scores["r2"][j] == pytest.approx(expected)
    assert scores["pearson"][j] == pytest.approx(np.corrcoef(true[:, j], recon[:, j])[0, 1])
    assert (scores["var_recon"] < scores["var_true"]).all()  # shrinkage


def test_nan_rows_ignored_and_constant_feature_nan():
    _, true = _data(2)
    true[:, 3] = 1.0
    recon = true + 0.01
    true_nan = true.copy()
    true_nan[:5] = np.nan
    scores = feature_scores(true_nan, recon)
    assert (scores["n_obs"] == 45).all()
    assert np.isnan(scores["r2"][3]) and np.isnan(scores["pearson"][3])
    assert np.isfinite(scores["r2"][:3]).all()
    summary = score_summary(scores)
    assert summary["n_features"] == 4 and summary["median_r2"] > 0.99


def test_sample_correlation_and_error():
    rng, true = _data(3)
    recon = true.copy()
    recon[0] = -true[0]
    recon[1] = np.nan
    corr = sample_correlation(true, recon)
    assert corr.shape == (50,)
    assert corr[0] == pytest.approx(-1.0) and np.isnan(corr[1]) and corr[2] == pytest.approx(1.0)
    err = sample_error(true, recon)
    assert err[0] > 0 and np.isnan(err[1]) and err[2] == 0
    counts = rng.poisson(5, size=(20, 3)).astype(float)
    assert np.all(sample_error(counts, counts, kind="counts") == 0)


def test_shape_mismatch_is_input_error():
    with pytest.raises(InputError, match="same"):
        feature_scores(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(InputError):
        sample_correlation(np.zeros((3, 2)), np.zeros((2, 2)))
