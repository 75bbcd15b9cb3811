"""CLI plumbing: parsing, exit codes and the one-line error contract."""

import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import build_parser, parse_assignments
from core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_help_lists_every_command():
    text = build_parser().format_help()
    for cmd in (
        "datasets",
        "validate",
        "train",
        "encode",
        "runs",
        "embed",
        "perturb",
        "generate",
        "evaluate",
    ):
        assert cmd in text


def test_parse_assignments():
    assert parse_assignments(["rna=counts", " prot = continuous"], flag="--kind") == {
        "rna": "counts",
        "prot": "continuous",
    }
    with pytest.raises(InputError, match="--kind expects KEY=VALUE"):
        parse_assignments(["rna"], flag="--kind")


def test_unknown_command_exits_2():
    res = run_cli("no-such-command")
    assert res.returncode == 2


# every parse error: one "error: <message>; see python -m core <command> --help" line, exit 2
PARSE_ERRORS = [
    ([], "the following arguments are required: COMMAND", "python -m core"),
    (["validate"], "the following arguments are required: --data", "python -m core validate"),
    (["train", "--data", "synthetic"], "required: --out", "python -m core train"),
    (
        ["train", "--data", "x", "--out", "r", "--epochs", "ten"],
        "invalid int",
        "python -m core train",
    ),
    (["encode"], "required: RUN_DIR, --out", "python -m core encode"),
    (["embed", "r", "--dims", "5"], "invalid choice: 5", "python -m core embed"),
    (["perturb", "r", "--out", "t.csv"], "one of the arguments", "python -m core perturb"),
    (["generate", "r", "--out", "x"], "required: --n", "python -m core generate"),
    (["evaluate", "r"], "required: --synthetic, --label", "python -m core evaluate"),
    (["runs", "--bogus"], "unrecognized arguments: --bogus", "python -m core runs"),
    (["datasets", "--jsn"], "unrecognized arguments: --jsn", "python -m core datasets"),
    (["no-such-command"], "invalid choice: 'no-such-command'", "python -m core"),
]


@pytest.mark.parametrize(("argv", "message", "prog"), PARSE_ERRORS)
def test_parse_errors_are_one_line_with_a_help_hint(capsys, argv, message, prog):
    from core.cli import main

    with pytest.raises(SystemExit) as info:
        code = main(argv)
        raise SystemExit(code)  # unrecognized arguments return 2 instead of exiting
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert lines[0].endswith(f"; see {prog} --help")
    assert "usage:" not in captured.err


def test_validate_without_data_from_a_shell():
    res = run_cli("validate")
    assert res.returncode == 2
    assert res.stderr == (
        "error: the following arguments are required: --data; see python -m core validate --help\n"
    )
    assert res.stdout == ""


def test_help_still_prints_usage_and_exits_0():
    res = run_cli("validate", "--help")
    assert res.returncode == 0
    assert res.stdout.startswith("usage: python -m core validate")
