"""The sandbox's world as a JSON-ready document, and back (``--state FILE``, ``persistence.py``).

Only the durable part is kept: orgs, credentials, secrets (values included), live tokens
and retired values. Faults, holds and counters are about one test run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, cast

from rotator.devkit.sandbox.model import (
    JSON,
    PERSIST_FORMAT,
    Credential,
    Org,
    RetiredSecret,
    Secret,
    Token,
)
from rotator.devkit.sandbox.world import World

__all__ = ["dump_world", "load_world"]


def dump_world(world: World) -> JSON:
    """The durable part of the world (secret values included) as JSON-ready data.

    Faults, holds and counters are about one test run and are not kept.
    """
    with world.lock:
        now = world.now_ms()
        return {
            "format": PERSIST_FORMAT,
            "clock_offset_s": world.clock_offset_s,
            "orgs": [asdict(org) for org in world.orgs.values()],
            "credentials": [
                {
                    **{k: v for k, v in asdict(c).items() if k != "secrets"},
                    "secrets": [
                        {
                            "uuid": s.uuid,
                            "value": s.value,
                            "created_at": s.created_at,
                            "accepted_at": s.accepted_at,
                            "usages": dict(s.usages),
                            "pending": [list(p) for p in s.pending],
                        }
                        for s in c.secrets.values()
                    ],
                }
                for c in world.credentials.values()
            ],
            "tokens": [
                {"value": value, **asdict(t), "scopes": sorted(t.scopes)}
                for value, t in world.tokens.items()
                if t.status(now) == "active"
            ],
            "retired": [asdict(r) for r in world.retired],
        }


def load_world(world: World, document: Mapping[str, Any]) -> None:
    """Replace the world with a saved one (see :func:`dump_world`)."""
    if document.get("format") != PERSIST_FORMAT:
        raise ValueError(f"unsupported sandbox state format {document.get('format')!r}")
    with world.lock:
        world.clear()
        world.clock_offset_s = float(document.get("clock_offset_s", 0.0))
        for raw in document.get("orgs", []):
            org = Org(**raw)
            world.orgs[org.org_id] = org
        for raw in document.get("credentials", []):
            fields_ = {k: v for k, v in raw.items() if k != "secrets"}
            credential = Credential(
                **{
                    **fields_,
                    "scopes": tuple(fields_["scopes"]),
                    "meta_scopes": tuple(fields_["meta_scopes"]),
                }
            )
            for s in raw.get("secrets", []):
                secret = Secret(
                    uuid=s["uuid"],
                    value=s["value"],
                    created_at=s["created_at"],
                    accepted_at=s["accepted_at"],
                    usages={str(k): int(v) for k, v in s.get("usages", {}).items()},
                    pending=[cast(tuple[int, int, str], tuple(p)) for p in s.get("pending", [])],
                )
                credential.secrets[secret.uuid] = secret
            world.credentials[credential.credential_id] = credential
            world.by_client_id[credential.client_id] = credential
        for raw in document.get("tokens", []):
            value = raw["value"]
            token_fields = {k: v for k, v in raw.items() if k != "value"}
            world.tokens[value] = Token(
                **{**token_fields, "scopes": frozenset(token_fields["scopes"])}
            )
        world.retired = [RetiredSecret(**r) for r in document.get("retired", [])]
        world.org_ids = itertools.count(_next_id(world.orgs, 100001))
        world.credential_ids = itertools.count(_next_id(world.credentials, 300001))
        world.touch()


def _next_id(existing: Iterable[str], floor: int) -> int:
    numeric = [int(i) for i in existing if i.isdigit()]
    return max([floor - 1, *numeric]) + 1
