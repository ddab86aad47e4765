"""The distribution's name: `rotator` and `secret-rotator` on PyPI are unrelated projects,
so every install line the docs show must name this project's own distribution."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
# Other projects the docs tell a reader to install, on purpose (a webhook receiver's
# verifier in docs/operations.md): anything else is a mistake.
THIRD_PARTY = {"standardwebhooks"}
TAKEN = {"rotator", "secret-rotator"}  # on PyPI, by unrelated projects


def _documents() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "deploy").rglob("README*")),
        ROOT / "Dockerfile",
        ROOT / "deploy" / "systemd" / "rotator.service",
    ]


def _installed_names(text: str) -> list[str]:
    """The distribution names of every `pip install ...` in a text (paths, -r/-e and
    options skipped), each line up to a shell separator or a closing backtick."""
    names = []
    for match in re.finditer(r"pip install ([^`\n;&|()]*)", text):
        words = shlex.split(match[1].replace("\\", " "), comments=True)
        skip_next = False
        for word in words:
            if skip_next:
                skip_next = False
                continue
            if word in {"-r", "-e", "-c", "--requirement", "--editable", "--constraint"}:
                skip_next = True
                continue
            if word.startswith("-") or word.startswith((".", "/")) or "/" in word:
                continue
            try:
                names.append(Requirement(word).name)
            except InvalidRequirement:
                continue
    return names


def test_the_distribution_name_is_ours_and_the_dev_extra_refers_to_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] not in TAKEN
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    assert any(r.name == NAME and {"postgres", "demo"} <= r.extras for r in dev), dev
    assert project["scripts"] == {"rotator": "rotator.cli:main"}  # the command stays


def test_every_install_line_in_the_docs_names_this_distribution() -> None:
    seen = []
    for path in _documents():
        for name in _installed_names(path.read_text()):
            where = path.relative_to(ROOT)
            assert name == NAME or name in THIRD_PARTY, f"{where}: pip install {name}"
            seen.append((where, name))
    assert (Path("README.md"), NAME) in seen, "README never says what to install"
    assert (Path("deploy/systemd/README.md"), NAME) in seen


def test_the_scan_catches_the_wrong_name() -> None:
    assert _installed_names("run `pip install 'rotator[postgres]'` first") == ["rotator"]
    assert _installed_names("/opt/rotator/bin/pip install -q secret-rotator && x") == [
        "secret-rotator"
    ]
    assert _installed_names("pip install -e '.[dev]' -r deploy/image/requirements.lock") == []


def test_the_installed_command_reports_the_distributions_version() -> None:
    done = subprocess.run(
        [str(BIN / "rotator"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rotator, version {metadata.version(NAME)}"
