"""The README keeps up with the code (in the style of sqlite-utils' tests/test_docs.py): every setting the app
reads is in the configuration table and every row there is read; every CLI command is shown and every command
shown exists; the architecture tree names the packages that exist."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from lib.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETTINGS_SOURCE = ROOT / "lib" / "core" / "settings.py"
NAME = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")


def settings_read() -> set[str]:
    """Environment/secret names lib/core/settings.py reads: string literals passed to get(...) or env[...]."""
    names = set()
    for node in ast.walk(ast.parse(SETTINGS_SOURCE.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == "get" and isinstance(node.args[0].value, str) and NAME.match(node.args[0].value):
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            value = node.slice.value
            if isinstance(value, str) and NAME.match(value) and "_" in value:
                names.add(value)
    return names


def configuration_table() -> set[str]:
    """Names in the first column of the README's configuration table."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def cli_commands() -> set[str]:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(subs.choices)


def test_the_settings_reader_is_found():
    assert {"WORKBENCH_DATA_DIR", "DATABASE_URL", "OPENAI_API_KEY", "WORKBENCH_ROLES"} <= settings_read()


@pytest.mark.parametrize("name", sorted(settings_read()))
def test_every_setting_is_in_the_readme_configuration_table(name):
    assert name in configuration_table(), f"{name} is read by lib/core/settings.py but not in the README's table"


@pytest.mark.parametrize("name", sorted(configuration_table()))
def test_every_setting_in_the_readme_is_read_by_the_app(name):
    assert name in settings_read(), f"the README documents {name}, which lib/core/settings.py never reads"


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_every_cli_command_is_in_the_readme(command):
    assert re.search(rf"lib\.cli {re.escape(command)}\b", README), f"`python -m lib.cli {command}` is not in README"


def test_every_cli_command_in_the_readme_exists():
    shown = set(re.findall(r"lib\.cli ([a-z][a-z-]*)", README))
    assert shown and shown <= cli_commands(), shown - cli_commands()


def test_the_architecture_tree_names_every_lib_package_and_nothing_stale():
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    packages = {p.name for p in (ROOT / "lib").iterdir() if (p / "__init__.py").exists()}
    shown = set(re.findall(r"^  ([a-z_]+)/", section, re.M))
    assert shown == packages
