"""Fixtures of the reliability suite, and the summary it prints at the end of a session.

Long variants: ROTATOR_LONG=1 (a longer soak, more hypothesis examples, every crash point
twice as many times is not needed: the matrix is exhaustive already). ROTATOR_EXEC=1 runs
every rotator process from the installed console script instead of the fork server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.localaws import LocalAws
from rotator.sandbox.server import SandboxServer
from tests.reliability import figures
from tests.reliability.awsproxy import AwsProxy
from tests.reliability.harness import Databases, Rig
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
) -> Iterator[Rig]:
    root: Path = tmp_path_factory.mktemp("reliability")
    instance = Rig(sandbox_server, local_aws.endpoint_url, aws_proxy, databases, launcher, root)
    yield instance
    figures.add("invariant samples taken by the watcher", instance.watcher.samples)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    table = figures.matrix_table()
    if not table and not figures.FIGURES:
        return
    terminalreporter.section("reliability")
    if table:
        terminalreporter.write_line("crash matrix (SIGKILL at each point, then restart):")
        for line in table:
            terminalreporter.write_line("  " + line)
    for name, value in sorted(figures.FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    for name, text in sorted(figures.NOTES.items()):
        terminalreporter.write_line(f"{name}: {text}")
