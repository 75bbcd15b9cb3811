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
