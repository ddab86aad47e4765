"""Error kinds the engine decides on. Adapters raise these; messages never carry secret values."""

from __future__ import annotations


class RotatorError(Exception):
    """Base of every error rotator raises on purpose; its text is safe to show and log."""

    exit_code = 1


class ConfigError(RotatorError):
    """The configuration or the command line is wrong. Nothing was changed."""

    exit_code = 2


class InvariantError(RotatorError):
    """Something rotator's own code guarantees did not hold (a bug, or a row edited outside
    rotator): an explicit check, so that it holds under `python -O` too, unlike `assert`."""


class StepError(RotatorError):
    """A call to Adobe or AWS failed; names the credential and the step, never a secret."""

    transient = False
    # Deletes the failing step made before it failed, by the event detail key that records
    # them ("strays_deleted", "given_back"): its event says so (the auditor's report reads it).
    deleted: dict[str, list[str]] = {}  # noqa: RUF012 - replaced per instance, never mutated
    # Whether the failed call may have taken effect anyway (a timeout after sending, a 5xx,
    # no answer at all): what an add's orphan search must assume. False only where the
    # provider answered that it did nothing (a 4xx, a 429, a connection never made).
    maybe_applied = True

    def __init__(self, message: str, *, credential: str = "", step: str = "") -> None:
        self.credential = credential
        self.step = step
        self.detail = message
        where = " ".join(p for p in (credential and f"credential {credential!r}", step) if p)
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, *, credential: str, step: str) -> StepError:
        """The same error, told where it happened (adapters do not know the step)."""
        if self.credential and self.step:
            return self
        clone = type(self).__new__(type(self))
        StepError.__init__(
            clone, self.detail, credential=self.credential or credential, step=self.step or step
        )
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in clone.__dict__})
        return clone


class TransientError(StepError):
    """Worth trying again later: throttling, 5xx, timeouts, dropped connections."""

    transient = True
    retry_after: float | None = None  # seconds the provider asked us to wait, if it said


class PermanentError(StepError):
    """Trying again will not help until a person changes something."""

    maybe_applied = False  # the provider answered with a refusal


class InvalidClient(PermanentError):
    """Adobe refused a client id / secret pair (400 invalid_client)."""


class AccessDenied(PermanentError):
    """Adobe answered 401/403: token or API key refused, or a scope is missing."""


class NotFound(PermanentError):
    """Adobe or AWS does not know the credential, secret or version."""


class SecretLimit(PermanentError):
    """Adobe refused a third client secret."""


class LeaseLost(RotatorError):
    """Another worker took this rotation over (its fence moved on): stop at once, write nothing."""


class NeedsAttention(RotatorError):
    """The rotation cannot go on safely by itself; the message tells a person what to do."""

    exit_code = 3


class RequestRefused(RotatorError):
    """An operator request that would break a guarantee (say, cancelling an emergency that
    has promoted: the leaked secret must still be deleted). Nothing was changed."""
