"""Models: one contract (encode / decode / loss / sample) behind every variant.

:class:`MultiVAE` is the single model family:

- VAE: one modality (or several), no conditions; beta-VAE: the same with ``beta != 1``
  (the KL weight lives in the training config);
- CVAE: the condition vector (one-hot categorical + standardised continuous obs columns, see
  :class:`core.preprocess.ConditionEncoder`) is concatenated to every encoder and decoder input;
- multi-modal VAE: one encoder and one decoder per modality, a shared latent. The posterior is
  a Gaussian product of experts (Wu & Goodman 2018) over the modalities a sample HAS, plus a
  prior expert N(0, I) when there is more than one modality:
  ``precision = [1 +] sum_m present_m / var_m``, ``mean = sum_m present_m mu_m / var_m / precision``.
  A missing modality contributes neither to the posterior nor to the reconstruction loss.

The module knows nothing about AnnData or optimisers. Tensors are passed as a ``Batch``: a dict
with keys in :data:`BATCH_KEYS` (per-modality dicts for x / target / present / library / mask,
and ``cond``). Loss terms are named by :data:`TOTAL`, :data:`KL` and ``recon_<modality>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from core.likelihoods import make_head
from core.model_config import (  # noqa: F401 - re-exported: the model's settings and shapes
    MODEL_NAMES,
    ModalitySpec,
    ModelConfig,
    ModelName,
    TranslatorScheme,
    model_defaults,
)

# Loss-dict keys (named constants, as in scvi-tools).
TOTAL = "total"
KL = "kl"
RECON_PREFIX = "recon_"
BATCH_KEYS = ("x", "target", "present", "library", "mask", "cond", "log_factorial")
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0
EPS_PREC = 1e-6  # precision floor of the product of experts without a prior expert


def mlp(n_in: int, n_hidden: int, n_layers: int, dropout: float) -> nn.Sequential:
    """n_layers x (Linear -> LayerNorm -> ReLU -> Dropout); output width n_hidden.

    LayerNorm (not BatchNorm) so that a sample's encoding never depends on its batch, sub-batches
    of a few present samples train fine, and DDP needs no synchronised statistics.
    """
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = n_hidden
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """(n, n_in + n_cond) -> posterior expert mean (n, n_latent), log-variance (n, n_latent)."""

    def __init__(
        self, n_in: int, n_latent: int, *, n_hidden: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.body = mlp(n_in, n_hidden, n_layers, dropout)
        self.mean = nn.Linear(n_hidden, n_latent)
        self.logvar = nn.Linear(n_hidden, n_latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mean(h), self.logvar(h).clamp(LOGVAR_MIN, LOGVAR_MAX)


class Decoder(nn.Module):
    """(n, n_latent + n_cond) -> distribution parameters of one modality (see likelihoods)."""

    def __init__(
        self, spec: ModalitySpec, n_latent: int, *, n_hidden: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.body = mlp(n_latent, n_hidden, n_layers, dropout)
        self.head = make_head(spec.kind, n_hidden, n_out=spec.n_out, n_levels=spec.n_levels)

    def forward(self, zc: torch.Tensor, library: torch.Tensor | None = None) -> dict:
        return self.head(self.body(zc), library)


def kl_standard_normal(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, I)) summed over latent dims: (n, n_latent) -> (n,)."""
    return 0.5 * (var + mean.pow(2) - 1.0 - var.log()).sum(dim=-1)


class MultiVAE(nn.Module):
    """Multi-modal (conditional) VAE with a product-of-experts posterior.

    specs: {modality: ModalitySpec}; n_cond: width of the condition vector (0 = unconditional).
    """

    def __init__(
        self,
        specs: Mapping[str, ModalitySpec],
        *,
        n_cond: int = 0,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        config = config or ModelConfig()
        if not specs:
            raise ValueError("a model needs at least one modality")
        self.config = config
        self.specs = dict(specs)
        self.modalities = list(specs)
        self.n_cond = int(n_cond)
        self.n_latent = int(config.n_latent)
        self.prior_expert = len(self.modalities) > 1
        self.translator = config.model == "translator"
        self.scheme = config.translator_scheme if self.translator else None
        self.target = config.translator_target
        if self.target is not None and self.target not in self.specs:
            raise ValueError(f"translator_target {self.target!r} is not one of {self.modalities}")
        if self.scheme == "frozen_target" and self.target is None:
            raise ValueError("the frozen_target scheme needs translator_target")
        # which modalities have a decoder: all, except frozen_target (the target only)
        self.decoded = [self.target] if self.scheme == "frozen_target" else list(self.modalities)
        # training phase: "joint" (default), or for frozen_target "target" then "sources"
        self.phase = "target" if self.scheme == "frozen_target" else "joint"
        kw = {"n_hidden": config.n_hidden, "n_layers": config.n_layers, "dropout": config.dropout}
        self.encoders = nn.ModuleDict(
            {m: Encoder(s.n_in + self.n_cond, self.n_latent, **kw) for m, s in specs.items()}
        )
        self.decoders = nn.ModuleDict(
            {m: Decoder(self.specs[m], self.n_latent + self.n_cond, **kw) for m in self.decoded}
        )
        self.weights = {m: float(config.modality_weights.get(m, 1.0)) for m in self.modalities}

    # -- contract --------------------------------------------------------------------------
    def _with_cond(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.n_cond == 0:
            return t
        if cond is None or cond.shape[-1] != self.n_cond:
            raise ValueError(f"this model needs a condition tensor of width {self.n_cond}")
        return torch.cat([t, cond], dim=-1)

    def experts(
        self,
        x: Mapping[str, torch.Tensor],
        cond: torch.Tensor | None = None,
        modalities: Sequence[str] | None = None,
    ) -> dict[str, tuple]:
        """Per-modality posterior experts {mod: (mean, logvar)}, each (n, n_latent)."""
        mods = modalities or [m for m in self.modalities if m in x]
        return {m: self.encoders[m](self._with_cond(x[m], cond)) for m in mods}

    def encode(
        self,
        x: Mapping[str, torch.Tensor],
        cond: torch.Tensor | None = None,
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z | available modalities): mean (n, n_latent) and variance (n, n_latent).

        x: {mod: (n, n_in)} for any subset of modalities; present: {mod: (n,)} 0/1 (default:
        every given modality present for every sample).
        """
        ex = self.experts(x, cond)
        if not ex:
            raise ValueError("encode needs at least one modality")
        if len(ex) == 1 and not self.prior_expert:  # plain VAE: the encoder is the posterior
            ((mu, logvar),) = ex.values()
            return mu, logvar.exp()
        first = next(iter(ex.values()))[0]
        precision = torch.full_like(first, 1.0 if self.prior_expert else EPS_PREC)
        weighted = torch.zeros_like(first)
        for m, (mu, logvar) in ex.items():
            prec = torch.exp(-logvar)
            if present is not None and m in present:
                prec = prec * present[m].to(prec.dtype).unsqueeze(-1)
            precision = precision + prec
            weighted = weighted + prec * mu
        return weighted / precision, 1.0 / precision

    def decode(
        self,
        z: torch.Tensor,
        cond: torch.Tensor | None = None,
        library: Mapping[str, torch.Tensor] | None = None,
        modalities: Sequence[str] | None = None,
    ) -> dict[str, dict]:
        """Distribution parameters per modality from z (n, n_latent); see core.likelihoods.

        library: {counts modality: (n, 1) library size}; absent -> 1 (means are proportions).
        """
        zc = self._with_cond(z, cond)
        library = library or {}
        mods = modalities or self.decoded
        missing = [m for m in mods if m not in self.decoders]
        if missing:
            raise ValueError(
                f"this model has no decoder for {missing[0]!r}; it decodes "
                f"{', '.join(self.decoded)}"
            )
        return {m: self.decoders[m](zc, library.get(m)) for m in mods}

    def means(self, params: Mapping[str, dict]) -> dict[str, torch.Tensor]:
        """Likelihood means in each preprocessing's target space {mod: (n, n_target_space)}."""
        return {m: self.decoders[m].head.mean(p) for m, p in params.items()}

    def input_means(self, params: Mapping[str, dict]) -> dict[str, torch.Tensor]:
        """Likelihood means mapped into encoder-input space {mod: (n, n_in)}."""
        return {m: self.decoders[m].head.input_mean(p) for m, p in params.items()}

    def reconstruction_nll(self, params: Mapping[str, dict], batch: Mapping) -> dict:
        """{mod: (n,)} negative log-likelihood per sample, zero where the modality is absent."""
        out = {}
        for m, p in params.items():
            mask = (batch.get("mask") or {}).get(m)
            const = (batch.get("log_factorial") or {}).get(m)
            nll = self.decoders[m].head.nll(p, batch["target"][m], mask, const)
            out[m] = nll * batch["present"][m].to(nll.dtype)
        return out

    def loss(
        self, batch: Mapping, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO terms, averaged over the batch (scalars).

        total = sum_m w_m E_q[-log p(x_m | z, c)] + kl_weight * KL(q(z | x, c) || N(0, I)),
        with a single reparameterised sample z = mean + sqrt(var) * eps. Returns
        {"total", "kl", "recon_<mod>" for every decoded modality}.

        Translator models: "all_pairs" sums this over single-source posteriors q(z | x_s) (each
        encoder feeds every decoder); "frozen_target" trains the target's own VAE in phase
        "target" and then, in phase "sources", every source encoder through the (frozen)
        target decoder.
        """
        if self.translator and self.scheme == "all_pairs":
            return self._pairs_loss(batch, self.modalities, self.decoded, kl_weight, generator)
        if self.translator and self.phase == "sources":
            sources = [m for m in self.modalities if m != self.target]
            return self._pairs_loss(batch, sources, [self.target], kl_weight, generator)
        cond = batch.get("cond")
        present = batch["present"]
        x = batch["x"]
        if self.translator and self.phase == "target":
            x = {self.target: x[self.target]}
            present = {self.target: present[self.target]}
        enc_present = present
        if self.training and self.config.modality_dropout > 0 and len(present) > 1:
            enc_present = self._drop_modalities(present, generator)
        mean, var = self.encode(x, cond, enc_present)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + var.sqrt() * eps
        params = self.decode(z, cond, batch.get("library"))
        nll = self.reconstruction_nll(params, batch)
        kl = kl_standard_normal(mean, var).mean()
        terms = {f"{RECON_PREFIX}{m}": v.mean() for m, v in nll.items()}
        total = kl_weight * kl
        for m in nll:
            total = total + self.weights[m] * terms[f"{RECON_PREFIX}{m}"]
        return {TOTAL: total, KL: kl, **terms}

    def _pairs_loss(
        self,
        batch: Mapping,
        sources: Sequence[str],
        targets: Sequence[str],
        kl_weight: float,
        generator: torch.Generator | None,
    ) -> dict:
        """Sum over sources s of the ELBO of every target decoded from q(z | x_s) alone."""
        cond = batch.get("cond")
        recon = {t: 0.0 for t in targets}
        kl_sum = 0.0
        for s in sources:
            w = batch["present"][s]
            mean, var = self.encode({s: batch["x"][s]}, cond, {s: w})
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            params = self.decode(
                mean + var.sqrt() * eps, cond, batch.get("library"), modalities=targets
            )
            nll = self.reconstruction_nll(params, batch)
            for t in targets:
                recon[t] = recon[t] + (nll[t] * w).mean()
            kl_sum = kl_sum + (kl_standard_normal(mean, var) * w).mean()
        terms = {f"{RECON_PREFIX}{t}": v for t, v in recon.items()}
        total = kl_weight * kl_sum
        for t in targets:
            total = total + self.weights[t] * recon[t]
        return {TOTAL: total, KL: kl_sum, **terms}

    def set_phase(self, phase: str) -> None:
        """frozen_target: "target" trains the target VAE; "sources" freezes the target's
        encoder and decoder and trains the source encoders into its latent space."""
        if phase not in ("joint", "target", "sources"):
            raise ValueError(f"unknown phase {phase!r}")
        self.phase = phase
        frozen = phase == "sources"
        for p in self.decoders.parameters():
            p.requires_grad_(not frozen)
        if self.target is not None:
            for p in self.encoders[self.target].parameters():
                p.requires_grad_(not frozen)

    def _drop_modalities(
        self, present: Mapping[str, torch.Tensor], generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """Hide each present modality with prob modality_dropout, keeping at least one."""
        mods = self.modalities
        pres = torch.stack([present[m].float() for m in mods], dim=1)  # (n, n_mod)
        u = torch.rand(pres.shape, generator=generator, device=pres.device)
        keep = pres * (u >= self.config.modality_dropout).float()
        none_left = keep.sum(dim=1) == 0
        if none_left.any():  # restore the modality with the lowest draw among present ones
            score = torch.where(pres > 0, u, torch.full_like(u, 2.0))
            pick = torch.nn.functional.one_hot(score.argmin(dim=1), len(mods)).float()
            keep = torch.where(none_left.unsqueeze(1), pick * pres, keep)
        return {m: keep[:, i] for i, m in enumerate(mods)}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        cond: torch.Tensor | None = None,
        library: Mapping[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Draw z ~ N(0, I) (n, n_latent) and decode: returns (z, {mod: params})."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.n_latent), generator=generator, device=device)
        return z, self.decode(z, cond, library)


def build_model(specs: Mapping[str, ModalitySpec], *, n_cond: int, config: ModelConfig) -> MultiVAE:
    """The model for a config (every variant is a MultiVAE; see the module docstring)."""
    return MultiVAE(specs, n_cond=n_cond, config=config)


def specs_from_preprocessor(pre) -> dict[str, ModalitySpec]:
    """{mod: ModalitySpec} from a fitted :class:`core.preprocess.Preprocessor`."""
    out = {}
    for m, t in pre.transforms.items():
        levels = tuple(t.n_levels) if t.kind == "categorical" else ()
        out[m] = ModalitySpec(t.kind, t.n_in, len(t.keep), levels)
    return out
