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


def log_factorial_sum(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum_g lgamma(x_g + 1) per sample (over observed entries): (n, n_genes) -> (n,)."""
    lf = torch.lgamma(x + 1.0)
    if mask is not None:
        lf = lf * mask
    return lf.sum(dim=-1)


class NegativeBinomialHead(nn.Module):
    """Counts: params {"logits", "log_mu", "log_theta"}; mean mu = softmax(logits) * library."""

    def __init__(self, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_hidden, n_out)
        self.log_theta = nn.Parameter(torch.zeros(n_out))

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
        lp = nb_log_prob(
            target, params["log_mu"], params["log_theta"], factorial=log_factorial is None
        )
        if mask is not None:
            lp = lp * mask
        nll = -lp.sum(dim=-1)
        return nll if log_factorial is None else nll + log_factorial

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
