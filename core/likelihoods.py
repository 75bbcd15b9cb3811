"""Decoder heads: one likelihood per modality kind (torch modules).

Each head maps the decoder's last hidden layer ``h`` (n, n_hidden) to distribution parameters
(a dict of tensors) and knows three things about them:

- ``nll(params, target, mask) -> (n,)``: negative log-likelihood summed over features;
- ``mean(params) -> (n, n_target_space)``: the distribution mean in the preprocessing's target
  space (what :meth:`core.preprocess.ModalityTransform.inverse_transform` takes);
- ``input_mean(params) -> (n, n_in)``: the mean mapped into the encoder-input space (used for
  reconstruction metrics and for feeding a reconstruction back into an encoder).

Kinds: counts -> negative binomial with per-gene dispersion, mean = softmax(decoder) * library
(as in scVI, Lopez et al. 2018); proportion / continuous -> Gaussian with a learned per-feature
variance on the standardised (logit) scale; categorical -> softmax cross-entropy per variable.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.preprocess import SCALE_FACTOR

LOG_2PI = math.log(2.0 * math.pi)
EPS = 1e-8


def nb_log_prob(
    x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor, *, factorial: bool = True
) -> torch.Tensor:
    """Elementwise negative-binomial log-probability, mean mu and inverse dispersion theta.

    log NB(x; mu, theta) = theta (log theta - log(theta + mu)) + x (log mu - log(theta + mu))
                           + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1).
    factorial=False leaves out -lgamma(x + 1), which does not depend on the parameters (the
    training loop adds its precomputed per-sample sum instead: one lgamma pass less per step).
    Shapes broadcast; returns the shape of ``x``.
    """
    theta = log_theta.exp()
    log_theta_mu = torch.logaddexp(log_theta, log_mu)  # log(theta + mu), stable
    lp = (
        theta * (log_theta - log_theta_mu)
        + x * (log_mu - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
    )
    return lp - torch.lgamma(x + 1.0) if factorial else lp


# float32 lgamma and digamma as a few vectorised passes (torch's CPU kernels for both are
# scalar loops: digamma alone was a quarter of a training step). Shift by 4 with the recurrence,
# lgamma(z) = lgamma(z + 4) - log(z (z+1) (z+2) (z+3)),  digamma(z) = digamma(z + 4) - sum_k 1/(z+k),
# then the Stirling / asymptotic series at w = z + 4 >= 4 (Abramowitz & Stegun 6.1.41, 6.3.18),
# truncated where the next term is below 4e-8 at w = 4. With a = z (z + 3), (z+1)(z+2) = a + 2.
# Accuracy for z > 0, float32: lgamma within 2e-6 absolute (z < 10) / 3e-7 relative, digamma
# within 5e-7 relative of float64 (torch's own float32 digamma: 8e-7); see tests/test_nb_kernel.py.
_HALF_LOG_2PI_M_HALF = 0.5 * math.log(2.0 * math.pi) - 0.5
_SERIES_DTYPES = (torch.float32,)


def lgamma_digamma(
    z: torch.Tensor, *, digamma: bool = True, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(lgamma(z), digamma(z) or None) for z > 0, elementwise, shape of ``z``.

    float32 uses the shift + series above; other dtypes use torch.lgamma / torch.digamma.
    out: where to write digamma(z) (default: a new tensor).
    """
    if z.dtype not in _SERIES_DTYPES:
        return torch.lgamma(z), (torch.digamma(z, out=out) if digamma else None)
    w = z + 4.0
    a = (z + 3.0).mul_(z)  # z (z + 3)
    lw = torch.log(w)
    r = torch.reciprocal(w)
    r2 = r * r
    # (w - 1/2)(log w - 1) - 1/2 + log(2 pi)/2 + 1/(12 w) - 1/(360 w^3) + 1/(1260 w^5) - 1/(1680 w^7)
    poly = (r2 * (-1.0 / 1680.0)).add_(1.0 / 1260.0).mul_(r2).sub_(1.0 / 360.0).mul_(r2)
    poly.add_(1.0 / 12.0).mul_(r)
    lg = w.sub_(0.5).mul_(lw.sub(1.0)).add_(poly).add_(_HALF_LOG_2PI_M_HALF)
    lg.sub_(torch.log((a + 2.0).mul_(a)))  # log z(z+1)(z+2)(z+3)
    if not digamma:
        return lg, None
    # log w - 1/(2w) - 1/(12 w^2) + 1/(120 w^4) - 1/(252 w^6) + 1/(240 w^8) - 1/(132 w^10)
    dpoly = r2.mul(-1.0 / 132.0).add_(1.0 / 240.0).mul_(r2).sub_(1.0 / 252.0).mul_(r2)
    dpoly.add_(1.0 / 120.0).mul_(r2).sub_(1.0 / 12.0).mul_(r2)
    dg = r.mul_(-0.5).add_(lw).add_(dpoly)
    # sum_k 1/(z+k) = (2z + 3) (1/a + 1/(a + 2))
    shift = torch.reciprocal(a + 2.0).add_(a.reciprocal_()).mul_(z * 2.0 + 3.0)
    return lg, torch.sub(dg, shift, out=out)


# rows per block in the fused NB loss: about 2^17 elements, so a block's ~10 temporaries stay in
# the CPU's L2 cache instead of streaming (n, n_genes) arrays through memory once per operation
_BLOCK_ELEMENTS = 1 << 17


def _row_blocks(n: int, n_genes: int, device: torch.device) -> list[slice]:
    if device.type != "cpu":  # GPU kernels want the whole array at once
        return [slice(0, n)]
    rows = max(1, _BLOCK_ELEMENTS // max(n_genes, 1))
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


# torch.compile (inductor) turns the fused NB loss into one vectorised C++ loop for forward and
# one for backward: on a 2-core AVX-512 CPU about 2.5x faster than the eager blocks below (see
# bench/nb_kernel_speed.py); whole training steps at 2,000 genes ran 1.2-1.5x faster
# (bench/train_speed.py, ours vs ours_eager).
# Compiling costs ~15 s once per machine (inductor keeps a disk cache; ~3 s in later processes)
# and needs a C++ compiler, so :func:`compile_wanted` only turns it on for CPU trainings long
# enough to pay that back. OLE_COMPILE_NB=1 / 0 forces it on / off. Any failure warns once and
# falls back to the eager kernel.
COMPILE_ENV = "OLE_COMPILE_NB"
# element-epochs (training samples x count features x epochs) from which compiling pays off:
# the compiled kernel saves ~25 ns per element-epoch, so 1e9 saves ~25 s for <= 15 s of compiling
COMPILE_MIN_WORK = 1e9
_compiled: dict[str, tuple | None] = {}


def compile_wanted(device: torch.device, work: float) -> bool:
    """Whether training should use the compiled NB kernel (see COMPILE_ENV).

    work: training samples x count features x epochs. Automatic: CPU only (GPU eager kernels are
    already fused enough), a C++ compiler on PATH, and ``work >= COMPILE_MIN_WORK``.
    """
    choice = os.environ.get(COMPILE_ENV, "auto").strip().lower()
    if choice in ("1", "true", "yes", "on"):
        return True
    if choice in ("0", "false", "no", "off"):
        return False
    has_cxx = any(
        shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c
    )
    return device.type == "cpu" and has_cxx and work >= COMPILE_MIN_WORK


def use_compiled_nb(model: nn.Module, *, device: torch.device, samples_x_epochs: float) -> bool:
    """Decide (:func:`compile_wanted`) and set the compiled NB kernel on every NB head of
    ``model`` for a training of ``samples_x_epochs`` (training samples x epochs); returns it."""
    heads = [m for m in model.modules() if isinstance(m, NegativeBinomialHead)]
    n_features = sum(h.linear.out_features for h in heads)
    on = bool(heads) and compile_wanted(device, samples_x_epochs * n_features)
    for head in heads:
        head.compiled = on
    return on


def _softplus_pair(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softplus(d), -softplus(-d)), each accurate for any sign of d (no d - softplus(d))."""
    tail = d.abs().neg_().exp_().log1p_()  # log(1 + exp(-|d|))
    return d.clamp(min=0.0).add_(tail), d.clamp(max=0.0).sub_(tail)


def _nb_forward_math(x, log_mu, log_theta, mask):
    """Whole-array forward of :class:`_NBNegLogLik` for torch.compile: (nll, q, sp, psi_sp)."""
    theta = log_theta.exp()
    lg_t, psi_t = lgamma_digamma(theta)
    sp, q = _softplus_pair(log_mu - log_theta)
    lg, psi = lgamma_digamma(x + theta)
    lp = lg - lg_t + x * q - sp * theta
    if mask is not None:
        lp = lp * mask
    return -lp.sum(dim=-1), q, sp, psi - psi_t - sp


def _nb_backward_math(grad, x, q, sp, theta, psi_sp, mask):
    """Whole-array backward of :class:`_NBNegLogLik` for torch.compile: (grad_mu, grad_theta)."""
    w = -grad.unsqueeze(-1)
    if mask is not None:
        w = w * mask
    g_mu = x * torch.exp(-sp) - theta * q.exp()
    return g_mu * w, theta * (w * psi_sp).sum(0) - (w * g_mu).sum(0)


def _compiled_kernels() -> tuple | None:
    """(forward, backward) compiled with torch.compile (once per process); None if it failed."""
    if "nb" not in _compiled:
        try:
            _compiled["nb"] = (
                torch.compile(_nb_forward_math, dynamic=True),
                torch.compile(_nb_backward_math, dynamic=True),
            )
        except Exception as exc:  # noqa: BLE001 - any compile problem means: use eager
            _compile_failed(exc)
    return _compiled["nb"]


def _compile_failed(exc: Exception) -> None:
    _compiled["nb"] = None
    warnings.warn(
        f"torch.compile of the negative-binomial loss failed ({type(exc).__name__}: {exc}); "
        f"using the eager kernel (set {COMPILE_ENV}=0 to skip compiling)",
        RuntimeWarning,
        stacklevel=3,
    )


class _NBNegLogLik(torch.autograd.Function):
    """sum_g -log NB(x | mu, theta) without -lgamma(x + 1): (n, n_genes) -> (n,), per-gene theta.

    With d = log mu - log theta, sp = softplus(d) = log((theta + mu) / theta) and
    q = -softplus(-d) = log(mu / (theta + mu)), the log-probability is
        lp = x q - theta sp + lgamma(x + theta) - lgamma(theta)          (see nb_log_prob)
    and its derivatives (exp(q) = mu / (theta + mu), exp(-sp) = theta / (theta + mu), psi = digamma):
        d lp / d log mu    = x exp(-sp) - theta exp(q)                 (= x - (x + theta) mu/(theta + mu))
        d lp / d log theta = -(d lp / d log mu) - theta sp + theta (psi(x + theta) - psi(theta)).
    sp and q each come from their own softplus, and the log mu gradient is written without
    x - x mu/(theta + mu), so no large terms cancel (more accurate than the reference formula
    in float32 at counts of 1e4 and more). The log theta gradient is summed over samples (theta
    is per gene), so backward needs only q, sp and psi(x + theta) - psi(theta) - sp saved from
    forward: a handful of passes, in cache-sized row blocks, instead of autograd's graph of ~15
    elementwise nodes over the whole array plus torch's scalar (unvectorised) lgamma and digamma.
    """

    @staticmethod
    def forward(ctx, x, log_mu, log_theta, mask, compiled):
        need_theta = ctx.needs_input_grad[2]
        want = compiled and need_theta and ctx.needs_input_grad[1]
        kernels = _compiled_kernels() if want else None
        if kernels is not None:
            try:
                nll, q, sp, psi = kernels[0](x, log_mu, log_theta, mask)
                ctx.compiled = True
                ctx.save_for_backward(x, q, sp, log_theta.exp(), psi, mask)
                return nll
            except Exception as exc:  # noqa: BLE001 - fall back to the eager blocks below
                _compile_failed(exc)
        ctx.compiled = False
        theta = log_theta.exp()  # (n_genes,)
        lg_t, psi_t = lgamma_digamma(theta, digamma=need_theta)
        q, sp = torch.empty_like(log_mu), torch.empty_like(log_mu)
        psi = torch.empty_like(log_mu) if need_theta else None
        nll = log_mu.new_empty(len(log_mu))
        for rows in _row_blocks(*log_mu.shape, log_mu.device):
            qb, spb, xb = q[rows], sp[rows], x[rows]
            d = log_mu[rows] - log_theta
            tail = d.abs().neg_().exp_().log1p_()  # as _softplus_pair
            torch.clamp(d, min=0.0, out=spb).add_(tail)
            torch.clamp(d, max=0.0, out=qb).sub_(tail)
            lp, psib = lgamma_digamma(
                xb + theta, digamma=need_theta, out=None if psi is None else psi[rows]
            )
            lp.sub_(lg_t).addcmul_(xb, qb).addcmul_(spb, theta, value=-1.0)
            if mask is not None:
                lp.mul_(mask[rows])
            torch.sum(lp, dim=-1, out=nll[rows])
            if psib is not None:  # psi(x + theta) - psi(theta) - sp: all backward needs of them
                psib.sub_(psi_t).sub_(spb)
        ctx.save_for_backward(x, q, sp, theta, psi, mask)
        return nll.neg_()

    @staticmethod
    def backward(ctx, grad):
        x, q, sp, theta, psi_sp, mask = ctx.saved_tensors
        if ctx.compiled and _compiled.get("nb") is not None:
            try:
                return None, *_compiled["nb"][1](grad, x, q, sp, theta, psi_sp, mask), None, None
            except Exception as exc:  # noqa: BLE001 - fall back to the eager blocks below
                _compile_failed(exc)
        w = grad.neg().unsqueeze(-1)  # d loss / d lp, (n, 1)
        need_theta = ctx.needs_input_grad[2]
        grad_mu = torch.empty_like(q)
        grad_theta = torch.zeros_like(theta) if need_theta else None
        for rows in _row_blocks(*q.shape, q.device):
            gb = grad_mu[rows]
            torch.neg(sp[rows], out=gb).exp_().mul_(x[rows])  # x theta / (theta + mu)
            gb.addcmul_(q[rows].exp(), theta, value=-1.0)  # - theta mu / (theta + mu)
            wb = w[rows] if mask is None else w[rows] * mask[rows]
            if need_theta:
                if mask is None:  # matrix-vector products instead of (rows, n_genes) temporaries
                    wv = wb.squeeze(-1)
                    grad_theta.add_(theta * (wv @ psi_sp[rows])).sub_(wv @ gb)
                else:
                    grad_theta.add_(theta * (wb * psi_sp[rows]).sum(0)).sub_((wb * gb).sum(0))
            gb.mul_(wb)
        return None, grad_mu if ctx.needs_input_grad[1] else None, grad_theta, None, None


def nb_nll(
    x: torch.Tensor,
    log_mu: torch.Tensor,
    log_theta: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    compiled: bool = False,
) -> torch.Tensor:
    """Per-sample NB negative log-likelihood without the lgamma(x + 1) term: (n,).

    x, log_mu, mask: (n, n_genes); log_theta: (n_genes,). Equals
    ``-(nb_log_prob(x, log_mu, log_theta, factorial=False) * mask).sum(-1)`` to float32
    rounding, gradients included (a fused autograd function; see :class:`_NBNegLogLik`).
    Other shapes take that reference formula. x must not require a gradient.
    compiled: run the training kernel (gradients for both log_mu and log_theta) through
    torch.compile (see :func:`compile_wanted`).
    """
    fused = (
        log_mu.dim() == 2
        and x.shape == log_mu.shape
        and log_theta.shape == log_mu.shape[-1:]
        and (mask is None or mask.shape == x.shape)
        and not x.requires_grad
        and x.dtype == log_mu.dtype == log_theta.dtype
    )
    if not fused:
        lp = nb_log_prob(x, log_mu, log_theta, factorial=False)
        return -(lp if mask is None else lp * mask).sum(dim=-1)
    return _NBNegLogLik.apply(x, log_mu, log_theta, mask, compiled)


def log_factorial_sum(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum_g lgamma(x_g + 1) per sample (over observed entries): (n, n_genes) -> (n,)."""
    lf = torch.lgamma(x + 1.0)
    if mask is not None:
        lf = lf * mask
    return lf.sum(dim=-1)


class NegativeBinomialHead(nn.Module):
    """Counts: params {"logits", "log_mu", "log_theta"}; mean mu = softmax(logits) * library.

    ``compiled`` (set by training, see :func:`use_compiled_nb`) selects the torch.compile'd
    loss kernel; it is not part of the weights.
    """

    def __init__(self, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_hidden, n_out)
        self.log_theta = nn.Parameter(torch.zeros(n_out))
        self.compiled = False

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict:
        logits = self.linear(h)  # (n, n_genes)
        log_lib = torch.zeros_like(logits[:, :1]) if library is None else library.log()
        return {
            "logits": logits,
            "log_mu": F.log_softmax(logits, dim=-1) + log_lib,
            "log_theta": self.log_theta.clamp(-10.0, 12.0),
        }

    def nll(
        self,
        params: dict,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        log_factorial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(n,) NLL; log_factorial: precomputed (n,) :func:`log_factorial_sum` of target."""
        if log_factorial is None:
            log_factorial = log_factorial_sum(target, mask)
        nll = nb_nll(target, params["log_mu"], params["log_theta"], mask, compiled=self.compiled)
        return nll + log_factorial

    def mean(self, params: dict) -> torch.Tensor:
        return params["log_mu"].exp()

    def input_mean(self, params: dict) -> torch.Tensor:
        return torch.log1p(F.softmax(params["logits"], dim=-1) * SCALE_FACTOR)


class GaussianHead(nn.Module):
    """Standardised continuous / logit values: params {"mean", "logvar"} (per-feature variance)."""

    def __init__(self, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_hidden, n_out)
        self.logvar = nn.Parameter(torch.zeros(n_out))

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict:
        return {"mean": self.linear(h), "logvar": self.logvar.clamp(-7.0, 5.0)}

    def nll(
        self,
        params: dict,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        log_factorial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logvar = params["logvar"]
        se = (target - params["mean"]).pow(2) * torch.exp(-logvar)
        ll = 0.5 * (se + logvar + LOG_2PI)
        if mask is not None:
            ll = ll * mask
        return ll.sum(dim=-1)

    def mean(self, params: dict) -> torch.Tensor:
        return params["mean"]

    def input_mean(self, params: dict) -> torch.Tensor:
        return params["mean"]


class CategoricalHead(nn.Module):
    """Categorical variables: params {"logits"} (n, sum(n_levels)); target integer codes."""

    def __init__(self, n_hidden: int, n_levels: Sequence[int]) -> None:
        super().__init__()
        self.n_levels = [int(k) for k in n_levels]
        self.linear = nn.Linear(n_hidden, sum(self.n_levels))
        self._uniform = len(set(self.n_levels)) == 1

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict:
        return {"logits": self.linear(h)}

    def _log_probs(self, logits: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        if self._uniform:  # (n, n_vars, k) in one call
            return F.log_softmax(logits.view(len(logits), len(self.n_levels), -1), dim=-1)
        return [F.log_softmax(part, dim=-1) for part in logits.split(self.n_levels, dim=-1)]

    def nll(
        self,
        params: dict,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        log_factorial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logp = self._log_probs(params["logits"])
        codes = target.long()
        if self._uniform:
            ll = logp.gather(-1, codes.unsqueeze(-1)).squeeze(-1)  # (n, n_vars)
        else:
            ll = torch.stack(
                [lp.gather(-1, codes[:, j : j + 1]).squeeze(-1) for j, lp in enumerate(logp)],
                dim=-1,
            )
        if mask is not None:
            ll = ll * mask
        return -ll.sum(dim=-1)

    def mean(self, params: dict) -> torch.Tensor:
        logp = self._log_probs(params["logits"])
        if self._uniform:
            return logp.exp().reshape(len(params["logits"]), -1)
        return torch.cat([lp.exp() for lp in logp], dim=-1)

    def input_mean(self, params: dict) -> torch.Tensor:
        return self.mean(params)


def make_head(kind: str, n_hidden: int, *, n_out: int, n_levels: Sequence[int] = ()) -> nn.Module:
    """The decoder head for a modality kind."""
    if kind == "counts":
        return NegativeBinomialHead(n_hidden, n_out)
    if kind in ("proportion", "continuous"):
        return GaussianHead(n_hidden, n_out)
    if kind == "categorical":
        return CategoricalHead(n_hidden, n_levels)
    raise ValueError(f"unknown modality kind {kind!r}")
