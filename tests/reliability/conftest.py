"""Fixtures of the reliability suite, and the summary it prints at the end of a session.

Long variants: ROTATOR_LONG=1 (a longer soak, more hypothesis examples, every crash point
twice as many times is not needed: the matrix is exhaustive already). ROTATOR_EXEC=1 runs
every rotator process from the installed console script instead of the fork server.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.devkit.localaws import LocalAws
from rotator.devkit.sandbox.server import SandboxServer
from tests.reliability import figures
from tests.reliability.awsproxy import AwsProxy
from tests.reliability.harness import Databases, ServicesRig
from tests.reliability.launcher import Launcher

LONG = os.environ.get("ROTATOR_LONG") == "1"


@pytest.fixture(scope="session")
def aws_proxy(local_aws: LocalAws) -> Iterator[AwsProxy]:
    with AwsProxy(local_aws.endpoint_url) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    instance = Launcher()
    yield instance
    figures.add("rotator processes started", instance.started)
    instance.close()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("reliability-dbs"), pg_server)
    yield dbs
    dbs.close()


@pytest.fixture(scope="session")
def rig(
    sandbox_server: SandboxServer,
    local_aws: LocalAws,
    aws_proxy: AwsProxy,
    databases: Databases,
    launcher: Launcher,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServicesRig]:
    root: Path = tmp_path_factory.mktemp("reliability")
    instance = ServicesRig(
        sandbox_server, local_aws.endpoint_url, aws_proxy, databases, launcher, root
    )
    yield instance
    figures.add("invariant samples taken by the watcher", instance.watcher.samples)
    figures.add("watcher samples skipped (raced a write)", instance.watcher.skipped)


# The longest tests of this suite, started first so that xdist spreads them over its
# workers instead of leaving one of them for last (order only; nothing else changes).
_LONGEST = (
    "test_engine_keeps_i1_to_i4_under_random_operations",
    "test_soak",
    "test_no_secret_or_token_anywhere",
    "test_crash_then_restart_keeps_every_invariant",
    "test_faults_aimed_at_one_credential_each_side_by_side",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = getattr(item, "originalname", item.name)
        return _LONGEST.index(name) if name in _LONGEST and _ours(item) else len(_LONGEST)

    items.sort(key=rank)  # stable: everything else keeps its order


def _ours(item: pytest.Item) -> bool:
    return Path(str(item.fspath)).parent == Path(__file__).parent


class _XdistFigures:
    """In the controller: tell workers a summary will be printed here, and gather theirs."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["reliability_summary"] = "controller"

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        text = getattr(node, "workeroutput", {}).get("reliability_figures")
        if text:
            figures.merge(text)


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if manager.hasplugin("xdist") and not manager.has_plugin("reliability-xdist-figures"):
        manager.register(_XdistFigures(), "reliability-xdist-figures")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is None:
        return
    text = figures.export()
    workeroutput["reliability_figures"] = text
    workerinput = getattr(session.config, "workerinput", {})
    if workerinput.get("reliability_summary") != "controller":
        _last_worker_prints(workerinput, text)


def _last_worker_prints(workerinput: dict[str, Any], text: str) -> None:
    """The controller did not load this conftest (a whole-suite run: it only loads the
    top-level ones), so the last worker to finish prints the merged summary to stderr,
    which xdist workers share with the controller's terminal."""
    run = str(workerinput.get("testrunuid", "run"))
    count = int(workerinput.get("workercount", 1))
    folder = Path(tempfile.gettempdir()) / f"rotator-reliability-{run}"
    folder.mkdir(exist_ok=True)
    (folder / f"{workerinput.get('workerid', 'gw')}.json").write_text(text)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        parts = sorted(folder.glob("*.json"))
        if len(parts) < count:
            return
        for part in parts:
            if part.read_text() != text:
                figures.merge(part.read_text())
        lines = figures.summary_lines()
        if lines:
            banner = " reliability ".center(80, "=")
            os.write(2, ("\n" + "\n".join([banner, *lines]) + "\n").encode())
        shutil.rmtree(folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = figures.summary_lines()
    if lines:
        terminalreporter.section("reliability")
        for line in lines:
            terminalreporter.write_line(line)
