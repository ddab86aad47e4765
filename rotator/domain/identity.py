"""Which Adobe secret AWSCURRENT's value is: known by construction, never inferred (I12).

The uuid recorded next to the secret in the AWS value is only a claim: a hand edit can
put secret B beside the uuid of secret A, and deleting "every other secret" on that claim
deletes the live one. Usage timestamps are no proof either: a consumer busy on the other
secret, a `null` or older answer, or Adobe's clock skewed against ours makes a test
token's use look like another secret's (issue 26, findings 1 and 2). So rotator knows
which secret AWSCURRENT holds only when it made that so itself or a person said so:

- a **binding**: the uuid rotator recorded when it promoted a version, or the uuid a person
  named with `rotator adopt`, for that AWS version; it follows the *value*: a later AWS
  version whose client secret is the same plaintext holds the same Adobe secret (a benign
  hand edit of the JSON keeps it);
- the rotation's **own version**: AWSCURRENT holds the plaintext that came back from this
  rotation's own add, under the uuid that came back with it.

What rotator can see (the uuid the AWS value claims, the last uses Adobe lists) is only a
*suggestion*: `suggestion` words it for a person, with the exact command that records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rotator.domain.model import AdobeSecret

BINDING = "binding"  # recorded for this AWS version (promotion or adopt), or for its value
OWN_VERSION = "own version"  # AWSCURRENT holds the value this rotation's own add returned


@dataclass(frozen=True)
class Identity:
    """AWSCURRENT version `version_id` holds Adobe secret `uuid`, and how that is known."""

    uuid: str
    version_id: str
    proof: str


def by_binding(
    version_id: str,
    bound_uuid: str | None,
    bound_version: str | None,
    *,
    same_value: bool = False,
) -> Identity | None:
    """A binding counts for the version it was recorded for, or for a later version that
    holds the same client secret (`same_value`: AWS versions are immutable, so a hand
    edit makes a new version; if its plaintext is the bound one, so is its Adobe secret)."""
    if bound_uuid and bound_version and (bound_version == version_id or same_value):
        return Identity(bound_uuid, version_id, BINDING)
    return None


def suggestion(
    *,
    why: str,
    name: str,
    secret_id: str,
    claimed: str | None,
    listed: Sequence[AdobeSecret],
) -> str:
    """A sentence for a person: what rotator saw, and the command that records the truth.

    Never a license to delete: the observation only helps a person check.
    """
    seen = "; ".join(
        f"{s.uuid} (last used {s.last_used_at.isoformat() if s.last_used_at else 'never'})"
        for s in sorted(listed, key=lambda s: s.uuid)
    )
    uuids = {s.uuid for s in listed}
    guess = claimed if claimed in uuids else "<uuid>"
    claim = f"records uuid {claimed}" if claimed else "records no uuid"
    return (
        f"{why}: rotator does not know which Adobe secret AWSCURRENT of {secret_id!r} holds "
        f"(no binding for its AWS version) and does not guess from usage times. "
        f"Seen: Adobe lists {seen or 'nothing'}; the AWS value {claim} (only a claim). "
        f"Check which secret AWSCURRENT's value is, then run "
        f"`rotator adopt {name} --uuid {guess}`"
    )
