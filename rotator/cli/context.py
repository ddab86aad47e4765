"""What every command shares: the settings (loaded on first use), the app, the actor."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rotator.adapters.db.store import Store
    from rotator.app import App
    from rotator.config import Settings
    from rotator.notify import Deliverer


class Ctx:
    def __init__(self, config_path: str | None, log_level: str, log_format: str) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

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

        built = app_mod.build(self.settings)
        sender: Deliverer | None = None
        try:
            if notify and self.settings.notifications.webhooks:
                from rotator.notify import deliverer

                sender = deliverer(self.settings, built.store.engine)
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

        opened = app_mod.open_store(self.settings)
        try:
            yield opened
        finally:
            opened.engine.dispose()


pass_ctx = click.make_pass_decorator(Ctx)


def actor() -> str:
    """Who the audit trail records for a CLI action."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"
