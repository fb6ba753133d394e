"""The wheel lists its packages by name (pyproject.toml): a new subpackage left off the list
would be missing from every non-editable install while the tests, run from the checkout,
still pass. This test is the reminder."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_of_the_source_tree_is_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "compose").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - {"compose.schemas"} <= listed  # schemas/ is mapped in, see package-dir
    assert {"compose.schemas", "compose.demo"} <= listed
    for package, data in config["package-data"].items():
        assert package in listed and data
