"""The fused negative-binomial loss (core.likelihoods.nb_nll) against the reference formula.

The reference is nb_log_prob (torch.lgamma, autograd's digamma). The fused kernel must give the
same loss and the same gradients to float32 rounding, on data with zeros, large counts and
inverse dispersions across the head's whole clamp range, with and without a mask.
"""

import math

import pytest
import torch
from torch.nn import functional as F

import core.likelihoods as lik
from core.likelihoods import NegativeBinomialHead, lgamma_digamma, nb_log_prob, nb_nll


def reference_nll(x, log_mu, log_theta, mask=None):
    lp = nb_log_prob(x, log_mu, log_theta, factorial=False)
    return -(lp if mask is None else lp * mask).sum(dim=-1)


def nb_data(n=96, n_genes=300, seed=0, dtype=torch.float32):
    """Counts with ~60% zeros, a few very large counts, and theta from e^-10 to e^12."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((n, n_genes), generator=g) * 1.5
    lib = torch.exp(torch.randn((n, 1), generator=g) * 0.5 + math.log(2000.0))
    mu = torch.softmax(logits, -1) * lib
    x = torch.poisson(mu, generator=g)
    x[:, :5] = torch.tensor([0.0, 1.0, 250.0, 4.0e4, 1.0e5])  # large counts in every row
    x[0] = 0.0  # an all-zero sample
    log_theta = torch.linspace(-10.0, 12.0, n_genes)[torch.randperm(n_genes, generator=g)]
    log_mu = (torch.log_softmax(logits + torch.randn((n, n_genes), generator=g), -1)) + lib.log()
    mask = (torch.rand((n, n_genes), generator=g) > 0.3).to(torch.float32)
    weights = torch.rand(n, generator=g)  # upstream gradient: not all ones
    return [t.to(dtype) for t in (x, log_mu, log_theta, mask, weights)]


def loss_and_grads(fn, x, log_mu, log_theta, mask, weights, grad_theta=True):
    log_mu = log_mu.detach().clone().requires_grad_()
    log_theta = log_theta.detach().clone().requires_grad_(grad_theta)
    nll = fn(x, log_mu, log_theta, mask)
    (nll * weights).sum().backward()
    return nll.detach(), log_mu.grad, log_theta.grad


def assert_matches_truth(ours, ref32, truth, what):
    """ours within float32 tolerance of the float64 truth, and no further off than 4x the float32
    reference formula (plus a float32 rounding floor of the largest value). With counts of 1e5
    the float32 reference is itself off by ~1e-5 relative in places; the fused kernel must not be
    worse than it."""
    scale = truth.abs().max()
    err_ours = (ours.double() - truth).abs().max()
    err_ref = (ref32.double() - truth).abs().max()
    assert err_ours <= 4 * err_ref + 1e-6 * scale, (what, float(err_ours), float(err_ref))
    torch.testing.assert_close(ours.double(), truth, rtol=1e-4, atol=1e-5 * float(scale))


def check_against_reference(x, log_mu, log_theta, mask, weights, *, grad_theta=True):
    """Fused vs float32 reference vs float64 reference: loss and the gradients."""
    fused = loss_and_grads(nb_nll, x, log_mu, log_theta, mask, weights, grad_theta)
    ref32 = loss_and_grads(reference_nll, x, log_mu, log_theta, mask, weights, grad_theta)
    truth = loss_and_grads(
        reference_nll,
        *(None if t is None else t.double() for t in (x, log_mu, log_theta, mask, weights)),
        grad_theta,
    )
    names = ("loss", "grad log_mu", "grad log_theta")
    for what, ours, ref, true in zip(names, fused, ref32, truth, strict=True):
        if true is None:
            assert ours is None, what
            continue
        assert_matches_truth(ours, ref, true, what)


@pytest.mark.parametrize("use_mask", [False, True])
def test_fused_loss_and_gradients_match_the_reference_formula(use_mask):
    x, log_mu, log_theta, mask, w = nb_data()
    check_against_reference(x, log_mu, log_theta, mask if use_mask else None, w)


def test_float64_gradients_pass_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.poisson(torch.full((5, 7), 3.0, dtype=torch.float64), generator=g)
    x[0, :3] = 0.0
    x[1, 1] = 40.0
    log_mu = torch.randn((5, 7), generator=g, dtype=torch.float64).requires_grad_()
    log_theta = torch.linspace(-2.0, 3.0, 7, dtype=torch.float64).requires_grad_()
    mask = (torch.rand((5, 7), generator=g) > 0.3).to(torch.float64)
    for m in (None, mask):
        assert torch.autograd.gradcheck(lambda a, b, m=m: nb_nll(x, a, b, m), (log_mu, log_theta))


def test_zeros_add_nothing_to_the_gamma_terms():
    # x = 0 everywhere: loss = sum theta * softplus(log mu - log theta), lgamma terms cancel
    g = torch.Generator().manual_seed(2)
    log_mu = torch.randn((4, 50), generator=g)
    log_theta = torch.linspace(-10.0, 12.0, 50)
    x = torch.zeros(4, 50)
    expected = (log_theta.double().exp() * F.softplus(log_mu.double() - log_theta.double())).sum(-1)
    torch.testing.assert_close(nb_nll(x, log_mu, log_theta).double(), expected, rtol=1e-6, atol=0)
    check_against_reference(x, log_mu, log_theta, None, torch.rand(4, generator=g))


def test_frozen_theta_and_no_grad():
    x, log_mu, log_theta, mask, w = nb_data(n=16, n_genes=60)
    check_against_reference(x, log_mu, log_theta, mask, w, grad_theta=False)
    with torch.no_grad():
        ours = nb_nll(x, log_mu, log_theta, mask)
    truth = reference_nll(x.double(), log_mu.double(), log_theta.double(), mask.double())
    torch.testing.assert_close(
        ours.double(), truth, rtol=1e-5, atol=1e-6 * float(truth.abs().max())
    )


def test_lgamma_digamma_series_is_float32_accurate():
    z = torch.cat(
        [
            torch.logspace(-5.0, 7.0, 20001),
            torch.linspace(0.5, 12.0, 20001),
            torch.arange(1.0, 3000.0) + 0.25,
            torch.tensor([1.4616321, 1.0, 2.0, 4.0, 1.0e5]),  # digamma's root, lgamma's roots
        ]
    )
    lg, dg = lgamma_digamma(z)
    true_lg, true_dg = torch.lgamma(z.double()), torch.digamma(z.double())
    torch.testing.assert_close(lg.double(), true_lg, rtol=5e-7, atol=4e-6)
    torch.testing.assert_close(dg.double(), true_dg, rtol=1e-6, atol=1e-6)
    lg_only, none = lgamma_digamma(z, digamma=False)
    assert none is None
    torch.testing.assert_close(lg_only, lg)
    # float64 takes torch's exact functions
    lg64, dg64 = lgamma_digamma(z.double())
    torch.testing.assert_close(lg64, true_lg)
    torch.testing.assert_close(dg64, true_dg)


def test_inputs_untouched_and_other_shapes_fall_back():
    x, log_mu, log_theta, mask, _ = nb_data(n=8, n_genes=40)
    before = [t.clone() for t in (x, log_mu, log_theta, mask)]
    nb_nll(x, log_mu, log_theta, mask)
    for t, b in zip((x, log_mu, log_theta, mask), before, strict=True):
        assert torch.equal(t, b)
    # per-sample theta (n, n_genes) is not the fused layout: the reference formula answers
    theta_2d = log_theta.expand(8, -1)
    torch.testing.assert_close(
        nb_nll(x, log_mu, theta_2d), reference_nll(x, log_mu, theta_2d), rtol=1e-5, atol=1e-2
    )


def test_head_nll_with_and_without_precomputed_factorial():
    head = NegativeBinomialHead(4, 30)
    with torch.no_grad():
        head.log_theta.copy_(torch.linspace(-3.0, 5.0, 30))
    params = head(torch.randn(5, 4), torch.full((5, 1), 500.0))
    x = torch.poisson(torch.full((5, 30), 12.0))
    x[:, 0] = 0.0
    mask = torch.ones(5, 30)
    mask[1, 10:] = 0.0
    expected = -(nb_log_prob(x, params["log_mu"], params["log_theta"]) * mask).sum(-1)
    torch.testing.assert_close(head.nll(params, x, mask), expected, rtol=1e-5, atol=1e-3)
    const = lik.log_factorial_sum(x, mask)
    torch.testing.assert_close(head.nll(params, x, mask, const), expected, rtol=1e-5, atol=1e-3)


NAMES = ("loss", "grad log_mu", "grad log_theta")


def compiled_nll(x, log_mu, log_theta, mask=None):
    return nb_nll(x, log_mu, log_theta, mask, compiled=True)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    """A torch.compile that breaks (no C++ compiler, say): a warning, then the eager answer."""
    x, log_mu, log_theta, _, w = nb_data(n=8, n_genes=40)
    eager = loss_and_grads(nb_nll, x, log_mu, log_theta, None, w)

    def broken_compile(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(lik, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile of the negative-binomial loss failed"):
        fallback = loss_and_grads(compiled_nll, x, log_mu, log_theta, None, w)
    for a, b in zip(eager, fallback, strict=True):
        torch.testing.assert_close(a, b)
    assert lik._compiled["nb"] is None  # not retried


@pytest.mark.slow
def test_compiled_kernel_matches_the_reference_formula():
    """The torch.compile'd kernel (what long CPU trainings use) against the float64 truth."""
    x, log_mu, log_theta, mask, w = nb_data()
    for m in (None, mask):
        ours = loss_and_grads(compiled_nll, x, log_mu, log_theta, m, w)
        ref32 = loss_and_grads(reference_nll, x, log_mu, log_theta, m, w)
        truth = loss_and_grads(
            reference_nll,
            *(None if t is None else t.double() for t in (x, log_mu, log_theta, m, w)),
        )
        for what, a, r, t in zip(NAMES, ours, ref32, truth, strict=True):
            assert_matches_truth(a, r, t, what)
    assert lik._compiled.get("nb") is not None  # it really compiled (no silent fallback)


def test_compile_is_chosen_for_long_cpu_trainings_only(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(lik.COMPILE_ENV, raising=False)
    monkeypatch.setattr(lik.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert lik.compile_wanted(cpu, lik.COMPILE_MIN_WORK)
    assert not lik.compile_wanted(cpu, lik.COMPILE_MIN_WORK / 2)
    assert not lik.compile_wanted(torch.device("cuda"), lik.COMPILE_MIN_WORK * 10)
    monkeypatch.setattr(lik.shutil, "which", lambda name: None)  # no C++ compiler
    assert not lik.compile_wanted(cpu, lik.COMPILE_MIN_WORK * 10)
    monkeypatch.setenv(lik.COMPILE_ENV, "1")
    assert lik.compile_wanted(cpu, 1.0)
    monkeypatch.setenv(lik.COMPILE_ENV, "0")
    monkeypatch.setattr(lik.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert not lik.compile_wanted(cpu, lik.COMPILE_MIN_WORK * 10)
    # the decision lands on every NB head of a model, and only there
    monkeypatch.delenv(lik.COMPILE_ENV)
    model = torch.nn.ModuleDict({"a": NegativeBinomialHead(4, 500), "b": lik.GaussianHead(4, 9)})
    big = lik.COMPILE_MIN_WORK / 500
    assert lik.use_compiled_nb(model, device=cpu, samples_x_epochs=big)
    assert model["a"].compiled and not hasattr(model["b"], "compiled")
    assert not lik.use_compiled_nb(model, device=cpu, samples_x_epochs=big / 2)
    assert not model["a"].compiled
