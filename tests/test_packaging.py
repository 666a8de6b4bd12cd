"""The wheel ships every package of the tree (pyproject's explicit list, mapped by
``package-dir``): a package left out breaks `pip install cossl-edge` where it is imported,
while an editable install hides it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_of_the_tree_is_in_the_wheel_list():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, mapping = set(tool["packages"]), tool["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            full = ".".join((name, *rel))
            if not any(full.startswith(other + ".") or full == other
                       for other in mapping if other != name and other.startswith(name + ".")):
                found.add(full)
    assert found <= listed, f"packages missing from pyproject's list: {sorted(found - listed)}"
    assert {"cossl_edge.commands", "cossl_edge.dicom", "cossl_edge.evaluation"} <= listed
