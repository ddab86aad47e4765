"""Which Adobe secret AWSCURRENT's value is, by construction only (I12).

A binding recorded for AWSCURRENT's version (rotator promoted it, or an operator adopted
it), or for an earlier version holding the same plaintext, is proof at no cost. There is
no other proof: what rotator sees (the AWS value's uuid, Adobe's usage times) is turned
into a suggestion for a person (`unknown`), never into a delete.
"""

from __future__ import annotations

from rotator.domain.identity import Identity, by_binding, suggestion
from rotator.domain.model import AdobeSecret
from rotator.engine.context import StepContext


def known_current(step: StepContext) -> Identity | None:
    """The binding for AWSCURRENT's version, if rotator has one: recorded for that version,
    or for an earlier one whose client secret is the same plaintext (a hand edit of the
    JSON around it keeps the binding; a different secret pasted there voids it)."""
    current = step.current()
    row = step.store.credential_rows().get(step.cfg.name)
    if row is None or not row.current_uuid or not row.current_version:
        return None
    same = row.current_version != current.version_id and _same_value(step, row.current_version)
    return by_binding(current.version_id, row.current_uuid, row.current_version, same_value=same)


def same_value(step: StepContext, version_id: str | None) -> bool:
    """Whether AWS version `version_id` holds AWSCURRENT's client secret (same plaintext)."""
    current = step.current()
    if version_id is None:
        return False
    if version_id == current.version_id:
        return True
    return _same_value(step, version_id)


def _same_value(step: StepContext, version_id: str) -> bool:
    other = step.aws.read(step.cfg.secret_id, version_id=version_id)
    if other is None:
        return False
    mine = step.current().value.get(step.secret_key)
    theirs = other.value.get(step.secret_key)
    return isinstance(mine, str) and bool(mine) and mine == theirs


def unknown(step: StepContext, listed: list[AdobeSecret], why: str) -> str:
    """The needs_attention sentence when a delete would need to know AWSCURRENT's secret."""
    return suggestion(
        why=why,
        name=step.cfg.name,
        secret_id=step.cfg.secret_id,
        claimed=step.current_uuid(),
        listed=listed,
    )
