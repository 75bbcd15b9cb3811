"""Generation mechanics on a tiny hand-built run (untrained weights: shapes, units, seeds, errors).

Training is covered by the MODEL helper's tests; here a small MultiVAE with random weights and
a fitted Preprocessor stand in for a run, so these tests need no training and take seconds.
"""

from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.generate import (
    PROVENANCE_KEY,
    SOURCE_COLUMN,
    Generator,
    read_generated,
    write_generated,
)


def toy_mdata(n=60, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(n)]
    tissue = np.array(["liver", "brain", "lung"])[np.arange(n) % 3]
    age = rng.uniform(20, 80, size=n).round(1)
    counts = rng.negative_binomial(5, 0.3, size=(n, 12)).astype(np.float32)
    meth = rng.beta(2, 5, size=(n, 5)).astype(np.float32)
    drug = rng.integers(0, 3, size=(n, 2)).astype(np.float32)
    mods = {
        "rna": ad.AnnData(
            counts,
            obs=pd.DataFrame(index=ids),
            var=pd.DataFrame(index=[f"g{j}" for j in range(12)]),
        ),
        "methylation": ad.AnnData(
            meth[: n - 5],
            obs=pd.DataFrame(index=ids[: n - 5]),
            var=pd.DataFrame(index=[f"cg{j}" for j in range(5)]),
        ),
        "drug": ad.AnnData(drug, obs=pd.DataFrame(index=ids), var=pd.DataFrame(index=["d0", "d1"])),
    }
    mods["rna"].uns["kind"] = "counts"
    mods["methylation"].uns["kind"] = "proportion"
    mods["drug"].uns["kind"] = "categorical"
    mods["drug"].uns["categories"] = {"d0": ["none", "low", "high"], "d1": ["a", "b", "c"]}
    mdata = md.MuData(mods)
    mdata.obs = pd.DataFrame({"tissue": pd.Categorical(tissue), "age": age}, index=pd.Index(ids))
    return mdata


class FakeRun:
    """The slice of core.runs.Run that generation uses."""

    def __init__(self, mdata, *, conditions=(), seed=0, path="/tmp/fake-run"):
        import torch

        from core.models import ModelConfig, build_model, specs_from_preprocessor
        from core.preprocess import Preprocessor

        self.name = "fake"
        self.path = Path(path)
        self.config = {}
        self._mdata = mdata
        split = np.array(["train"] * mdata.n_obs, dtype=object)
        split[::5] = "test"
        self.split = pd.Series(split, index=mdata.obs_names.astype(str))
        self.preprocessor = Preprocessor.fit(mdata, train=split == "train", conditions=conditions)
        torch.manual_seed(seed)
        specs = specs_from_preprocessor(self.preprocessor)
        self._model = build_model(
            specs,
            n_cond=self.preprocessor.conditions.n_cond,
            config=ModelConfig(n_latent=4, n_hidden=16),
        ).eval()

    @property
    def kinds(self):
        return self.preprocessor.kinds

    @property
    def conditions(self):
        return list(self.preprocessor.conditions.columns)

    def load_data(self):
        return self._mdata

    def model(self, refit=0):
        return self._model


@pytest.fixture(scope="module")
def mdata():
    return toy_mdata()


@pytest.fixture(scope="module")
def gen_uncond(mdata):
    return Generator(FakeRun(mdata))


@pytest.fixture(scope="module")
def gen_cond(mdata):
    return Generator(FakeRun(mdata, conditions=["tissue", "age"]))


def test_posterior_sample_units_and_provenance(gen_uncond):
    out = gen_uncond.generate(
        conditions={"tissue": "liver"}, n=40, mode="posterior", output="sample", seed=3
    )
    assert set(out.mod) == {"rna", "methylation", "drug"}
    assert out.n_obs == 40
    rna = out.mod["rna"].X
    assert rna.dtype == np.float32 and rna.shape == (40, 12)
    assert np.all(rna >= 0) and np.all(rna == np.round(rna))  # counts stay integers
    meth = out.mod["methylation"].X
    assert np.all((meth >= 0) & (meth <= 1))
    drug = out.mod["drug"].X
    assert set(np.unique(drug)) <= {0.0, 1.0, 2.0}
    assert out.mod["drug"].uns["categories"]["d0"] == ["none", "low", "high"]
    assert (out.obs["tissue"].astype(str) == "liver").all()
    # Sources are real training samples of that tissue.
    src = out.obs[SOURCE_COLUMN].astype(str)
    real_tissue = gen_uncond.obs["tissue"].astype(str)
    assert (real_tissue.loc[src].to_numpy() == "liver").all()
    assert not set(src) & set(gen_uncond.ids[gen_uncond.split == "test"])
    prov = out.uns[PROVENANCE_KEY]
    assert prov["mode"] == "posterior" and prov["seed"] == 3 and prov["temperature"] == 1.0
    assert "liver" in prov["conditions"] and prov["run"] == "fake"
    assert out.obsm["X_latent"].shape == (40, 4)


def test_seeded_and_seed_sensitive(gen_uncond):
    a = gen_uncond.generate(n=20, seed=1)
    b = gen_uncond.generate(n=20, seed=1)
    c = gen_uncond.generate(n=20, seed=2)
    np.testing.assert_array_equal(a.mod["rna"].X, b.mod["rna"].X)
    assert not np.array_equal(a.mod["rna"].X, c.mod["rna"].X)


def test_mean_output_and_temperature_zero(gen_uncond):
    out = gen_uncond.generate(n=10, output="mean", temperature=0.0, seed=0)
    # T = 0 in posterior mode: z is exactly the source's posterior mean.
    src = out.obs[SOURCE_COLUMN].astype(str).to_numpy()
    pos = [int(np.nonzero(gen_uncond.ids == s)[0][0]) for s in src]
    np.testing.assert_allclose(out.obsm["X_latent"], gen_uncond.mean[pos], rtol=1e-5, atol=1e-6)
    assert not np.all(np.round(out.mod["rna"].X) == out.mod["rna"].X)  # means are not integers
    assert set(np.unique(out.mod["drug"].X)) <= {0.0, 1.0, 2.0}  # most probable level


def test_several_condition_sets(gen_cond):
    sets = [{"tissue": "liver"}, {"tissue": "brain", "age": 70}]
    out = gen_cond.generate(conditions=sets, n=15, mode="prior", seed=0)
    assert out.n_obs == 30
    assert list(out.obs["tissue"].astype(str)) == ["liver"] * 15 + ["brain"] * 15
    assert np.all(out.obs["age"].to_numpy()[15:] == 70.0)
    assert list(out.obs["condition_set"]) == [0] * 15 + [1] * 15


def test_prior_needs_a_model_condition(gen_uncond, gen_cond):
    with pytest.raises(InputError, match="not conditioned on 'tissue'.*--mode posterior"):
        gen_uncond.generate(conditions={"tissue": "liver"}, n=5, mode="prior")
    # Unconditional prior sampling works without conditions.
    assert gen_uncond.generate(n=5, mode="prior").n_obs == 5


def test_bad_conditions(gen_cond):
    with pytest.raises(InputError, match="unknown condition column 'organ'"):
        gen_cond.generate(conditions={"organ": "liver"}, n=5)
    with pytest.raises(InputError, match="no level 'heart'; use one of"):
        gen_cond.generate(conditions={"tissue": "heart"}, n=5)
    with pytest.raises(InputError, match="numeric"):
        gen_cond.generate(conditions={"age": "old"}, n=5)
    with pytest.raises(InputError, match="positive number"):
        gen_cond.generate(n=0)


def test_posterior_continuous_condition_picks_nearest(gen_uncond):
    out = gen_uncond.generate(conditions={"age": 75}, n=50, seed=0)
    src_age = gen_uncond.obs["age"].loc[out.obs[SOURCE_COLUMN].astype(str)].to_numpy()
    all_age = gen_uncond.obs["age"].to_numpy()[gen_uncond.train]
    assert np.median(np.abs(src_age - 75)) < np.median(np.abs(all_age - 75))


def test_sweep_shares_latent_points(gen_cond):
    out = gen_cond.sweep(column="age", values=[20, 50, 80], n=8, seed=0)
    z = out.obsm["X_latent"]
    np.testing.assert_array_equal(z[:8], z[8:16])
    assert list(np.unique(out.obs["age"])) == [20.0, 50.0, 80.0]
    # The decoder sees age, so the decoded means differ between values.
    assert not np.allclose(out.mod["rna"].X[:8], out.mod["rna"].X[16:])


def test_interpolate_between_groups_and_samples(gen_cond):
    path = gen_cond.interpolate(start={"tissue": "liver"}, end={"tissue": "brain"}, steps=5)
    assert path.n_obs == 5
    np.testing.assert_allclose(path.obs["t"], np.linspace(0, 1, 5))
    assert list(path.obs["tissue"].astype(str)) == ["liver"] * 2 + ["brain"] * 3
    z = path.obsm["X_latent"]
    np.testing.assert_allclose(z[2], (z[0] + z[4]) / 2, rtol=1e-5, atol=1e-6)
    s = gen_cond.interpolate(start="s001", end="s002", steps=3)
    np.testing.assert_allclose(s.obsm["X_latent"][0], gen_cond.mean[1], rtol=1e-5)
    with pytest.raises(InputError, match="sample 'nope'"):
        gen_cond.interpolate(start="nope", end="s002")


def test_cross_modal_from_one_modality(gen_uncond, mdata):
    sub = md.MuData({"rna": mdata.mod["rna"][:7].copy()})
    sub.obs = mdata.obs.iloc[:7].copy()
    out = gen_uncond.cross_modal(sub, source="rna", n_draws=2, temperature=1.0, seed=0)
    assert out.n_obs == 14
    assert set(out.mod) == {"rna", "methylation", "drug"}
    assert list(out.obs[SOURCE_COLUMN][:2].astype(str)) == ["s000", "s000"]
    with pytest.raises(InputError, match="not one of the run's modalities"):
        gen_uncond.cross_modal(sub, source="atac")


@pytest.mark.parametrize("suffix", [".h5mu", ""])
def test_write_read_roundtrip(gen_cond, tmp_path, suffix):
    out = gen_cond.generate(conditions={"tissue": "lung"}, n=6, seed=0)
    path = tmp_path / f"gen{suffix}"
    write_generated(out, path)
    back = read_generated(path)
    assert set(back.mod) == set(out.mod)
    for m in out.mod:
        np.testing.assert_allclose(back.mod[m].X, out.mod[m].X, rtol=1e-6)
        assert list(back.mod[m].var_names) == list(out.mod[m].var_names)
    assert list(back.obs["tissue"].astype(str)) == ["lung"] * 6
    assert back.uns[PROVENANCE_KEY]["mode"] == "posterior"
    if not suffix:
        assert sorted(p.name for p in path.iterdir()) == [
            "drug.csv",
            "methylation.csv",
            "obs.csv",
            "provenance.json",
            "rna.csv",
        ]
        first = (path / "rna.csv").read_text().splitlines()[0]
        assert first.startswith("sample_id,g0")


def test_write_h5ad_single_modality_only(gen_uncond, tmp_path, mdata):
    out = gen_uncond.generate(n=4, seed=0)
    with pytest.raises(InputError, match="use .h5mu"):
        write_generated(out, tmp_path / "x.h5ad")
    with pytest.raises(InputError, match="unknown output type '.csv'"):
        write_generated(out, tmp_path / "x.csv")
    one = md.MuData({"rna": out.mod["rna"]})
    one.obs = out.obs.copy()
    one.uns[PROVENANCE_KEY] = dict(out.uns[PROVENANCE_KEY])
    write_generated(one, tmp_path / "x.h5ad")
    back = read_generated(tmp_path / "x.h5ad")
    assert list(back.mod) == ["rna"]
    np.testing.assert_array_equal(back.mod["rna"].X, out.mod["rna"].X)
    assert back.uns[PROVENANCE_KEY]["seed"] == 0


def test_calibrated_noise(gen_uncond):
    cal = gen_uncond.calibrated_noise()
    assert set(cal) == {"rna", "methylation"}  # categorical has no noise parameter
    assert cal["rna"]["log_theta"].shape == (12,) and np.isfinite(cal["rna"]["log_theta"]).all()
    assert cal["methylation"]["logvar"].shape == (5,)
    a = gen_uncond.generate(n=30, seed=5, noise="model")
    b = gen_uncond.generate(n=30, seed=5, noise="calibrated")
    np.testing.assert_array_equal(a.obsm["X_latent"], b.obsm["X_latent"])  # same z ...
    assert not np.array_equal(a.mod["rna"].X, b.mod["rna"].X)  # ... other noise
    assert b.uns[PROVENANCE_KEY]["noise"] == "calibrated"
    with pytest.raises(InputError, match="noise must be one of"):
        gen_uncond.generate(n=3, noise="loud")


def test_calibrated_noise_matches_residual_variance(gen_uncond):
    """Gaussian kinds: drawing around the decoded training means with the calibrated variance
    reproduces the residual variance of the training data on the model's scale."""
    rows = np.nonzero(gen_uncond.train)[0]
    tens = gen_uncond._tensors["methylation"]
    pres = tens.present[rows]
    logvar = gen_uncond.calibrated_noise()["methylation"]["logvar"]
    out = gen_uncond.decode(gen_uncond.mean[rows], None, {}, output="mean",
                            rng=np.random.default_rng(0), modalities=["methylation"])  # fmt: skip
    t = gen_uncond.pre.transforms["methylation"]
    mean_std = (np.log(out["methylation"] / (1 - out["methylation"])) - t.mean) / t.sd
    resid = tens.target[rows][pres] - mean_std[pres]
    np.testing.assert_allclose(np.log((resid**2).mean(0)), logvar, rtol=1e-3, atol=1e-3)


def test_product_sets_from_several_levels():
    from core.generate import condition_sets, product_sets

    assert product_sets({}) == [{}]
    assert product_sets({"tissue": ["liver", "lung"], "age": 60.0}) == [
        {"tissue": "liver", "age": 60.0},
        {"tissue": "lung", "age": 60.0},
    ]
    assert product_sets({"tissue": ("liver", "liver")}) == [{"tissue": "liver"}]
    with pytest.raises(InputError, match="choose at least one level of it"):
        product_sets({"tissue": []})
    assert condition_sets(["tissue=liver", "tissue=liver"]) == [{"tissue": "liver"}]


def test_generate_product_of_levels(gen_cond):
    from core.generate import product_sets

    out = gen_cond.generate(
        conditions=product_sets({"tissue": ["liver", "lung"], "age": 50.0}), n=7, seed=0
    )
    combos = out.obs[["tissue", "age"]].astype(str).value_counts()
    assert dict(combos) == {("liver", "50.0"): 7, ("lung", "50.0"): 7}
