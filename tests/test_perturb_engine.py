"""The perturbation engine on a tiny hand-built run (random weights, no training)."""

from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import torch

from core import perturb
from core.errors import InputError
from core.models import ModelConfig, build_model, specs_from_preprocessor
from core.preprocess import Preprocessor

N_OBS = 40


def tiny_mdata(seed: int = 0) -> md.MuData:
    rng = np.random.default_rng(seed)
    names = [f"s{i}" for i in range(N_OBS)]
    rna = ad.AnnData(rng.poisson(5, size=(N_OBS, 6)).astype(np.float32))
    rna.obs_names, rna.var_names = names, [f"g{i}" for i in range(6)]
    rna.uns["kind"] = "counts"
    prot = ad.AnnData(rng.normal(size=(N_OBS - 5, 3)).astype(np.float32))  # 5 samples lack it
    prot.obs_names, prot.var_names = names[5:], ["p0", "p1", "p2"]
    prot.uns["kind"] = "continuous"
    drug = ad.AnnData((np.arange(N_OBS)[:, None] % np.array([[2, 3]]) == 0).astype(np.float32))
    drug.obs_names, drug.var_names = names, ["d0", "d1"]
    drug.uns["kind"] = "categorical"
    drug.uns["categories"] = {"d0": ["0", "1"], "d1": ["0", "1"]}
    mdata = md.MuData({"rna": rna, "protein": prot, "drug": drug})
    mdata.obs["tissue"] = pd.Categorical(np.where(np.arange(N_OBS) < 20, "liver", "lung"))
    return mdata


class FakeRun:
    """Just the Run attributes the engine uses (core.runs.Run has the same names)."""

    name = "fake"
    path = Path(".")

    def __init__(self, mdata, n_refits: int = 3):
        self.preprocessor = Preprocessor.fit(mdata)
        specs = specs_from_preprocessor(self.preprocessor)
        self._models = []
        for r in range(n_refits):
            torch.manual_seed(r)
            m = build_model(
                specs,
                n_cond=0,
                config=ModelConfig(model="multivae", n_latent=4, n_hidden=16, dropout=0.0),
            )
            self._models.append(m.eval())
        self.n_refits = n_refits

    def model(self, refit: int = 0):
        return self._models[refit]


@pytest.fixture(scope="module")
def setup():
    mdata = tiny_mdata()
    run = FakeRun(mdata)
    return run, mdata, perturb.build_context(run, mdata)


def test_context_baseline_matches_model(setup):
    run, mdata, ctx = setup
    assert ctx.z0.shape == (3, N_OBS, 4)
    assert ctx.recon0["protein"].shape == (3, N_OBS, 3)
    assert np.isnan(ctx.recon0["protein"][:, :5]).all()  # samples without protein
    t = run.preprocessor.tensors(mdata)
    with torch.no_grad():
        mean, _ = run.model(1).encode(
            {m: torch.from_numpy(v.x) for m, v in t.items()},
            None,
            {m: torch.from_numpy(v.present.astype(np.float32)) for m, v in t.items()},
        )
    np.testing.assert_allclose(ctx.z0[1], mean.numpy(), rtol=1e-5, atol=1e-6)


def test_continuous_perturbation(setup):
    run, mdata, ctx = setup
    res = perturb.perturb(run, feature="protein:p1", kind="plus_std", context=ctx)
    assert res.rows.tolist() == list(range(5, N_OBS))  # only samples with protein
    assert res.z_after.shape == res.z_before.shape == (3, N_OBS - 5, 4)
    assert np.abs(res.displacement).max() > 0
    table = res.table
    assert list(table.columns[:7]) == perturb.TABLE_COLUMNS
    assert "protein:p1" not in set(table["target"])  # never its own association
    assert len(table) == 6 + 3 + 2 - 1
    assert table["score"].is_monotonic_decreasing
    assert set(table["source"]) == {"protein:p1"}
    # effect is the mean decoded change in data units
    row = table.set_index("target").loc["rna:g2"]
    np.testing.assert_allclose(row["effect"], res.delta("rna")[:, :, 2].mean(), rtol=1e-5)
    before, after = res.target_values("rna:g2")
    assert before.shape == (3, N_OBS - 5)


def test_perturbation_changes_only_its_modality_input(setup):
    run, mdata, ctx = setup
    res = perturb.perturb(run, feature="protein:p0", kind="set", value=0.0, context=ctx)
    # a perturbation that leaves the data unchanged for a sample leaves its latent unchanged
    p0 = ctx.data["protein"][:, 0]
    unchanged = np.flatnonzero(p0[res.rows] == 0.0)
    assert np.allclose(res.displacement[:, unchanged], 0.0)


def test_categorical_skips_samples_already_at_level(setup):
    run, mdata, ctx = setup
    res = perturb.perturb(run, feature="drug:d0", context=ctx)  # default: set to level 1
    codes = ctx.data["drug"][:, 0]
    assert (codes[res.rows] == 0).all() and len(res.rows) == int((codes == 0).sum())
    res0 = perturb.perturb(run, feature="drug:d0", kind="set", value=0, context=ctx)
    assert (codes[res0.rows] == 1).all()


def test_subset_and_methods(setup):
    run, mdata, ctx = setup
    for method in ("bayes", "ttest", "ks"):
        res = perturb.perturb(
            run, feature="rna:g0", subset="tissue=liver", method=method, context=ctx
        )
        assert res.rows.max() < 20
        assert res.table["fdr"].between(0, 1).all(), method


def test_screen_one_table_with_progress(setup):
    run, mdata, ctx = setup
    events = []
    table = perturb.screen(run, modality="drug", context=ctx, progress=events.append)
    assert set(table["source"]) == {"drug:d0", "drug:d1"}
    assert len(table) == 2 * (6 + 3 + 2 - 1)
    assert [e["step"] for e in events if e["stage"] == "screen"] == [1, 2]
    assert not (table["source"] == table["target"]).any()


def test_errors(setup):
    run, mdata, ctx = setup
    with pytest.raises(InputError, match="does not apply to a categorical"):
        perturb.perturb(run, feature="drug:d0", kind="plus_std", context=ctx)
    with pytest.raises(InputError, match="'nope' is not in modality 'rna'"):
        perturb.perturb(run, feature="rna:nope", context=ctx)
    with pytest.raises(InputError, match="not in this run"):
        perturb.screen(run, modality="atac", context=ctx)
    with pytest.raises(InputError, match="fewer than 2 samples"):
        perturb.perturb(run, feature="drug:d0", subset=np.array([0]), context=ctx)
