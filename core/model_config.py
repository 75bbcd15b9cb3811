"""Model configuration: the architecture settings saved with every run (no torch here).

:mod:`core.models` builds the networks from these; :mod:`core.runs` and the dashboard read and
write them without importing torch (which costs over a second at start-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from core.errors import InputError

ModelName = Literal["vae", "cvae", "multivae", "translator"]
TranslatorScheme = Literal["all_pairs", "frozen_target"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


@dataclass
class ModelConfig:
    """Architecture of a :class:`MultiVAE` (saved in config.json).

    model: "vae" | "cvae" | "multivae" | "translator" (a label for the variant; see :mod:`core.models`).
    n_latent: latent dimensions; n_hidden / n_layers: width and depth of every MLP.
    dropout: dropout after each hidden layer; modality_weights: reconstruction weight per
    modality (default 1); modality_dropout: training-time probability of hiding each modality
    from the encoder (at least one stays), so that single-modality posteriors are good too.
    translator_scheme / translator_target: cross-modal translation settings.
    """

    model: ModelName = "vae"
    n_latent: int = 10
    n_hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.1
    modality_weights: dict[str, float] = field(default_factory=dict)
    modality_dropout: float = 0.0
    translator_scheme: TranslatorScheme = "all_pairs"
    translator_target: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise InputError(f"model must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        if self.translator_scheme not in get_args(TranslatorScheme):
            raise InputError(
                f"translator_scheme must be one of {', '.join(get_args(TranslatorScheme))}"
            )
        for name, lo in (("n_latent", 1), ("n_hidden", 1), ("n_layers", 1)):
            if int(getattr(self, name)) < lo:
                raise InputError(f"{name} must be >= {lo}, got {getattr(self, name)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= float(self.modality_dropout) < 1.0:
            raise InputError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        for mod, w in self.modality_weights.items():
            if not float(w) >= 0.0:
                raise InputError(f"modality weight for {mod!r} must be >= 0, got {w}")


def model_defaults(model: str, n_modalities: int) -> dict:
    """ModelConfig settings whose sensible default depends on the data.

    Several modalities carry more independent sources of variation than one: on `synthetic`,
    10 latent dimensions left the drugs badly reconstructed and generated samples easy to tell
    from real ones (C2ST AUC 0.93); 32 fixed both (0.70). Modality dropout stays off by default:
    it teaches single-modality encoding, but it also kept independent inputs such as drugs out
    of the latent space (drug reconstruction no better than the mean, perturbation AUROC for
    drugs 0.96 -> 0.60 on MOVE-sized data; bench/perturb_speed.py). A translator predicts one
    modality from another and gains from wider layers (RNA -> protein on `synthetic`, per-sample
    Pearson: 0.943 with 128 hidden units, 0.951 with 256; the SVD-MLP baseline scores 0.946).
    See :func:`core.runs.train_defaults` for its training defaults.
    """
    out: dict = {"n_latent": 32 if n_modalities > 1 else 10}
    if model == "translator":
        out["n_hidden"] = 256
    return out


@dataclass(frozen=True)
class ModalitySpec:
    """Shapes of one modality for building the network."""

    kind: str
    n_in: int  # encoder input width
    n_out: int  # likelihood target width (features)
    n_levels: tuple[int, ...] = ()  # categorical only

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "n_levels": list(self.n_levels),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ModalitySpec:
        return cls(
            str(d["kind"]),
            int(d["n_in"]),
            int(d["n_out"]),
            tuple(int(k) for k in d.get("n_levels", ())),
        )
