"""Names a reader can trust: a class name means one thing in lib/, and module globals say what they hold."""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
CHECKED = ("compare", "usage", "documents", "prompts", "core")  # packages already cleaned up; widen as the others are


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def _classes(path: Path) -> set[str]:
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)}


def _globals(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("package", CHECKED)
def test_no_class_in_the_package_shares_its_name_with_another_class_in_lib(package):
    mine = {path: _classes(path) for path in _modules(LIB / package)}
    others = {path: _classes(path) for path in _modules(LIB) if path not in mine}
    clashes = sorted(
        f"{name} in {path.relative_to(LIB)} and {other.relative_to(LIB)}"
        for path, names in mine.items()
        for name in names
        for other, their in {**others, **{p: c for p, c in mine.items() if p != path}}.items()
        if name in their
    )
    assert clashes == []


@pytest.mark.parametrize("package", CHECKED)
def test_module_globals_in_the_package_have_names_longer_than_one_letter(package):
    short = sorted(
        f"{name} in {path.relative_to(LIB)}"
        for path in _modules(LIB / package)
        for name in _globals(path)
        if len(name) == 1
    )
    assert short == []
