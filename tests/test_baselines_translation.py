"""Translation baselines (core.baselines): metric, mean baseline, SVD-MLP on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from core.baselines import (
    SVDMLP,
    fit_svd_mlp,
    mean_baseline,
    pearson_per_sample,
    per_sample_pearson,
    translation_baselines,
)
from core.errors import InputError


def planted(
    n_obs: int = 240,
    *,
    n_source: int = 40,
    n_target: int = 15,
    offsets: float = 0.0,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Source and target both linear in a shared 4-d factor (+ per-feature target offsets)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_obs, 4))
    source = z @ rng.normal(size=(4, n_source)) + noise * rng.normal(size=(n_obs, n_source))
    target = (
        z @ rng.normal(size=(4, n_target))
        + offsets * rng.normal(size=n_target)
        + noise * rng.normal(size=(n_obs, n_target))
    )
    return source, target


# -- metric ---------------------------------------------------------------------------------------
def test_per_sample_pearson_known_values() -> None:
    t = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    assert per_sample_pearson(t, t) == pytest.approx(1.0)
    assert per_sample_pearson(t, -t) == pytest.approx(-1.0)
    assert per_sample_pearson(t, 2.0 * t + 5.0) == pytest.approx(1.0)  # scale/shift invariant
    # one row perfect, one row anti-correlated -> mean 0
    pred = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    r = pearson_per_sample(t, pred)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(np.corrcoef(t[1], pred[1])[0, 1])
    assert per_sample_pearson(t, pred) == pytest.approx(r.mean())


def test_per_sample_pearson_matches_numpy_on_random_rows() -> None:
    rng = np.random.default_rng(1)
    t, p = rng.normal(size=(7, 11)), rng.normal(size=(7, 11))
    expected = [np.corrcoef(a, b)[0, 1] for a, b in zip(t, p, strict=True)]
    np.testing.assert_allclose(pearson_per_sample(t, p), expected, atol=1e-12)


def test_constant_rows_score_zero_and_missing_rows_are_skipped() -> None:
    t = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
    p = np.array([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    r = pearson_per_sample(t, p)
    assert r[0] == 0.0 and r[1] == pytest.approx(1.0) and np.isnan(r[2])
    assert per_sample_pearson(t, p) == pytest.approx(0.5)
    assert np.isnan(per_sample_pearson(t[2:], p[2:]))


def test_metric_shape_mismatch_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"shape \(2, 3\).*\(2, 4\)"):
        per_sample_pearson(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(InputError, match="2-D"):
        per_sample_pearson(np.zeros(3), np.zeros(3))


# -- mean baseline --------------------------------------------------------------------------------
def test_mean_baseline_repeats_training_means() -> None:
    train = np.array([[1.0, 10.0], [3.0, 20.0]])
    out = mean_baseline(train, n_obs=3)
    np.testing.assert_allclose(out, [[2.0, 15.0]] * 3)
    assert mean_baseline(train, n_obs=0).shape == (0, 2)
    with pytest.raises(InputError, match="no samples"):
        mean_baseline(np.zeros((0, 2)), n_obs=1)


# -- SVD-MLP --------------------------------------------------------------------------------------
@pytest.mark.parametrize("offsets", [0.0, 3.0])
def test_svd_mlp_beats_mean_baseline_on_planted_relation(offsets: float) -> None:
    source, target = planted(offsets=offsets)
    scores = translation_baselines(
        source[:200],
        target[:200],
        source[200:],
        target[200:],
        n_components=8,
        hidden_layer_sizes=(64,),
        seed=0,
    )
    assert scores["n_train"] == 200 and scores["n_test"] == 40
    assert scores["svd_mlp_params"]["n_components"] == 8
    assert scores["svd_mlp"] > 0.9
    assert scores["svd_mlp"] > scores["mean"] + 0.05


def test_svd_mlp_is_seeded_and_predicts_shapes() -> None:
    source, target = planted(n_obs=120)
    a = fit_svd_mlp(source, target, n_components=6, hidden_layer_sizes=(32,), seed=3)
    b = fit_svd_mlp(source, target, n_components=6, hidden_layer_sizes=(32,), seed=3)
    c = fit_svd_mlp(source, target, n_components=6, hidden_layer_sizes=(32,), seed=4)
    assert isinstance(a, SVDMLP)
    pa, pb, pc = a.predict(source[:9]), b.predict(source[:9]), c.predict(source[:9])
    assert pa.shape == (9, target.shape[1])
    np.testing.assert_array_equal(pa, pb)
    assert not np.allclose(pa, pc)
    assert a.features(source[:9]).shape == (9, 6)


def test_svd_mlp_clips_components_and_handles_one_target() -> None:
    rng = np.random.default_rng(2)
    source = rng.normal(size=(30, 5))
    target = source[:, :1] * 2.0 + 0.01 * rng.normal(size=(30, 1))
    model = fit_svd_mlp(source, target, n_components=64, hidden_layer_sizes=(16,), seed=0)
    assert model.params["n_components"] == 4  # < n_source_vars
    assert model.predict(source).shape == (30, 1)


def test_svd_mlp_input_errors() -> None:
    source, target = planted(n_obs=20)
    with pytest.raises(InputError, match="20 samples but target has 19"):
        fit_svd_mlp(source, target[:19])
    bad = source.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="row 3, column 1"):
        fit_svd_mlp(bad, target)
    with pytest.raises(InputError, match="at least 5"):
        fit_svd_mlp(source[:3], target[:3])
    model = fit_svd_mlp(source, target, n_components=4, hidden_layer_sizes=(8,), max_iter=20)
    with pytest.raises(InputError, match="fitted on 40"):
        model.predict(source[:, :10])


def test_mean_baseline_ignores_missing_values_and_names_empty_columns() -> None:
    train = np.array([[1.0, np.nan], [3.0, 4.0]])
    np.testing.assert_allclose(mean_baseline(train, n_obs=2), [[2.0, 4.0]] * 2)
    with pytest.raises(InputError, match="column 1 has no observed value"):
        mean_baseline(np.array([[1.0, np.nan]]), n_obs=1)
