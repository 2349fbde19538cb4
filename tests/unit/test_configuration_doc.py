"""docs/configuration.md documents every key of conf/pipeline.toml, and only those, with the
file's own defaults.

The doc's key tables have the header `| key | default | environment variable | meaning |`; a
row's key is its first cell (in backticks: `KEY`, or `section.KEY` for a key of a TOML table)
and its default the second cell, a TOML value in backticks (`"5 seconds"`, `0`, `true`). Other
tables of the doc (secrets, other environment variables) have other headers and are not read.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOML = ROOT / "conf" / "pipeline.toml"
DOC = ROOT / "docs" / "configuration.md"
KEY_HEADER = ["key", "default", "environment variable", "meaning"]


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every key of a TOML document, named `section.key` below its tables."""
    keys: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, dict):
            keys.update(flatten(value, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = value
    return keys


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def code(cell: str) -> str:
    assert len(cell) >= 2 and cell.startswith("`") and cell.endswith("`"), f"not in backticks: {cell!r}"
    return cell[1:-1]


def documented() -> list[tuple[str, str]]:
    """(key, default as written) for every row of every key table of the doc."""
    rows: list[tuple[str, str]] = []
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        row = cells(line)
        if row == KEY_HEADER:
            in_table = True
        elif in_table and not set("".join(row)) <= set("-: "):  # not the separator row
            assert len(row) == len(KEY_HEADER), f"a key row with {len(row)} cells: {line}"
            rows.append((code(row[0]), code(row[1])))
    return rows


def toml_value(text: str) -> Any:
    return tomllib.loads(f"value = {text}")["value"]


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (TOML's true is not 1, nor 5 the same as 5.0)."""
    return type(a) is type(b) and a == b


def test_the_doc_has_key_tables():
    assert len(documented()) >= 10


def test_every_key_of_the_toml_is_documented_once():
    keys = [key for key, _ in documented()]
    missing = set(flatten(tomllib.loads(TOML.read_text(encoding="utf-8")))) - set(keys)
    assert not missing, f"keys of {TOML.name} missing from {DOC.name}: {sorted(missing)}"
    twice = sorted({key for key in keys if keys.count(key) > 1})
    assert not twice, f"keys documented twice: {twice}"


def test_the_doc_names_no_key_the_toml_does_not_have():
    unknown = {key for key, _ in documented()} - set(flatten(tomllib.loads(TOML.read_text(encoding="utf-8"))))
    assert not unknown, f"keys in {DOC.name} that {TOML.name} does not have: {sorted(unknown)}"


def test_every_default_shown_is_the_toml_default():
    defaults = flatten(tomllib.loads(TOML.read_text(encoding="utf-8")))
    wrong = [f"{key}: doc {shown}, toml {defaults[key]!r}" for key, shown in documented()
             if key in defaults and not same(toml_value(shown), defaults[key])]
    assert not wrong, "defaults that differ from the toml's: " + "; ".join(wrong)
