"""Association statistics (core.associations) on simulated decoded changes."""

import numpy as np
import pytest
from scipy import stats

from core import associations as assoc
from core.errors import InputError

N_REFITS, N_SAMPLES, N_TARGETS, N_TRUE = 10, 150, 60, 6


def simulate(seed: int = 0, effect: float = 0.6, chance: float = 0.0):
    """before/after (n_refits, n_samples, n_targets); the first N_TRUE targets respond.

    Unrelated targets still move a little inside each refit (a refit-specific offset shared
    by all samples, like a deterministic decoder does), with a random sign across refits;
    ``chance`` adds a per-target shift shared by every refit (a chance correlation in the
    training data that every refit learns).
    """
    rng = np.random.default_rng(seed)
    before = rng.normal(size=(N_REFITS, N_SAMPLES, N_TARGETS))
    offset = rng.normal(scale=0.05, size=(N_REFITS, 1, N_TARGETS))
    offset += rng.normal(scale=chance, size=(1, 1, N_TARGETS))
    noise = rng.normal(scale=0.02, size=(N_REFITS, N_SAMPLES, N_TARGETS))
    delta = offset + noise
    signs = np.where(np.arange(N_TRUE) % 2 == 0, 1.0, -1.0)
    delta[:, :, :N_TRUE] += effect * signs
    return before, before + delta


def precision_recall(significant: np.ndarray) -> tuple[float, float]:
    truth = np.arange(N_TARGETS) < N_TRUE
    tp = int((significant & truth).sum())
    return tp / max(int(significant.sum()), 1), tp / N_TRUE


@pytest.mark.parametrize("method", assoc.METHODS)
def test_methods_find_planted_effects(method):
    before, after = simulate()
    out = assoc.score_targets(before, after, method=method, alpha=0.05)
    for key in ("effect", "score", "fdr", "significant"):
        assert out[key].shape == (N_TARGETS,)
    precision, recall = precision_recall(out["significant"])
    assert recall == 1.0, method
    assert precision >= 0.8, method
    # true targets score above every unrelated one except at most one
    truth = np.arange(N_TARGETS) < N_TRUE
    assert (out["score"][~truth] >= out["score"][truth].min()).sum() <= 1
    # effect is in target units with the planted sign
    np.testing.assert_allclose(out["effect"][:2], [0.6, -0.6], atol=0.05)


@pytest.mark.parametrize("method", assoc.METHODS)
def test_no_effect_gives_few_calls(method):
    before, after = simulate(seed=3, effect=0.0)
    out = assoc.score_targets(before, after, method=method, alpha=0.05)
    assert out["significant"].sum() <= 2, method


@pytest.mark.parametrize("method", ["bayes", "ttest"])
def test_chance_shifts_shared_by_refits_are_not_called(method):
    before, after = simulate(seed=5, chance=0.1)
    out = assoc.score_targets(before, after, method=method, alpha=0.05)
    precision, recall = precision_recall(out["significant"])
    assert precision >= 0.8 and recall == 1.0, method
    if method == "bayes":  # sign consistency alone (MOVE's rule) calls the chance shifts
        move = assoc.bayes(after - before, min_z=0.0)
        assert precision_recall(move["significant"])[0] < 0.5


def test_empirical_null():
    x = np.r_[np.random.default_rng(0).normal(2.0, 0.5, size=200), 50.0, np.nan]
    z, centre, spread = assoc.empirical_null(x)
    assert centre == pytest.approx(2.0, abs=0.1) and spread == pytest.approx(0.5, abs=0.1)
    assert z[200] > 50 and np.isnan(z[201])


def test_squeeze_var_shrinks_toward_the_common_variance():
    rng = np.random.default_rng(0)
    var = rng.chisquare(4, size=500) / 4  # true variance 1 everywhere, df = 4
    post, s0, d0 = assoc.squeeze_var(var, 4.0)
    assert s0 == pytest.approx(1.0, abs=0.15) and d0 > 20
    assert post.std() < var.std() / 3


def test_bayes_probability_is_the_sign_fraction_where_resolved():
    delta = np.zeros((2, 4, 3))
    delta[:, :, 0] = 1.0  # always up
    delta[:, :, 1] = -1.0  # always down
    delta[:, :2, 2] = 1.0  # half up, half zero (ties count half) -> p = 0.75
    out = assoc.bayes(delta, min_z=0.0)
    n = 8
    # all-up with no spread: (n + 1 * Phi(huge)) / (n + 1) -> 1, and no clip at 1e-8
    assert out["prob_up"][0] == pytest.approx(1.0) and out["prob_up"][1] == pytest.approx(0.0)
    assert out["log_bf"][0] > np.log(1e8) and np.isfinite(out["log_bf"][0])
    assert out["log_bf"][1] == pytest.approx(-out["log_bf"][0])
    assert out["prob_up"][2] == pytest.approx(0.75, abs=1 / n)
    assert out["significant"].tolist() == [True, True, False]
    # the two symmetric targets tie and share one FDR
    assert out["fdr"][0] == out["fdr"][1]
    # where both signs are seen, p is the fraction of positive changes (within 1/n)
    rng = np.random.default_rng(0)
    mixed = rng.normal(0.5, 1.0, size=(4, 500, 5))
    frac = (mixed > 0).mean(axis=(0, 1))
    np.testing.assert_allclose(assoc.bayes(mixed)["prob_up"], frac, atol=1 / mixed[..., 0].size)


def test_bayes_score_has_no_ceiling_and_ranks_strong_hits():
    """MOVE's clipped fraction gives every all-one-sign target the same score (18.42) and
    FDR (1e-8); the score must keep ordering them by how far the change is from zero."""
    rng = np.random.default_rng(1)
    shifts = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 1000.0])
    noise = rng.uniform(-0.5, 0.5, size=(3, 200, shifts.size))
    delta = np.concatenate([shifts + noise, -(shifts + noise)], axis=2)  # all one sign
    delta = np.concatenate([delta, rng.normal(0.0, 1.0, size=(3, 200, 30))], axis=2)
    out = assoc.bayes(delta, min_z=0.0)
    k = shifts.size
    for block in (slice(0, k), slice(k, 2 * k)):
        score = out["score"][block]
        assert np.isfinite(score).all() and (np.diff(score) > 0).all(), score
        assert (score > np.log(1e8) + 1e-6).sum() >= k - 1  # past MOVE's ceiling
        fdr = out["fdr"][block]  # distinct too (it underflows to 0 only past |log_bf| ~ 745)
        assert (np.diff(fdr[:4]) < 0).all() and (fdr[:4] > 0).all() and (fdr >= 0).all()
    np.testing.assert_allclose(out["score"][:k], out["score"][k : 2 * k])  # sign-symmetric
    assert (np.sign(out["log_bf"][:k]) == 1).all() and (
        np.sign(out["log_bf"][k : 2 * k]) == -1
    ).all()
    # the strong hits outrank every unrelated target
    assert out["score"][: 2 * k].min() > out["score"][2 * k :].max()


def test_bayes_no_change_is_no_evidence():
    delta = np.zeros((2, 50, 2))
    delta[:, :, 1] = 1e-9  # float32 noise, below SIGN_TOL: a tie
    out = assoc.bayes(delta, min_z=0.0)
    np.testing.assert_allclose(out["prob_up"], 0.5)
    np.testing.assert_allclose(out["score"], 0.0, atol=1e-12)
    assert not out["significant"].any()


def test_bayes_prior_strength_and_sd_checks():
    delta = np.ones((2, 5, 2))
    with pytest.raises(InputError, match="prior_strength"):
        assoc.bayes(delta, prior_strength=0.0)
    s = assoc.summarize_rows(np.zeros((2, 5, 2)), delta, None, with_sd=False)
    with pytest.raises(InputError, match="with_sd=True"):
        assoc.decide_bayes(s)
    # pooled sd over samples x refits from the per-refit moments
    rng = np.random.default_rng(2)
    d = rng.normal(size=(3, 40, 4)) + rng.normal(size=(3, 1, 4))
    s = assoc.summarize(np.zeros_like(d), d)
    np.testing.assert_allclose(assoc.pooled_sd(s), d.reshape(-1, 4).std(axis=0, ddof=1))


def test_bayes_ignores_nan_samples():
    delta = np.ones((2, 5, 2))
    delta[:, :3, 0] = np.nan
    delta[:, :, 1] = np.nan
    out = assoc.bayes(delta)
    assert out["prob_up"][0] == 1.0
    assert np.isnan(out["score"][1]) and not out["significant"][1]


def test_bayes_decision_fdr_is_cumulative_mean_of_error_rates():
    err = np.array([0.3, 0.0, 0.1, 0.1])
    fdr = assoc.bayes_decision_fdr(err)
    # sorted: 0.0, 0.1, 0.1, 0.3 -> running means 0, .05, .0667, .125; ties share the last
    np.testing.assert_allclose(fdr, [0.125, 0.0, 0.2 / 3, 0.2 / 3])


def test_bh_matches_scipy():
    p = np.random.default_rng(1).uniform(size=40) ** 3
    np.testing.assert_allclose(assoc.bh_fdr(p), stats.false_discovery_control(p, method="bh"))
    with_nan = np.array([0.01, np.nan, 0.02])
    q = assoc.bh_fdr(with_nan)
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.02)


def test_signed_ks_matches_scipy():
    rng = np.random.default_rng(2)
    before = rng.normal(size=(80, 4))
    after = before + np.array([0.5, -0.5, 0.0, 2.0])
    after[:, 2] = rng.normal(size=80)
    d = assoc.signed_ks(after, before)
    for t in range(4):
        ref = stats.ks_2samp(after[:, t], before[:, t])
        # scipy's sign is +1 when the first sample's CDF lies above (values went down)
        assert abs(d[t]) == pytest.approx(ref.statistic)
        assert np.sign(d[t]) == -ref.statistic_sign
    assert d[0] > 0 and d[1] < 0


def test_signed_ks_ties_are_zero():
    x = np.repeat(np.arange(5.0), 4)[:, None]
    assert assoc.signed_ks(x, x.copy())[0] == 0.0


def test_ttest_single_refit_falls_back_to_samples():
    rng = np.random.default_rng(0)
    delta = rng.normal(loc=[1.0, 0.0], scale=0.5, size=(1, 50, 2))
    out = assoc.ttest(delta, null="theoretical")
    ref = stats.ttest_1samp(delta[0], 0.0)
    np.testing.assert_allclose(out["p_value"], ref.pvalue)
    assert out["significant"].tolist() == [True, False]


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="n_refits, n_samples, n_targets"):
        assoc.bayes(np.zeros((3, 4)))
    with pytest.raises(InputError, match="alpha"):
        assoc.bayes(np.zeros((1, 2, 3)), alpha=2.0)
    with pytest.raises(InputError, match="unknown method"):
        assoc.score_targets(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), method="chi2")
