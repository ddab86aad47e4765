"""What every command shares: the settings (loaded on first use), the app, the actor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from rotator.cli import startup

if TYPE_CHECKING:
    from rotator.adapters.db.store import Store
    from rotator.adapters.identity import IdentityProbe
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
        self._probe: IdentityProbe | None = None

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
        built.store.audit.identity = self.identity_probe(built.aws.session).result
        built.store.audit.prefetch()  # an audit key in AWS is read while the command works
        startup.settle()  # set up: the garbage collector resumes
        sender: Deliverer | None = None
        try:
            if notify and self.settings.notifications.webhooks:
                from rotator.observe.notify import deliverer

                sender = deliverer(self.settings, built.store.engine)
            yield built
        finally:
            try:
                if sender is not None:
                    sender.flush()
                    sender.close()
            finally:
                built.close()

    def identity_probe(self, session: Any = None) -> IdentityProbe:
        """The verified identity (AWS caller ARN, OS user), asked for once per command, in
        the background (through `session`, the app's botocore session, when given)."""
        if self._probe is None:
            from rotator.adapters.identity import IdentityProbe

            aws = self.settings.aws
            self._probe = IdentityProbe(aws.region, aws.endpoint_url, session=session)
        return self._probe

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The state database alone, for commands that only read it."""
        from rotator import app as app_mod

        opened = app_mod.open_store(self.settings)
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
    from rotator.adapters.identity import os_user

    return "cli:" + os_user().removeprefix("os:").split("(", 1)[0]
