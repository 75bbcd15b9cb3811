"""Perturbation definitions and sample subsets (core.perturb, no model needed)."""

import numpy as np
import pandas as pd
import pytest

from core import perturb
from core.errors import InputError

VAR_NAMES = {"rna": ["g1", "g2"], "protein": ["p1", "g2"], "drug": ["d1"]}


def test_split_feature():
    assert perturb.split_feature("rna:g1", VAR_NAMES) == ("rna", "g1")
    assert perturb.split_feature("d1", VAR_NAMES) == ("drug", "d1")
    with pytest.raises(InputError, match="several modalities"):
        perturb.split_feature("g2", VAR_NAMES)
    with pytest.raises(InputError, match="not in modality 'rna'"):
        perturb.split_feature("rna:p1", VAR_NAMES)
    with pytest.raises(InputError, match="unknown feature"):
        perturb.split_feature("nope:x", VAR_NAMES)


def test_continuous_kinds():
    x = np.array([0.0, 1.0, 2.0, 5.0])
    sd = x.std()
    np.testing.assert_allclose(perturb.perturb_values(x, kind="plus_std"), x + sd)
    np.testing.assert_allclose(perturb.perturb_values(x, kind="minus_std"), x - sd)
    np.testing.assert_allclose(perturb.perturb_values(x, kind="shift", value=2.5), x + 2.5 * sd)
    np.testing.assert_allclose(perturb.perturb_values(x, kind="min"), 0.0)
    np.testing.assert_allclose(perturb.perturb_values(x, kind="max"), 5.0)
    np.testing.assert_allclose(perturb.perturb_values(x, kind="set", value=-1.0), -1.0)
    # the reference population (all samples) fixes sd/min/max, not the perturbed subset
    ref = np.array([0.0, 10.0])
    np.testing.assert_allclose(perturb.perturb_values(x[:1], kind="max", reference=ref), [10.0])
    with pytest.raises(InputError, match="needs a value"):
        perturb.perturb_values(x, kind="set")


def test_counts_shift_on_log_scale_and_proportions_clip():
    x = np.array([0.0, 9.0, 99.0])
    out = perturb.perturb_values(x, kind="plus_std", data_kind="counts")
    sd = np.log1p(x).std()
    np.testing.assert_allclose(np.log1p(out) - np.log1p(x), sd)
    down = perturb.perturb_values(x, kind="minus_std", data_kind="counts")
    assert (down >= 0).all()
    beta = np.array([0.1, 0.5, 0.95])
    up = perturb.perturb_values(beta, kind="shift", value=3.0, data_kind="proportion")
    assert up.max() == 1.0 and up.min() > 0.1


def test_categorical_set_level():
    codes = np.array([0.0, 0.0, 1.0])
    out = perturb.perturb_values(codes, kind="set", data_kind="categorical", n_levels=2)
    np.testing.assert_allclose(out, 1.0)  # default: the last level ("1" for a 0/1 flag)
    out = perturb.perturb_values(codes, kind="set", value=0, data_kind="categorical", n_levels=2)
    np.testing.assert_allclose(out, 0.0)
    with pytest.raises(InputError, match="does not apply to a categorical"):
        perturb.perturb_values(codes, kind="plus_std", data_kind="categorical", n_levels=2)
    with pytest.raises(InputError, match="not a level"):
        perturb.perturb_values(codes, kind="set", value=3, data_kind="categorical", n_levels=2)


def test_subset_mask():
    obs = pd.DataFrame(
        {"tissue": pd.Categorical(["liver", "lung", "liver"]), "age": [30.0, 40.0, 30.0]}
    )
    assert perturb.subset_mask(obs, None).tolist() == [True, True, True]
    assert perturb.subset_mask(obs, "tissue=liver").tolist() == [True, False, True]
    assert perturb.subset_mask(obs, "age=40").tolist() == [False, True, False]
    assert perturb.subset_mask(obs, np.array([2])).tolist() == [False, False, True]
    assert perturb.subset_mask(obs, np.array([True, False, False])).tolist() == [True, False, False]
    with pytest.raises(InputError, match="no sample has tissue=brain; values in 'tissue'"):
        perturb.subset_mask(obs, "tissue=brain")
    with pytest.raises(InputError, match="not in the sample metadata"):
        perturb.subset_mask(obs, "batch=1")
    with pytest.raises(InputError, match="COL=VALUE"):
        perturb.subset_mask(obs, "liver")
    with pytest.raises(InputError, match="0..2"):
        perturb.subset_mask(obs, [5])


def test_truth_metrics():
    table = pd.DataFrame(
        {
            "source": ["drug:a"] * 4 + ["drug:b"] * 2,
            "target": ["rna:x", "rna:y", "rna:z", "protein:p", "rna:x", "rna:y"],
            "score": [5.0, 1.0, 3.0, 9.0, 0.5, 4.0],
            "significant": [True, False, True, True, False, True],
        }
    )
    planted = pd.DataFrame({"source": ["drug:a", "drug:b"], "target": ["rna:x", "rna:y"]})
    m = perturb.truth_metrics(table, planted)
    # rna targets only: positives scores 5, 4; negatives 1, 3, 0.5 -> AUROC 1
    assert m["auroc"] == 1.0 and m["n_pairs"] == 5 and m["n_planted"] == 2
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    m = perturb.truth_metrics(table, planted, target_modalities=["rna", "protein"])
    assert m["auroc"] == pytest.approx(6 / 8)  # protein:p (9.0) outranks both positives
