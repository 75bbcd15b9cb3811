"""The quality report compares a conditional generation with the real samples of its conditions."""

import numpy as np
import pytest
from test_generate_core import FakeRun, toy_mdata

from core.evaluate import evaluate_run, run_splits
from core.generate import Generator, product_sets


@pytest.fixture(scope="module")
def setup():
    mdata = toy_mdata(n=90)
    run = FakeRun(mdata, conditions=["tissue", "age"])
    return run, mdata, Generator(run, mdata=mdata)


def held_out(run, mdata, levels):
    """Held-out samples of these tissues that have every modality (what the report scores)."""
    _, test = run_splits(run, mdata)
    ids = set.intersection(*(set(a.obs_names) for a in test.mod.values()))
    tissue = test.obs["tissue"].astype(str)
    return sum(1 for i in ids if tissue[i] in levels)


def test_single_condition_report_uses_matching_held_out_samples(setup):
    run, mdata, gen = setup
    syn = gen.generate(conditions=product_sets({"tissue": ["liver"], "age": 60}), n=40, seed=0)
    rep = evaluate_run(run, syn, label="tissue", mdata=mdata, n_permutations=20)
    s = rep.summary
    assert s["n_test"] == held_out(run, mdata, {"liver"}) > 0  # liver only, every age
    assert np.isnan(s["tstr_f1"]) and rep.classifiers.empty
    assert np.isfinite([s["c2st_auc"], s["mmd"], s["mmd_p"], s["corr_dist"]]).all()
    assert any("tissue = liver; age not filtered" in n for n in rep.notes)
    assert any("skipped" in n and "(liver)" in n for n in rep.notes)


def test_two_levels_report_has_classifier_tables_on_those_levels(setup):
    run, mdata, gen = setup
    syn = gen.generate(conditions=product_sets({"tissue": ["liver", "lung"]}), n=40, seed=0)
    rep = evaluate_run(run, syn, label="tissue", mdata=mdata, n_permutations=20)
    assert rep.summary["n_test"] == held_out(run, mdata, {"liver", "lung"})
    assert set(rep.classifiers["class"]) == {"macro", "liver", "lung"}
    assert np.isfinite(rep.summary["tstr_f1"])
    # match=[] opts out: every held-out sample (brain too).
    every = evaluate_run(run, syn, label="tissue", mdata=mdata, match=[], n_permutations=20)
    assert every.summary["n_test"] == held_out(run, mdata, {"liver", "lung", "brain"})
