"""AppTest: the shell (navigation, sidebar pickers, URL, independent sessions)."""

import shutil

from st_apptest import assert_clean, figure, new_app

from dashboard import sidebar


def test_pages_and_sidebar_pickers(ole_dirs):
    at = new_app().run()
    assert_clean(at)
    assert at.title[0].value == "Embeddings"
    datasets = at.sidebar.selectbox(key="dataset").options
    assert datasets[:3] == ["synthetic", "pbmc68k", "nutrimouse"]
    assert at.sidebar.selectbox(key="run").options == [ole_dirs.run_name]
    for page, title in [("data", "Data"), ("train", "Train"), ("reconstruction", "Reconstruction")]:
        at.switch_page(f"../pages/{page}.py").run()
        assert_clean(at)
        assert at.title[0].value == title
        assert at.session_state["run"] == ole_dirs.run_name  # kept across pages


def test_run_picker_lists_only_runs_of_the_dataset(ole_dirs):
    at = new_app(dataset="nutrimouse").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="run").options == []
    assert "Train" in at.info[0].value


def test_dataset_and_run_come_from_the_url(ole_dirs):
    second = "tiny-copy"
    shutil.copytree(ole_dirs.runs / ole_dirs.run_name, ole_dirs.runs / second)
    at = new_app(dataset="synthetic", run=second).run()
    assert_clean(at)
    assert at.session_state["run"] == second
    assert f"of {second}:" in figure(at, "emb_map")["layout"]["title"]["text"]
    other = new_app(dataset="synthetic", run=ole_dirs.run_name).run()
    assert other.session_state["run"] == ole_dirs.run_name
    assert at.session_state["run"] == second  # sessions are independent
    bogus = new_app(run="no-such-run").run()
    assert_clean(bogus)
    assert bogus.session_state["run"] in (second, ole_dirs.run_name)


def test_source_dataset_names(tmp_path):
    up = tmp_path / "uploads"
    assert sidebar.source_dataset("synthetic", up) == "synthetic"
    assert sidebar.source_dataset(str(up / "study1"), up) == "study1"
    assert sidebar.source_dataset(str(up / "study2" / "study2.h5ad"), up) == "study2"
    assert sidebar.source_dataset(f"rna={tmp_path}/x/rna.csv,protein=y.csv", up) == "rna"
