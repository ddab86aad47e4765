"""Every kind of audit event rotator writes, by name (the audit trail's vocabulary).

A `StrEnum`, so each member is the very string stored in `events.kind` (and compares
equal to it): the names are declared here once, the stored strings never change.
"""

from __future__ import annotations

import enum

from rotator.domain.model import ENDINGS, State


class EventKind(enum.StrEnum):
    """What an audit event records. Grouped by who writes it."""

    # --- a rotation's own steps (the engine, under the lease) ----------------------------
    PLANNED = "planned"
    STRAYS_WAIT = "strays_wait"  # strays seen, not yet quiet long enough to delete
    STRAYS_CONTRADICTED = "strays_contradicted"  # a fresh answer contradicted what was seen
    ADDING = "adding"  # an add's intent recorded, right before it is sent
    TOKEN_RENEWED = "token_renewed"  # noqa: S105 (an event kind): the staged version lost its secret
    STAGED = "staged"
    VERIFY_PENDING = "verify_pending"  # Adobe does not accept the new secret yet
    VERIFIED = "verified"
    VERIFICATION_FAILED = "verification_failed"
    PROMOTED = "promoted"
    DRAINING = "draining"
    POLL = "poll"  # one look at the old secret's use while draining
    POLL_CONTRADICTED = "poll_contradicted"
    RETIRING = "retiring"
    GONE = "gone"  # answers agree the old secret is gone: retire without a delete
    QUIET = "quiet"  # the old secret was quiet long enough: retire it
    RECHECK_STALE = "recheck_stale"
    RECHECK_SAW_USE = "recheck_saw_use"
    RECHECK_ABSENT = "recheck_absent"
    RETIRE_CONFIRM = "retire_confirm"
    COMPLETED = "completed"
    ROLLBACK_CONFIRM = "rollback_confirm"
    ROLLED_BACK = "rolled_back"
    RETRY = "retry"  # a transient failure: the same step again, later
    ERROR = "error"  # a permanent failure: roll back or ask a person
    NEEDS_ATTENTION = "needs_attention"
    UNCONFIGURED = "unconfigured"  # the credential left the configuration: parked
    CANCEL_ROLLBACK = "cancel_rollback"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # ended for an emergency (also written by the store)
    # --- written by the store for operators and the daemon --------------------------------
    STARTED = "started"
    EMERGENCY_REQUESTED = "emergency_requested"
    CANCEL_REQUESTED = "cancel_requested"
    RESUMED = "resumed"  # a hold lifted
    ADOPTED = "adopted"  # an operator bound AWSCURRENT to an Adobe uuid
    REFUSED = "refused"  # a rotation of a credential whose row no event backs
    CONFIG_CHANGED = "config_changed"
    SURVEYED = "surveyed"
    CREDENTIAL_UPDATED = "credential_updated"


# The notices a webhook receiver may subscribe to; every other event kind sends nothing.
# A notice is named by the event (`started`) or by the state the rotation entered.
NOTICES: tuple[str, ...] = (
    EventKind.STARTED.value,
    *(state.value for state in ENDINGS),
    State.NEEDS_ATTENTION.value,
)
