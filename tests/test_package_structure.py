"""Layering rules: core is plain Python (never imports streamlit, dashboard or pages)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"streamlit", "dashboard", "pages"}
CORE_FILES = sorted((REPO / "core").rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_has_modules():
    assert CORE_FILES, "core/ has no Python files"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_core_never_imports_ui_layers(path):
    bad = _imported_roots(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}; core must stay UI-free"


def test_checkpoints_never_unpickle():
    """Every torch.load in the product passes weights_only=True."""
    for folder in ("core", "dashboard", "pages"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and getattr(node.func.value, "id", "") == "torch"
                ):
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = (
                        isinstance(kw.get("weights_only"), ast.Constant)
                        and kw["weights_only"].value is True
                    )
                    assert ok, (
                        f"{path.relative_to(REPO)}:{node.lineno} torch.load without weights_only=True"
                    )
