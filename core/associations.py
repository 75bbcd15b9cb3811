"""Association statistics for latent perturbations (MOVE-style, per perturbed feature).

Input is the decoded change of every target feature after perturbing ONE source feature,
for every refit of the run and every perturbed sample:

    delta[refit, sample, target] = decode(encode(x_perturbed)) - decode(encode(x))

of shape (n_refits, n_samples, n_targets), in the targets' own units. NaN marks a
(sample, target) pair that does not count (the sample lacks the target's modality). Every
function here scores the targets of one source; false discovery rates are therefore
controlled per perturbed feature, never over one flattened matrix of all pairs. Excluding
the perturbed feature itself from its own targets is the caller's job (core.perturb).

Three methods, all returning a dict of per-target arrays of shape (n_targets,) with at least
``effect`` (mean change), ``score`` (higher = stronger evidence), ``fdr`` and ``significant``:

- ``bayes``: MOVE's Bayesian decision approach. ``p = P(delta > 0)`` over samples x refits,
  ``log_bf = log(p / (1 - p))``, ``score = |log_bf|``. The posterior probability of the
  *other* sign, ``1 - max(p, 1 - p)``, is the local error rate; sorting the targets by score
  and taking the cumulative mean of those error rates gives the expected FDR of calling the
  top k, and the calls are the largest k with FDR <= alpha. MOVE estimates p by the fraction
  of positive changes clipped at 1e-8, so every target whose changes all share one sign gets
  the same score (18.42) and FDR: strong hits cannot be ranked. Here p is the posterior mean
  of that fraction under a one-sample Beta prior centred on the normal approximation of the
  change's distribution (:func:`sign_probability`): the fraction itself wherever the data
  resolve it, a continuous tail beyond. Unlike MOVE, a call also needs an effect outside the
  bulk of the source's targets (empirical null, ``min_z``): see :func:`decide_bayes`.
- ``ttest``: a paired t-test of perturbed vs baseline reconstructions (a one-sample t-test
  of delta) inside every refit, aggregated across refits as a random-effects (summary
  statistics) test: the per-refit mean changes, standardised by each target's spread, are
  tested against 0 with the refits as replicates and their variance moderated across the
  targets (limma-style empirical Bayes). Decoding is deterministic, so inside one refit
  every sample moves with the same decoder and even an unrelated target shows a tiny but
  "significant" shift over thousands of samples; refits are the independent replicates, so
  they carry the test. With a single refit the per-sample test is used (anti-conservative).
  Benjamini-Hochberg FDR per source.
- ``ks``: MOVE's Kolmogorov-Smirnov approach. Per refit, the signed two-sample KS statistic
  between the reconstructed target before and after the perturbation (positive = values go
  up); the median over refits is the statistic and its p-value comes from the asymptotic
  Kolmogorov null for two samples of the perturbed size (conservative here: the paired
  samples are positively dependent). Benjamini-Hochberg FDR per source.

For speed every method works from per-target sufficient statistics (:class:`Summary`),
computed block by block (one modality at a time, its valid samples only, float32) with
:func:`summarize` and joined with :func:`concat`; :func:`decide` turns a summary into the
per-target table columns. :func:`bayes`, :func:`ttest` and :func:`ks` are the same on plain
arrays (NaN allowed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from core.errors import InputError

Method = Literal["bayes", "ttest", "ks"]
METHODS: tuple[str, ...] = get_args(Method)

#: The smallest change that counts as "up" (float32 decoders leave ~1e-7 noise on ties).
SIGN_TOL = 1e-8
#: -log10 p-values are capped here (p underflows to 0 for huge statistics).
MAX_SCORE = 300.0
#: Weight, in samples, of the prior on the sign probability of the bayes method
#: (:func:`sign_probability`); 1 with a prior mean of 1/2 is Jeffreys' estimate.
PRIOR_STRENGTH = 1.0


def _check_delta(delta: np.ndarray, name: str = "delta") -> np.ndarray:
    delta = np.asarray(delta)
    if not np.issubdtype(delta.dtype, np.floating):
        delta = delta.astype(np.float64)
    if delta.ndim != 3:
        raise InputError(
            f"{name} must have shape (n_refits, n_samples, n_targets), got {delta.shape}; "
            "stack the per-refit changes first"
        )
    return delta


def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}; for example alpha=0.05")
    return float(alpha)


def _quiet() -> warnings.catch_warnings:
    """Silence numpy's 'mean of empty slice' warnings for all-NaN targets."""
    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)


def _unit(scale: np.ndarray | None, n_targets: int) -> np.ndarray:
    unit = np.ones(n_targets) if scale is None else np.asarray(scale, dtype=np.float64)
    return np.where(np.isfinite(unit) & (unit > 0), unit, 1.0)


def bh_fdr(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of a 1-D array; NaN stays NaN.

    Returns array of shape (n,) with q_i = min_{k >= rank_i} p_(k) * m / k, capped at 1.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q[order] = np.minimum(ranked, 1.0)
    return q


def bayes_decision_fdr(error_prob: np.ndarray) -> np.ndarray:
    """Expected FDR of calling every target at least as strong as each one.

    ``error_prob`` (n,) is the posterior probability that a call would have the wrong sign.
    Targets are ranked by it (ascending); the FDR of the top k is the mean error probability
    of those k (the Bayesian decision rule of MOVE / Newton et al. 2004). Tied targets share
    the FDR of their whole tie group, so a threshold never splits a tie. NaN stays NaN.
    Returns array of shape (n,).
    """
    e = np.asarray(error_prob, dtype=np.float64)
    fdr = np.full(e.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(e))
    if ok.size == 0:
        return fdr
    order = ok[np.argsort(e[ok], kind="stable")]
    sorted_e = e[order]
    running = np.cumsum(sorted_e) / np.arange(1, sorted_e.size + 1)
    last_of_tie = np.searchsorted(sorted_e, sorted_e, side="right") - 1
    fdr[order] = running[last_of_tie]
    return fdr


def empirical_null(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Robust z-scores of x (n,) against its own bulk (Efron's empirical null).

    Most targets of a perturbation are unrelated to it, but they still move a little and
    consistently (the finite sample's chance correlations are learnt by every refit), so the
    null is not "exactly zero": its centre and spread are estimated from all targets with
    the median and the MAD. Assumes most targets are unaffected. Returns (z (n,), centre,
    spread); NaN stays NaN.
    """
    v = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(v)
    if ok.sum() < 3:
        return np.full(v.shape, np.nan), float("nan"), float("nan")
    centre = float(np.median(v[ok]))
    spread = 1.4826 * float(np.median(np.abs(v[ok] - centre)))
    if spread <= 0:
        spread = float(np.std(v[ok])) or 1.0
    return (v - centre) / spread, centre, spread


def _trigamma_inverse(x: float) -> float:
    """y with polygamma(1, y) == x (Newton's method as in limma's trigammaInverse)."""
    from scipy.special import polygamma

    if x > 1e7:
        return 1.0 / np.sqrt(x)
    if x < 1e-6:
        return 1.0 / x
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        step = tri * (1.0 - tri / x) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def squeeze_var(var: np.ndarray, df: float) -> tuple[np.ndarray, float, float]:
    """Empirical-Bayes moderated variances (limma's squeezeVar, Smyth 2004).

    var: (n,) sample variances with ``df`` degrees of freedom each. Fits a scaled inverse
    chi-square prior (s0^2, d0) to all of them by moments of log(var) and returns the
    posterior variances (d0 s0^2 + df var) / (d0 + df), shape (n,), with s0^2 and d0
    (d0 = inf when the variances agree more than chance allows: every target gets s0^2).
    """
    from scipy.special import digamma, polygamma

    v = np.asarray(var, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 3:
        return v, float("nan"), 0.0
    z = np.log(v[ok])
    e = z - digamma(df / 2.0) + np.log(df / 2.0)
    emean = float(e.mean())
    evar = float(e.var(ddof=1) - polygamma(1, df / 2.0))
    if evar > 0:
        d0 = 2.0 * _trigamma_inverse(evar)
        s0 = float(np.exp(emean + digamma(d0 / 2.0) - np.log(d0 / 2.0)))
        post = (d0 * s0 + df * v) / (d0 + df)
    else:
        d0, s0 = float("inf"), float(np.exp(emean))
        post = np.full_like(v, s0)
    return np.where(np.isfinite(v), post, np.nan), s0, d0


# --------------------------------------------------------------------------- summaries


@dataclass
class Summary:
    """Per-target sufficient statistics of one source's decoded changes.

    n_up / n_down / n_valid: (n_targets,) counts over refits x samples of delta > tol,
    delta < -tol and of non-missing values; effect: (n_targets,) mean change;
    refit_mean / refit_sd: (n_refits, n_targets) mean and sd (ddof 1) over samples per refit;
    refit_n: (n_refits, n_targets) samples per refit; scale: (n_targets,) the targets' spread;
    ks: (n_refits, n_targets) signed KS statistic per refit, or None when not computed;
    ks_n: number of samples the KS statistics used.
    """

    n_up: np.ndarray
    n_down: np.ndarray
    n_valid: np.ndarray
    effect: np.ndarray
    refit_mean: np.ndarray
    refit_sd: np.ndarray
    refit_n: np.ndarray
    scale: np.ndarray
    ks: np.ndarray | None = None
    ks_n: np.ndarray | None = None

    @property
    def n_targets(self) -> int:
        return int(self.n_valid.shape[0])

    def take(self, idx: np.ndarray) -> Summary:
        """The summary of the targets ``idx`` (int or bool index over targets)."""
        return Summary(
            n_up=self.n_up[idx],
            n_down=self.n_down[idx],
            n_valid=self.n_valid[idx],
            effect=self.effect[idx],
            refit_mean=self.refit_mean[:, idx],
            refit_sd=self.refit_sd[:, idx],
            refit_n=self.refit_n[:, idx],
            scale=self.scale[idx],
            ks=None if self.ks is None else self.ks[:, idx],
            ks_n=None if self.ks_n is None else self.ks_n[idx],
        )


def summarize(
    before: np.ndarray,
    after: np.ndarray,
    *,
    scale: np.ndarray | None = None,
    with_ks: bool = False,
    with_sd: bool = True,
    ks_max_samples: int | None = 1000,
    seed: int = 0,
) -> Summary:
    """Sufficient statistics of after - before, both (n_refits, n_samples, n_targets).

    NaN marks missing values. scale: (n_targets,) target spread (default: sd of ``before``
    over samples, averaged over refits). with_ks: also the per-refit signed KS statistics on
    the NaN-free rows (pass one modality at a time), at most ``ks_max_samples`` of them (a
    seeded random subset; sorting dominates the cost). with_sd=False skips the per-refit sd
    (the t-test and the bayes method need it; KS does not).
    """
    before = _check_delta(before, "before")
    after = _check_delta(after, "after")
    if before.shape != after.shape:
        raise InputError(f"before {before.shape} and after {after.shape} must have the same shape")
    if not (np.isnan(before).any() or np.isnan(after).any()):
        return summarize_rows(
            before,
            after,
            None,
            scale=scale,
            with_ks=with_ks,
            with_sd=with_sd,
            ks_max_samples=ks_max_samples,
            seed=seed,
        )
    delta = after - before
    n_refits, _, n_targets = delta.shape
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        refit_n = (~np.isnan(delta)).sum(axis=1)
        refit_mean = np.nanmean(delta, axis=1, dtype=np.float64)
        refit_sd = np.nanstd(delta, axis=1, ddof=1, dtype=np.float64)
        if scale is None:
            scale = np.nanmean(np.nanstd(before, axis=1, dtype=np.float64), axis=0)
        n_valid = refit_n.sum(axis=0)
        effect = np.where(n_valid > 0, (refit_mean * refit_n).sum(axis=0) / n_valid, np.nan)
    ks_r, ks_n = None, None
    if with_ks:
        rows = np.flatnonzero(
            ~np.isnan(before).any(axis=(0, 2)) & ~np.isnan(after).any(axis=(0, 2))
        )
        part = summarize_rows(
            before[:, rows],
            after[:, rows],
            None,
            scale=scale,
            with_ks=True,
            with_sd=False,
            ks_max_samples=ks_max_samples,
            seed=seed,
        )
        ks_r, ks_n = part.ks, part.ks_n
    return Summary(
        n_up=(delta > SIGN_TOL).sum(axis=(0, 1)),
        n_down=(delta < -SIGN_TOL).sum(axis=(0, 1)),
        n_valid=n_valid,
        effect=effect,
        refit_mean=refit_mean,
        refit_sd=refit_sd,
        refit_n=refit_n,
        scale=np.asarray(scale, dtype=np.float64),
        ks=ks_r,
        ks_n=ks_n,
    )


def summarize_rows(
    before: np.ndarray,
    after: np.ndarray,
    before_rows: np.ndarray | None,
    *,
    scale: np.ndarray | None = None,
    with_ks: bool = False,
    with_sd: bool = True,
    ks_max_samples: int | None = 1000,
    seed: int = 0,
) -> Summary:
    """:func:`summarize` for NaN-free blocks, one refit at a time (no big temporaries).

    after: (n_refits, n, n_targets); before: the same, or (n_refits, n_all, n_targets) with
    ``before_rows`` (n,) selecting the rows that pair with ``after`` (e.g. the baseline of
    the whole dataset and the perturbed samples' positions), which avoids copying it.
    """
    n_refits, n, n_targets = after.shape
    refit_mean = np.empty((n_refits, n_targets))
    refit_sd = np.full((n_refits, n_targets), np.nan)
    sd_before = np.empty((n_refits, n_targets))
    ks_r = np.full((n_refits, n_targets), np.nan) if with_ks else None
    sub = np.arange(n)
    if with_ks and ks_max_samples is not None and n > ks_max_samples:
        sub = np.sort(np.random.default_rng(seed).choice(n, int(ks_max_samples), replace=False))
    n_up = np.zeros(n_targets, dtype=np.int64)
    n_down = np.zeros(n_targets, dtype=np.int64)
    for r in range(n_refits):
        b = before[r] if before_rows is None else before[r][before_rows]
        d = after[r] - b  # (n, n_targets)
        n_up += np.count_nonzero(d > SIGN_TOL, axis=0)
        n_down += np.count_nonzero(d < -SIGN_TOL, axis=0)
        refit_mean[r] = d.mean(axis=0, dtype=np.float64)
        if with_sd and n > 1:
            refit_sd[r] = d.std(axis=0, ddof=1, dtype=np.float64)
        if scale is None:
            sd_before[r] = b.std(axis=0, dtype=np.float64)
        if with_ks and sub.size >= 2:
            ks_r[r] = signed_ks(after[r][sub], b[sub])
    if scale is None:
        scale = sd_before.mean(axis=0)
    return Summary(
        n_up=n_up,
        n_down=n_down,
        n_valid=np.full(n_targets, n_refits * n),
        effect=refit_mean.mean(axis=0) if n else np.full(n_targets, np.nan),
        refit_mean=refit_mean if n else np.full((n_refits, n_targets), np.nan),
        refit_sd=refit_sd,
        refit_n=np.full((n_refits, n_targets), n),
        scale=np.asarray(scale, dtype=np.float64),
        ks=ks_r,
        ks_n=None if ks_r is None else np.full(n_targets, sub.size),
    )


def concat(parts: list[Summary]) -> Summary:
    """Join summaries of target blocks (same refits) along the targets."""
    if not parts:
        raise InputError("nothing to score: no targets")
    no_ks = any(p.ks is None for p in parts)
    ks = None if no_ks else np.concatenate([p.ks for p in parts], axis=1)
    ks_n = None if no_ks else np.concatenate([p.ks_n for p in parts])
    return Summary(
        n_up=np.concatenate([p.n_up for p in parts]),
        n_down=np.concatenate([p.n_down for p in parts]),
        n_valid=np.concatenate([p.n_valid for p in parts]),
        effect=np.concatenate([p.effect for p in parts]),
        refit_mean=np.concatenate([p.refit_mean for p in parts], axis=1),
        refit_sd=np.concatenate([p.refit_sd for p in parts], axis=1),
        refit_n=np.concatenate([p.refit_n for p in parts], axis=1),
        scale=np.concatenate([p.scale for p in parts]),
        ks=ks,
        ks_n=ks_n,
    )


# --------------------------------------------------------------------------- decisions


def pooled_sd(s: Summary) -> np.ndarray:
    """SD of the change over all samples x refits (n_targets,), from the per-refit moments.

    Total sum of squares = within refits (sum of (n_r - 1) sd_r^2) + between refits
    (sum of n_r (mean_r - mean)^2), divided by n - 1. NaN where fewer than 2 values.
    Needs a summary computed with ``with_sd=True``.
    """
    n_r = s.refit_n.astype(np.float64)
    if np.isnan(s.refit_sd[n_r > 1]).any():
        raise InputError(
            "the bayes method needs summaries computed with with_sd=True (per-refit sd)"
        )
    with np.errstate(invalid="ignore"):
        within = np.where(n_r > 1, (n_r - 1.0) * np.nan_to_num(s.refit_sd) ** 2, 0.0)
        between = np.where(n_r > 0, n_r * np.nan_to_num(s.refit_mean - s.effect) ** 2, 0.0)
        n = n_r.sum(axis=0)
        var = (within.sum(axis=0) + between.sum(axis=0)) / np.where(n > 1, n - 1.0, np.nan)
    return np.sqrt(var)


def sign_probability(
    s: Summary, *, prior_strength: float = PRIOR_STRENGTH
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(delta > 0) over samples x refits, without a ceiling. Returns (prob_up, log_bf, z).

    The fraction of positive changes k / n is MOVE's estimate (here ties, |delta| <=
    SIGN_TOL, count half: a change of zero has no sign; MOVE counts them as down); it cannot tell apart two targets whose n changes all have one sign, and
    MOVE's clip at 1e-8 gives them all the same score. Here p is the posterior mean of that
    fraction under a Beta prior worth ``prior_strength`` (c) samples whose mean is the normal
    approximation of the change's distribution, pi0 = Phi(z) with z = mean / sd over all
    samples and refits (:func:`pooled_sd`):

        p = (k + c * Phi(z)) / (n + c),   log_bf = log(k + c Phi(z)) - log(n - k + c Phi(-z))

    With c = 1 and pi0 = 1/2 this is Jeffreys' estimate (k + 1/2) / (n + 1). Wherever the
    data resolve the fraction (both signs seen) p stays within 1/n of k / n, so the calls are
    essentially MOVE's; when every change has one sign the evidence keeps growing with how far the
    distribution lies from zero (|log_bf| ~ log n + z^2 / 2), so strong hits still rank. The
    tail is computed in log space (no underflow); sd is floored at SIGN_TOL and a mean change
    within SIGN_TOL counts as none (z = 0). All arrays have shape (n_targets,); NaN where
    the target has no values.
    """
    from scipy.special import log_ndtr

    c = float(prior_strength)
    if not c > 0:
        raise InputError(f"prior_strength must be > 0, got {prior_strength}; for example 1.0")
    n = s.n_valid.astype(np.float64)
    ties = np.maximum(n - s.n_up - s.n_down, 0.0)
    up, down = s.n_up + 0.5 * ties, s.n_down + 0.5 * ties
    with np.errstate(invalid="ignore", divide="ignore"):
        z = s.effect / np.maximum(pooled_sd(s), SIGN_TOL)
        # a single value (no spread) or a mean change within SIGN_TOL: prior mean 1/2
        z = np.where(np.abs(s.effect) > SIGN_TOL, np.nan_to_num(z, nan=0.0), 0.0)
        log_up = np.logaddexp(np.log(up), np.log(c) + log_ndtr(z))
        log_down = np.logaddexp(np.log(down), np.log(c) + log_ndtr(-z))
        prob_up = np.exp(log_up - np.log(n + c))
    empty = n <= 0
    return (
        np.where(empty, np.nan, prob_up),
        np.where(empty, np.nan, log_up - log_down),
        np.where(empty, np.nan, z),
    )


def decide_bayes(
    s: Summary,
    *,
    alpha: float = 0.05,
    prior_strength: float = PRIOR_STRENGTH,
    min_z: float = 3.0,
) -> dict[str, np.ndarray]:
    """MOVE's Bayesian decision approach from a :class:`Summary` (computed with_sd=True).

    The sign probability and Bayes factor come from :func:`sign_probability` (continuous,
    no ceiling: strong hits keep their order). A call needs both MOVE's criterion
    (Bayesian-decision FDR <= alpha over this source's targets) and an effect outside the
    bulk of this source's targets: |z_null| >= min_z, where z_null is the standardised
    effect (effect / scale) against the empirical null (:func:`empirical_null`). Sign
    consistency alone calls every target that moves a hair in the same direction in every
    refit, which chance correlations in the training data make many targets do; ``min_z=0``
    gives MOVE's rule.

    Returns per-target arrays (n_targets,): ``effect``, ``effect_std``, ``z_null``,
    ``prob_up`` (P(delta > 0) over samples x refits), ``log_bf`` (log(p/(1-p))), ``score``
    (= |log_bf|), ``fdr`` (Bayesian decision rule), ``significant``.
    """
    from scipy.special import expit

    alpha = _check_alpha(alpha)
    p, log_bf, _ = sign_probability(s, prior_strength=prior_strength)
    score = np.abs(log_bf)
    error_prob = expit(-score)  # P(other sign) = 1 - sigmoid(|log_bf|)
    fdr = bayes_decision_fdr(error_prob)
    effect_std = s.effect / _unit(s.scale, s.n_targets)
    z_null, _, _ = empirical_null(effect_std)
    significant = (np.nan_to_num(fdr, nan=np.inf) <= alpha) & (
        np.nan_to_num(np.abs(z_null), nan=0.0) >= min_z
    )
    return {
        "effect": s.effect,
        "effect_std": effect_std,
        "z_null": z_null,
        "prob_up": p,
        "log_bf": log_bf,
        "score": score,
        "fdr": fdr,
        "significant": significant,
    }


def decide_ttest(
    s: Summary,
    *,
    alpha: float = 0.05,
    null: Literal["empirical", "theoretical"] = "empirical",
) -> dict[str, np.ndarray]:
    """Paired t-test per refit, aggregated across refits, from a :class:`Summary`; BH-FDR.

    Per refit, the paired test of perturbed vs baseline is a one-sample t-test of delta
    across samples (``p_refit_median`` reports it). The aggregate tests the per-refit mean
    changes, standardised by the targets' spread, against 0 with the refits as replicates;
    with few refits (5-10) their variance is noisy, so it is moderated across all targets of
    this source (:func:`squeeze_var`). Chance correlations in the training data still shift
    unrelated targets consistently in every refit, so by default (``null="empirical"``) the
    t-statistics are calibrated against their own bulk (:func:`empirical_null`) before
    p-values are taken; ``null="theoretical"`` uses the t distribution as is. With a single
    refit the per-sample test is used. Returns per-target arrays (n_targets,): ``effect``,
    ``t``, ``df``, ``z_null``, ``p_value``, ``p_refit_median``, ``score`` (-log10 p, capped
    at 300), ``fdr`` (BH q-value) and ``significant`` (fdr <= alpha).
    """
    from scipy import stats

    alpha = _check_alpha(alpha)
    if null not in ("empirical", "theoretical"):
        raise InputError(f"null must be 'empirical' or 'theoretical', got {null!r}")
    n_refits, n_targets = s.refit_mean.shape
    m_r, sd_r, n_r = s.refit_mean, s.refit_sd, s.refit_n
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        t_r = m_r / (sd_r / np.sqrt(n_r))
        t_r = np.where((sd_r == 0) & (m_r == 0), 0.0, t_r)
        p_r = 2.0 * stats.t.sf(np.abs(t_r), df=np.maximum(n_r - 1, 1))
        p_r = np.where(n_r >= 2, p_r, np.nan)
        p_med = np.nanmedian(p_r, axis=0)
        if n_refits >= 2:
            e = m_r / _unit(s.scale, n_targets)  # standardised per-refit effects
            k = (~np.isnan(e)).sum(axis=0)
            mean = np.nanmean(e, axis=0)
            var = np.nanvar(e, axis=0, ddof=1)
            post, _, d0 = squeeze_var(var, float(n_refits - 1))
            df = np.full(n_targets, min((n_refits - 1) + d0, 1e6))
            t = mean / np.sqrt(post / k)
            t = np.where((post == 0) & (mean == 0), 0.0, t)
            p = 2.0 * stats.t.sf(np.abs(t), df=df)
            p = np.where(k >= 2, p, np.nan)
        else:
            t, p = t_r[0], p_r[0]
            df = np.maximum(n_r[0] - 1, 1).astype(np.float64)
    z = np.asarray(t, dtype=np.float64)
    if null == "empirical":  # moderated df is large, so t is on the normal scale already
        z, _, _ = empirical_null(z)
        p = np.where(np.isnan(z), np.nan, 2.0 * stats.norm.sf(np.abs(z)))
    q = bh_fdr(p)
    return {
        "effect": s.effect,
        "t": t,
        "df": df,
        "z_null": z,
        "p_value": p,
        "p_refit_median": p_med,
        "score": np.minimum(-np.log10(np.maximum(p, 1e-300)), MAX_SCORE),
        "fdr": q,
        "significant": np.nan_to_num(q, nan=np.inf) <= alpha,
    }


def decide_ks(s: Summary, *, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """MOVE's KS approach from a :class:`Summary` computed with ``with_ks=True``.

    Returns per-target arrays (n_targets,): ``effect``, ``ks`` (median signed KS statistic
    over refits), ``p_value`` (asymptotic two-sample Kolmogorov null at the target's number
    of samples), ``score`` (-log10 p, capped at 300), ``fdr`` (BH q-value), ``significant``.
    """
    from scipy.special import kolmogorov

    alpha = _check_alpha(alpha)
    if s.ks is None:
        raise InputError("the KS method needs summaries computed with with_ks=True")
    with _quiet():
        d = np.nanmedian(s.ks, axis=0)
    n = s.ks_n.astype(np.float64)
    p = np.where(d == 0, 1.0, kolmogorov(np.abs(d) * np.sqrt(n / 2.0)))
    p = np.where(np.isnan(d) | (n < 2), np.nan, p)
    q = bh_fdr(p)
    return {
        "effect": s.effect,
        "ks": d,
        "p_value": p,
        "score": np.minimum(-np.log10(np.maximum(p, 1e-300)), MAX_SCORE),
        "fdr": q,
        "significant": np.nan_to_num(q, nan=np.inf) <= alpha,
    }


def decide(s: Summary, *, method: Method = "bayes", alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Per-target columns for ``method`` ("bayes" | "ttest" | "ks") from a Summary."""
    if method == "bayes":
        return decide_bayes(s, alpha=alpha)
    if method == "ttest":
        return decide_ttest(s, alpha=alpha)
    if method == "ks":
        return decide_ks(s, alpha=alpha)
    raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


# --------------------------------------------------------------------------- plain arrays


def bayes(
    delta: np.ndarray,
    *,
    alpha: float = 0.05,
    prior_strength: float = PRIOR_STRENGTH,
    scale: np.ndarray | None = None,
    min_z: float = 3.0,
) -> dict[str, np.ndarray]:
    """:func:`decide_bayes` on delta (n_refits, n_samples, n_targets); scale default 1."""
    delta = _check_delta(delta)
    s = summarize(np.zeros_like(delta), delta, scale=_unit(scale, delta.shape[2]))
    return decide_bayes(s, alpha=alpha, prior_strength=prior_strength, min_z=min_z)


def ttest(
    delta: np.ndarray,
    *,
    alpha: float = 0.05,
    scale: np.ndarray | None = None,
    null: Literal["empirical", "theoretical"] = "empirical",
) -> dict[str, np.ndarray]:
    """:func:`decide_ttest` on delta (n_refits, n_samples, n_targets); scale default 1."""
    delta = _check_delta(delta)
    s = summarize(np.zeros_like(delta), delta, scale=_unit(scale, delta.shape[2]))
    return decide_ttest(s, alpha=alpha, null=null)


def signed_ks(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Signed two-sample KS statistic along axis -2, vectorised over the other axes.

    after, before: (..., n, n_targets) with the same n; NaN rows are not supported here
    (split by modality first). Returns (..., n_targets): sup |F_before - F_after| with the
    sign of the larger one-sided difference, positive when ``after`` moved up.
    """
    n = np.shape(after)[-2]
    # samples on the last, contiguous axis: sorting along it is several times faster
    both = np.ascontiguousarray(np.swapaxes(np.concatenate([after, before], axis=-2), -1, -2))
    # within a run of equal values the order does not matter (only run ends are read)
    order = np.argsort(both, axis=-1)
    values = np.take_along_axis(both, order, axis=-1)
    # +1 for a 'before' point, -1 for an 'after' point: running sum / n = F_before - F_after
    diff = np.cumsum(np.where(order >= n, 1, -1).astype(np.int32), axis=-1)
    # only the last element of a run of equal values is a valid ECDF evaluation point
    tie = np.zeros(values.shape, dtype=bool)
    tie[..., :-1] = values[..., 1:] == values[..., :-1]
    diff[tie] = 0
    d_up = diff.max(axis=-1) / n
    d_down = -diff.min(axis=-1) / n
    return np.where(d_up >= d_down, d_up, -d_down)


def ks(before: np.ndarray, after: np.ndarray, *, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """:func:`decide_ks` on reconstructions before/after (n_refits, n_samples, n_targets).

    Rows with NaN in any target are dropped (pass one modality at a time).
    """
    return decide_ks(summarize(before, after, with_ks=True), alpha=alpha)


def score_targets(
    before: np.ndarray,
    after: np.ndarray,
    *,
    method: Method = "bayes",
    alpha: float = 0.05,
    blocks: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Score every target of one perturbed source feature with ``method``.

    before, after: (n_refits, n_samples, n_targets) reconstructions; NaN marks a sample
    without that target's modality. ``blocks`` lists column-index arrays that share the same
    valid rows (one per modality), in order; FDR is always over all targets of this source
    together. Returns per-target arrays (n_targets,) as :func:`decide` does.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    before = _check_delta(before, "before")
    after = _check_delta(after, "after")
    blocks = blocks if blocks is not None else [np.arange(before.shape[2])]
    parts = []
    for cols in blocks:
        b, a = before[:, :, cols], after[:, :, cols]
        rows = ~np.isnan(b).all(axis=(0, 2)) | ~np.isnan(a).all(axis=(0, 2))
        parts.append(summarize(b[:, rows], a[:, rows], with_ks=method == "ks"))
    return decide(concat(parts), method=method, alpha=alpha)
