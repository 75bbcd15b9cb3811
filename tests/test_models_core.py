"""The model contract: likelihoods, product of experts, missing modalities, loss terms."""

import numpy as np
import pytest
import torch
from scipy import stats

from core.likelihoods import CategoricalHead, GaussianHead, nb_log_prob
from core.models import KL, TOTAL, ModalitySpec, ModelConfig, MultiVAE, kl_standard_normal

SPECS = {
    "rna": ModalitySpec("counts", 12, 12),
    "methylation": ModalitySpec("proportion", 6, 6),
    "drug": ModalitySpec("categorical", 6, 3, (2, 2, 2)),
}


def make_batch(n=8, seed=0, n_cond=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((n, 12), 5.0), generator=g)
    codes = torch.randint(0, 2, (n, 3), generator=g).float()
    onehot = torch.nn.functional.one_hot(codes.long(), 2).reshape(n, 6).float()
    meth = torch.randn((n, 6), generator=g)
    return {
        "x": {"rna": torch.log1p(counts), "methylation": meth, "drug": onehot},
        "target": {"rna": counts, "methylation": meth, "drug": codes},
        "present": {m: torch.ones(n) for m in SPECS},
        "library": {"rna": counts.sum(1, keepdim=True).clamp(min=1)},
        "mask": {},
        "cond": torch.randn((n, n_cond), generator=g) if n_cond else None,
    }


def model(n_cond=0, **kw):
    torch.manual_seed(0)
    return MultiVAE(SPECS, n_cond=n_cond, config=ModelConfig(n_latent=4, n_hidden=16, **kw)).eval()


def test_nb_log_prob_matches_scipy():
    x = torch.tensor([0.0, 3.0, 10.0])
    mu, theta = torch.tensor([2.0, 4.0, 7.5]), torch.tensor([0.5, 3.0, 20.0])
    ours = nb_log_prob(x, mu.log(), theta.log()).numpy()
    p = (theta / (theta + mu)).numpy()
    ref = stats.nbinom.logpmf(x.numpy(), theta.numpy(), p)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_gaussian_and_categorical_nll():
    head = GaussianHead(4, 3)
    params = {"mean": torch.zeros(2, 3), "logvar": torch.zeros(3)}
    target = torch.ones(2, 3)
    expected = -stats.norm.logpdf(1.0) * 3
    np.testing.assert_allclose(head.nll(params, target).numpy(), [expected] * 2, rtol=1e-6)
    cat = CategoricalHead(4, [2, 3])
    logits = torch.randn(5, 5)
    codes = torch.tensor([[0, 2], [1, 0], [1, 1], [0, 0], [1, 2]]).float()
    ref = torch.nn.functional.cross_entropy(
        logits[:, :2], codes[:, 0].long(), reduction="none"
    ) + torch.nn.functional.cross_entropy(logits[:, 2:], codes[:, 1].long(), reduction="none")
    torch.testing.assert_close(cat.nll({"logits": logits}, codes), ref)
    probs = cat.mean({"logits": logits})
    torch.testing.assert_close(probs[:, :2].sum(1), torch.ones(5))


def test_kl_is_zero_at_the_prior():
    assert float(kl_standard_normal(torch.zeros(3, 4), torch.ones(3, 4)).abs().max()) < 1e-7
    assert float(kl_standard_normal(torch.ones(1, 4), torch.ones(1, 4))) == pytest.approx(2.0)


def test_product_of_experts_ignores_absent_modalities():
    m = model()
    b = make_batch()
    present = {k: torch.ones(8) for k in SPECS}
    present["methylation"] = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0.0])
    mean, var = m.encode(b["x"], None, present)
    # for absent rows the methylation input is irrelevant
    x2 = dict(b["x"], methylation=b["x"]["methylation"] + 100.0)
    mean2, var2 = m.encode(x2, None, present)
    torch.testing.assert_close(mean[4:], mean2[4:])
    assert not torch.allclose(mean[:4], mean2[:4])
    # encoding with only the other modalities equals treating methylation as absent
    only = {k: v for k, v in b["x"].items() if k != "methylation"}
    mean3, var3 = m.encode(only, None)
    torch.testing.assert_close(mean3[4:], mean[4:])
    torch.testing.assert_close(var3[4:], var[4:])
    assert bool((var <= 1.0 + 1e-6).all())  # prior expert bounds the variance


def test_missing_modality_adds_no_reconstruction_loss():
    m = model()
    b = make_batch()
    b["present"]["methylation"] = torch.zeros(8)
    g = torch.Generator().manual_seed(3)
    terms = m.loss(b, kl_weight=1.0, generator=g)
    assert float(terms["recon_methylation"].detach()) == 0.0
    assert set(terms) == {TOTAL, KL, "recon_rna", "recon_methylation", "recon_drug"}
    total = terms["recon_rna"] + terms["recon_drug"] + terms[KL]
    torch.testing.assert_close(terms[TOTAL], total)


def test_modality_weights_and_kl_weight_enter_total():
    m = model(modality_weights={"rna": 0.0})
    b = make_batch()
    t = m.loss(b, kl_weight=0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t[TOTAL], t["recon_methylation"] + t["recon_drug"] + 0.5 * t[KL])


def test_conditions_change_the_decoder_output():
    m = model(n_cond=2)
    z = torch.zeros(3, 4)
    a = m.decode(z, torch.tensor([[1.0, 0.0]] * 3))["methylation"]["mean"]
    b = m.decode(z, torch.tensor([[0.0, 1.0]] * 3))["methylation"]["mean"]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="condition tensor of width 2"):
        m.decode(z, None)


def test_sample_is_seeded_and_shaped():
    m = model()
    z1, p1 = m.sample(5, generator=torch.Generator().manual_seed(1))
    z2, _ = m.sample(5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z1, z2)
    means = m.means(p1)
    assert means["rna"].shape == (5, 12) and means["drug"].shape == (5, 6)


def test_modality_dropout_keeps_at_least_one_present():
    m = model(modality_dropout=0.9)
    present = {k: torch.ones(200) for k in SPECS}
    present["drug"][:100] = 0
    kept = m._drop_modalities(present, torch.Generator().manual_seed(0))
    stacked = torch.stack(list(kept.values()), 1)
    assert bool((stacked.sum(1) >= 1).all())
    assert float(kept["drug"][:100].sum()) == 0  # never revives an absent modality
    assert float(stacked.mean()) < 0.5


def test_precomputed_log_factorial_gives_the_same_nb_nll():
    from core.likelihoods import NegativeBinomialHead, log_factorial_sum

    head = NegativeBinomialHead(4, 6)
    h = torch.randn(3, 4)
    params = head(h, torch.full((3, 1), 50.0))
    x = torch.poisson(torch.full((3, 6), 8.0))
    mask = torch.tensor([[1.0] * 6, [1.0] * 3 + [0.0] * 3, [0.0] * 6])
    full = head.nll(params, x, mask)
    fast = head.nll(params, x, mask, log_factorial_sum(x, mask))
    torch.testing.assert_close(full, fast)
