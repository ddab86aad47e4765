"""The devkit stays out of the product's import graph (import-linter checks the imports; this
checks that the contract names every product module, so a new one cannot slip past it)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import rotator
from rotator.cli import COMMANDS

ROOT = Path(rotator.__file__).parent
PYPROJECT = ROOT.parent / "pyproject.toml"


def _contract(name: str) -> dict[str, Any]:
    contracts = tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"] == name)


def test_the_contract_names_every_product_module() -> None:
    product = {
        f"rotator.{path.stem}"
        for path in ROOT.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    } - {"rotator.devkit"}
    sources = set(_contract("Product code never imports the devkit")["source_modules"])
    assert product - sources == set(), "add these to the contract's source_modules"
    assert sources - product == set(), "these modules are gone: remove them from the contract"


def test_only_the_sandbox_and_demo_commands_reach_the_devkit() -> None:
    devkit = {name: target for name, target in COMMANDS.items() if "devkit" in target}
    assert devkit == {
        "sandbox": "rotator.devkit.sandbox.cli:sandbox",
        "demo": "rotator.devkit.demo:demo",
    }
