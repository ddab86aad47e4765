"""What every command shares: the settings (loaded on first use), the app, the actor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from rotator.cli import startup

if TYPE_CHECKING:
    from rotator.adapters.db.store import Store
    from rotator.app import App
    from rotator.config import Settings
    from rotator.observe.notify import Deliverer


class Ctx:
    def __init__(self, config_path: str | None, log_level: str, log_format: str) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None
        self.claimed_actor: str | None = None  # --actor: recorded as claimed, never verified

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from rotator import config  # pydantic: loaded when a command needs it

            self._settings = config.load(self.config_path)
        return self._settings

    @contextmanager
    def app(self, *, notify: bool = False) -> Iterator[App]:
        """The composition root's App; with `notify`, the webhooks owed (the outbox) are sent
        before the command exits; any that fail stay owed, for the daemon or the next command."""
        from rotator import app as app_mod

        # The verified identity (AWS caller ARN, OS user) is asked for in the background.
        built = app_mod.build(self.settings, verified_identity=True)
        built.store.audit.prefetch()  # an audit key in AWS is read while the command works
        startup.settle()  # set up: the garbage collector resumes
        sender: Deliverer | None = None
        try:
            if notify and self.settings.notifications.webhooks:
                sender = app_mod.deliverer(self.settings, built.store.engine)
            yield built
        finally:
            try:
                if sender is not None:
                    sender.flush()
                    sender.close()
            finally:
                built.close()

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The state database alone, for commands that only read it."""
        from rotator import app as app_mod

        opened = app_mod.read_store(self.settings)
        startup.settle()
        try:
            yield opened
        finally:
            opened.engine.dispose()


pass_ctx = click.make_pass_decorator(Ctx)


def actor() -> str:
    """Who the audit trail records as the CLI actor: `--actor` as given, else the OS user of
    the process's uid (never LOGNAME). Either way it is a claim; the verified identity
    (AWS caller, OS user) is recorded beside it by the store."""
    context = click.get_current_context(silent=True)
    obj = context.find_object(Ctx) if context is not None else None
    if obj is not None and obj.claimed_actor:
        return obj.claimed_actor
    from rotator.app import local_user

    return "cli:" + local_user().removeprefix("os:").split("(", 1)[0]
