"""Quality-report metrics on toy data where the answer is known."""

import json

import numpy as np
import pytest

from core.errors import InputError
from core.evaluate import (
    c2st_auc,
    classifier_table,
    correlation_distance,
    feature_agreement,
    memorisation,
    mmd_test,
    quality_report,
)


def blobs(n, *, shift=0.0, seed=0, d=8, n_classes=3, sep=3.0):
    """Labelled Gaussian blobs: class k centred at sep * e_k (+ shift on every feature)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    centres = np.zeros((n_classes, d))
    for k in range(n_classes):
        centres[k, k] = sep
    x = centres[y] + rng.normal(size=(n, d)) + shift
    return x, np.array([f"c{k}" for k in y])


def test_c2st_same_distribution_near_half():
    a, _ = blobs(300, seed=1)
    b, _ = blobs(300, seed=2)
    assert abs(c2st_auc(a, b, seed=0) - 0.5) < 0.1


def test_c2st_shifted_distribution_high():
    a, _ = blobs(300, seed=1)
    b, _ = blobs(300, seed=2, shift=1.0)
    assert c2st_auc(a, b, seed=0) > 0.9


def test_mmd_same_vs_shifted():
    a, _ = blobs(150, seed=1)
    b, _ = blobs(150, seed=2)
    c, _ = blobs(150, seed=3, shift=0.7)
    mmd_same, p_same, _ = mmd_test(a, b, n_permutations=100, seed=0)
    mmd_shift, p_shift, _ = mmd_test(a, c, n_permutations=100, seed=0)
    assert p_same > 0.05
    assert p_shift < 0.02
    assert mmd_shift > 5 * max(mmd_same, 1e-4)


def test_mmd_is_seeded():
    a, _ = blobs(100, seed=1)
    b, _ = blobs(100, seed=2, shift=0.2)
    assert mmd_test(a, b, n_permutations=50, seed=4) == mmd_test(a, b, n_permutations=50, seed=4)


def test_classifier_table_known_answer():
    x, y = blobs(400, seed=0, sep=6.0)
    xt, yt = blobs(200, seed=1, sep=6.0)
    t = classifier_table(x, y, xt, yt, seed=0)
    assert list(t["class"]) == ["macro", "c0", "c1", "c2"]
    assert t.loc[0, "f1"] > 0.95
    assert t.loc[0, "support"] == 200
    # Labels scrambled on the training side: chance level for 3 classes.
    rng = np.random.default_rng(0)
    t_bad = classifier_table(x, rng.permutation(y), xt, yt, seed=0)
    assert t_bad.loc[0, "f1"] < 0.6


def test_classifier_needs_two_levels():
    x, _ = blobs(50)
    with pytest.raises(InputError, match="at least 2 label levels"):
        classifier_table(x, ["a"] * 50, x, ["a"] * 50)


def test_feature_agreement_identical_and_scaled():
    x, _ = blobs(500, seed=0, d=20)
    x = x + np.arange(20)  # spread the means
    summary, table = feature_agreement(x, x.copy())
    assert summary["mean_r"] == pytest.approx(1.0)
    assert summary["var_r2"] == pytest.approx(1.0)
    assert list(table.columns) == ["feature", "real_mean", "syn_mean", "real_var", "syn_var"]
    worse, _ = feature_agreement(x, x[:, ::-1])
    assert worse["mean_r2"] < 0


def test_correlation_distance_zero_for_same_structure():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 2))
    a = np.column_stack([z[:, 0], z[:, 0] + 0.3 * z[:, 1], z[:, 1], -z[:, 1]])
    b_same = a[rng.permutation(len(a))] * 2.0 + 1.0  # correlation is scale/shift invariant
    b_indep = rng.normal(size=(2000, 4))
    assert correlation_distance(a, b_same) < 1e-9
    assert correlation_distance(a, b_indep) > 0.9


def test_memorisation_flags_copies_only():
    train, _ = blobs(400, seed=0)
    test, _ = blobs(200, seed=1)
    fresh, _ = blobs(200, seed=2)
    copies = train[:200] + 1e-9
    ok = memorisation(train, fresh, test, seed=0)
    bad = memorisation(train, copies, test, seed=0)
    assert ok["flagged"] == 0.0 and ok["syn_fraction"] < 0.15
    assert bad["flagged"] == 1.0 and bad["syn_fraction"] == 1.0 and bad["exact_copies"] == 1.0
    assert bad["train_share"] > 0.7 and abs(ok["train_share"] - 0.5) < 0.15
    # Near-copies (small jitter around training samples) are flagged too.
    near = train[:200] + 0.05
    assert memorisation(train, near, test, seed=0)["flagged"] == 1.0


def test_memorisation_ignores_low_noise_samples():
    """Samples shrunk towards the class centres sit close to everything, not to training data."""
    train, ytr = blobs(400, seed=0)
    test, _ = blobs(200, seed=1)
    fresh, yf = blobs(300, seed=2)
    centres = np.array([train[ytr == c].mean(0) for c in ("c0", "c1", "c2")])
    idx = np.array([int(c[1]) for c in yf])
    shrunk = centres[idx] + 0.3 * (fresh - centres[idx])
    res = memorisation(train, shrunk, test, seed=0)
    assert res["syn_fraction"] > 0.1  # closer than typical training pairs ...
    assert res["flagged"] == 0.0  # ... but not copies of training samples


def test_quality_report_good_vs_bad_generator():
    x_train, y_train = blobs(400, seed=0)
    x_test, y_test = blobs(200, seed=1)
    x_good, y_good = blobs(300, seed=2)
    good = quality_report(
        x_train, y_train, x_test, y_test, x_good, y_good, n_permutations=100, seed=0
    )
    s = good.summary
    assert s["tstr_f1"] >= 0.85 * s["trtr_f1"]
    assert s["c2st_auc"] < 0.65
    assert s["mmd_p"] > 0.05
    assert s["memorisation_flagged"] == 0
    assert good.verdict.startswith("Good")
    assert set(good.classifiers["setting"]) == {"TRTR", "TRTS", "TSTR"}
    # JSON-able payload with the CLI's required keys.
    payload = json.loads(json.dumps(good.to_dict()))
    for key in ("trtr_f1", "trts_f1", "tstr_f1", "c2st_auc", "mmd", "mmd_p", "memorisation"):
        assert key in payload

    # A "generator" that shifts the data and scrambles labels.
    rng = np.random.default_rng(5)
    x_bad, y_bad = blobs(300, seed=3, shift=1.5)
    bad = quality_report(
        x_train, y_train, x_test, y_test, x_bad, rng.permutation(y_bad), n_permutations=100, seed=0
    )
    assert bad.summary["tstr_f1"] < 0.85 * bad.summary["trtr_f1"]
    assert bad.summary["c2st_auc"] > 0.9
    assert bad.summary["mmd_p"] < 0.05
    assert bad.verdict.startswith("Poor")
    assert set(bad.table["metric"]) >= {"trtr_f1", "c2st_auc", "mmd"}


def test_quality_report_rejects_mismatched_features():
    x, y = blobs(100)
    with pytest.raises(InputError, match="feature counts differ"):
        quality_report(x, y, x, y, x[:, :3], y)


def test_classifier_error_names_levels_as_plain_text():
    x, _ = blobs(50)
    with pytest.raises(InputError) as err:
        classifier_table(x, np.array(["liver"] * 50), x, np.array(["liver"] * 50))
    assert "got liver;" in str(err.value) and "np.str_" not in str(err.value)


def test_quality_report_single_label_level_skips_only_the_classifiers():
    """One generated level (tissue=liver): no classifier tables, everything else computed."""
    x_train, y_train = blobs(300, seed=0)
    x_test, y_test = blobs(150, seed=1)
    x_syn, _ = blobs(200, seed=2)
    y_syn = np.array(["c0"] * len(x_syn))
    rep = quality_report(
        x_train, y_train, x_test, y_test, x_syn, y_syn, label="tissue", n_permutations=50, seed=0
    )
    s = rep.summary
    for key in ("trtr_f1", "trts_f1", "tstr_f1", "tstr_ratio"):
        assert np.isnan(s[key]), key
    for key in ("c2st_auc", "mmd", "mmd_p", "mean_r", "var_r", "corr_dist", "memorisation"):
        assert np.isfinite(s[key]), key
    assert rep.classifiers.empty and "setting" in rep.classifiers.columns
    (note,) = [n for n in rep.notes if "skipped" in n]
    assert "single tissue level (c0)" in note and "np.str_" not in note
    assert rep.verdict.split(":")[0] in {"Good", "Poor"} and "nan" not in rep.verdict
    payload = json.loads(json.dumps(rep.to_dict()))  # NaN is valid for json.dumps here
    assert payload["notes"] == list(rep.notes) and payload["classifiers"] == []


def test_c2st_works_on_a_small_held_out_group():
    a, _ = blobs(3, seed=1)
    b, _ = blobs(50, seed=2)
    assert 0.0 <= c2st_auc(a, b, seed=0) <= 1.0
    with pytest.raises(InputError, match="at least 2 samples"):
        c2st_auc(a[:1], b, seed=0)


def test_format_value_integers_as_integers():
    from core.evaluate import format_value

    assert format_value(1472) == "1472"
    assert format_value(np.int64(3)) == "3"
    assert format_value(0.123456) == "0.1235"
    assert format_value(float("nan")) == "n/a"
    assert format_value("tissue") == "tissue"


def _synthetic(obs: dict, conditions) -> object:
    import anndata as ad
    import mudata as md
    import pandas as pd

    frame = pd.DataFrame(obs, index=[f"syn-{i}" for i in range(len(next(iter(obs.values()))))])
    m = md.MuData({"rna": ad.AnnData(np.zeros((len(frame), 2), np.float32), obs=frame.copy())})
    m.obs = frame
    if conditions is not None:
        m.uns["generation"] = {"conditions": json.dumps(conditions)}
    return m


def test_real_match_filters_categorical_conditions_not_age():
    import pandas as pd

    from core.evaluate import real_match

    real = pd.DataFrame(
        {
            "tissue": pd.Categorical(["liver", "lung", "brain", "liver", "lung", "gut"]),
            "batch": pd.Categorical(["a", "a", "b", "b", "a", "b"]),
            "age": [20.0, 60.0, 60.0, 80.0, 40.0, 60.0],
        }
    )
    sets = [{"tissue": "liver", "age": 60.0}, {"tissue": "lung", "age": 60.0}]
    syn = _synthetic({"tissue": ["liver", "lung"], "batch": ["a", "b"], "age": [60.0, 60.0]}, sets)
    rule = real_match(syn, real)
    assert rule.columns == ("tissue",) and rule.unfiltered == ("age",)  # batch: not requested
    assert rule.mask(real).tolist() == [True, True, False, True, True, False]
    assert rule.describe() == "tissue in {liver, lung}; age not filtered"
    # Several columns: value combinations, not each column on its own.
    two = [{"tissue": "liver", "batch": "a"}, {"tissue": "lung", "batch": "b"}]
    syn2 = _synthetic({"tissue": ["liver", "lung"], "batch": ["a", "b"]}, two)
    assert real_match(syn2, real).mask(real).tolist() == [True, False, False, False, False, False]
    # No provenance (data not written by generate): every real sample.
    plain = real_match(_synthetic({"tissue": ["liver"]}, None), real)
    assert plain.mask(real).all() and plain.describe() == "all samples"
    single = real_match(_synthetic({"tissue": ["liver"]}, [{"tissue": "liver"}]), real)
    assert single.describe() == "tissue = liver"
