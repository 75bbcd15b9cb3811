"""Preprocessing per modality kind: fit on train rows, transform, inverse, JSON state."""

import json

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

from core.errors import InputError, RunError
from core.preprocess import (
    CategoricalTransform,
    ConditionEncoder,
    ContinuousTransform,
    CountsTransform,
    PreprocessConfig,
    Preprocessor,
    ProportionTransform,
    highly_variable,
    transform_from_state,
)


def tiny_mdata(n: int = 40, seed: int = 0) -> md.MuData:
    """Hand-built MuData in the contract layout: 4 kinds, some samples lack protein."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(n)]

    def mod(X, names, kind, rows, **uns):
        a = ad.AnnData(np.asarray(X, dtype=np.float32)[rows])
        a.obs_names = [ids[i] for i in rows]
        a.var_names = names
        a.uns["kind"] = kind
        a.uns.update(uns)
        return a

    everyone = np.arange(n)
    counts = rng.poisson(rng.uniform(1, 20, size=(1, 12)), size=(n, 12))
    beta = rng.uniform(0.05, 0.95, size=(n, 6))
    prot = rng.normal(5, 2, size=(n, 4))
    drug = rng.integers(0, 2, size=(n, 3))
    mdata = md.MuData(
        {
            "rna": mod(counts, [f"g{i}" for i in range(12)], "counts", everyone),
            "methylation": mod(beta, [f"cg{i}" for i in range(6)], "proportion", everyone),
            "protein": mod(prot, [f"p{i}" for i in range(4)], "continuous", everyone[5:]),
            "drug": mod(
                drug,
                ["d0", "d1", "d2"],
                "categorical",
                everyone,
                categories={f"d{i}": ["0", "1"] for i in range(3)},
            ),
        }
    )
    mdata.obs["tissue"] = pd.Categorical(rng.choice(["liver", "lung", "NA"], size=n))
    mdata.obs["age"] = rng.uniform(20, 80, size=n)
    return mdata


def roundtrip(t):
    return transform_from_state(json.loads(json.dumps(t.state())))


def test_counts_log1p_cp10k_and_library():
    X = np.array([[1, 3, 0, 6], [0, 0, 5, 5]], dtype=float)
    t = CountsTransform([f"g{i}" for i in range(4)]).fit(X)
    enc = t.transform(X)
    np.testing.assert_allclose(enc.library[:, 0], [10, 10])
    np.testing.assert_allclose(enc.x[0], np.log1p(X[0] / 10 * 1e4), rtol=1e-6)
    np.testing.assert_array_equal(enc.target, X)
    assert t.median_library == 10
    np.testing.assert_array_equal(roundtrip(t).transform(X).x, enc.x)


def test_hvg_picks_variable_genes():
    rng = np.random.default_rng(1)
    X = rng.poisson(10, size=(200, 30)).astype(float)
    X[:100, 7] = rng.poisson(60, size=100)  # two clearly over-dispersed genes
    X[100:, 21] = rng.poisson(60, size=100)
    keep = highly_variable(X, n_top=5)
    assert {7, 21} <= set(keep.tolist())
    t = CountsTransform([f"g{i}" for i in range(30)], n_top_genes=5).fit(X)
    assert len(t.features) == 5 and "g7" in t.features
    assert t.transform(X).x.shape == (200, 5)


def test_proportion_clip_logit_inverse():
    X = np.array([[0.0, 0.5, 1.0], [0.2, 0.9, 0.3], [0.4, 0.1, 0.7]])
    t = ProportionTransform(["a", "b", "c"], eps=1e-3).fit(X)
    enc = t.transform(X)
    assert np.isfinite(enc.x).all()
    np.testing.assert_allclose(enc.x.mean(axis=0), 0, atol=1e-6)  # standardised on fit data
    back = roundtrip(t).inverse_transform(enc.target)
    np.testing.assert_allclose(back, np.clip(X, 1e-3, 1 - 1e-3), atol=1e-5)


@pytest.mark.parametrize("how", ["none", "log1p", "clr"])
def test_continuous_inverse(how):
    rng = np.random.default_rng(2)
    X = rng.gamma(2.0, 3.0, size=(50, 5))
    t = ContinuousTransform(list("abcde"), how=how).fit(X)
    enc = t.transform(X)
    np.testing.assert_allclose(enc.x.std(axis=0), 1, atol=1e-5)
    back = roundtrip(t).inverse_transform(enc.target)
    if how == "clr":  # rows rescaled to the training median total T: x + 1 scaled, sum = T
        total, p = np.median(X.sum(1)), X.shape[1]
        expected = (X + 1) * ((total + p) / (X.sum(1, keepdims=True) + p)) - 1
        np.testing.assert_allclose(back, np.maximum(expected, 0), rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_allclose(back, X, rtol=1e-4, atol=1e-4)


def test_clr_inverse_round_trips_a_composition():
    rng = np.random.default_rng(4)
    X = rng.dirichlet(np.full(6, 0.8), size=80) * 100  # percentages: every row sums to 100
    t = ContinuousTransform(list("abcdef"), how="clr").fit(X)
    assert t.median_total == pytest.approx(100.0)
    enc = t.transform(X)
    back = roundtrip(t).inverse_transform(enc.target)
    np.testing.assert_allclose(back, X, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(back.sum(1), 100.0, rtol=1e-5)
    # a decoder mean far from the data still maps to a non-negative composition of total 100
    wild = roundtrip(t).inverse_transform(rng.normal(0, 5, size=(10, 6)))
    assert (wild >= 0).all() and np.isfinite(wild).all()


def test_continuous_log_rejects_negative_values():
    with pytest.raises(InputError, match="non-negative"):
        ContinuousTransform(["a"], how="log1p").fit(np.array([[-1.0], [2.0]]))


def test_categorical_onehot_codes_and_expected_level():
    X = np.array([[0, 2], [1, 0], [1, 1], [np.nan, 2]])
    t = CategoricalTransform(
        ["d", "geno"], categories={"d": ["no", "yes"], "geno": ["a", "b", "c"]}
    ).fit(X)
    enc = t.transform(X)
    assert enc.x.shape == (4, 5)
    np.testing.assert_array_equal(enc.x[0], [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(enc.x[3], [0, 0, 0, 0, 1])  # missing -> no level set
    np.testing.assert_array_equal(enc.mask[3], [0, 1])
    np.testing.assert_allclose(roundtrip(t).inverse_transform(enc.x[:3]), X[:3])
    with pytest.raises(InputError, match="level code 5"):
        t.transform(np.array([[5, 0]]))


def test_condition_encoder_na_level_and_standardise():
    obs = pd.DataFrame(
        {"tissue": pd.Categorical(["a", "b", None, "a"]), "age": [20.0, 40.0, np.nan, 60.0]}
    )
    enc = ConditionEncoder(["tissue", "age"]).fit(obs)
    assert enc.names == ["tissue=a", "tissue=b", "tissue=NA", "age"]
    C = enc.transform(obs)
    np.testing.assert_array_equal(C[2, :3], [0, 0, 1])
    assert C[2, 3] == 0 and C[0, 3] < 0 < C[3, 3]
    again = ConditionEncoder.from_state(json.loads(json.dumps(enc.state())))
    np.testing.assert_array_equal(again.transform(obs), C)
    with pytest.raises(InputError, match="'c' not seen in training"):
        enc.transform(pd.DataFrame({"tissue": ["c"], "age": [1.0]}))
    with pytest.raises(InputError, match="not in the sample metadata"):
        ConditionEncoder(["batch"]).fit(obs)


def test_preprocessor_fits_on_train_rows_only_and_aligns_absent_samples():
    mdata = tiny_mdata()
    train = np.zeros(mdata.n_obs, dtype=bool)
    train[:20] = True
    pre = Preprocessor.fit(mdata, train=train, conditions=["tissue", "age"])
    prot = mdata.mod["protein"]
    rows = [i for i, s in enumerate(prot.obs_names) if s in set(mdata.obs_names[:20])]
    expected_mean = prot.X[rows].astype(float).mean(axis=0)
    np.testing.assert_allclose(pre.transforms["protein"].mean, expected_mean, rtol=1e-5)
    tens = pre.tensors(mdata)
    assert tens["protein"].present.sum() == mdata.n_obs - 5
    assert not tens["protein"].x[:5].any()  # absent samples are zero rows
    state = json.loads(pre.to_json())
    again = Preprocessor.from_state(state)
    np.testing.assert_array_equal(again.tensors(mdata)["rna"].x, tens["rna"].x)
    assert again.condition_matrix(mdata.obs).shape == (mdata.n_obs, pre.conditions.n_cond)


def test_check_features_names_run_and_counts():
    mdata = tiny_mdata()
    pre = Preprocessor.fit(mdata, config=PreprocessConfig())
    other = tiny_mdata()
    other.mod["rna"] = other.mod["rna"][:, :8].copy()
    with pytest.raises(
        RunError,
        match=r"Run 'r1' was trained on 12 genes in 'rna' but this "
        r"dataset has 8",
    ):
        pre.check_features(other, run_name="r1")
