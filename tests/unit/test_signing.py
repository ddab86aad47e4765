"""Ed25519-signed audit events (issue 27): verification needs only public keys, a writer
can only speak as itself and within its role, key rotation keeps old events verifiable,
and the HMAC part of a migrated chain stays verifiable."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.audit import keys
from rotator.audit.chain import GENESIS, KEYED, SIGNED
from rotator.audit.signing import Keyring, PublicKey, Signer
from rotator.audit.verify import ChainWalk, trail_problems
from rotator.domain.errors import ConfigError

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _writer(tmp_path: Path, key_id: str, *roles: str) -> tuple[Signer, PublicKey]:
    path = tmp_path / f"{key_id}.key"
    public = keys.generate_signing_key(path)
    ring = keys.load_keyring(_ring(tmp_path, keys.keyring_entry(key_id, public, roles)))
    signer = keys.load_signer(path, ring)
    return signer, ring[key_id]


def _ring(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"ring-{secrets.token_hex(4)}.toml"
    path.write_text(text)
    return path


def _event(seq: int, kind: str = "step", **extra: Any) -> dict[str, Any]:
    return {
        "id": seq + 100,
        "seq": seq,
        "rotation_id": 7,
        "credential": "analytics",
        "at": T0 + timedelta(minutes=seq),
        "actor": "w",
        "actor_verified": None,
        "kind": kind,
        "from_state": "planned",
        "to_state": "creating",
        "detail": {},
        "state": {"rotation": {"state": "creating"}, "credential": None},
        **extra,
    }


def _append(rows: list[dict[str, Any]], ring: Keyring, row: dict[str, Any]) -> None:
    prev = rows[-1]["hash"] if rows else GENESIS
    row["scheme"], row["key_id"] = ring.scheme()
    row["prev_hash"] = prev
    row["hash"] = ring.link(prev, row)
    row["signature"] = ring.sign(row["hash"])
    rows.append(row)


def _walk(ring: Keyring, rows: list[dict[str, Any]]) -> Any:
    w = ChainWalk(ring, None)
    for row in rows:
        w.feed(row)
    result = w.finish(rows[-1]["seq"], rows[-1]["hash"], rows[-1]["id"])
    w.replay({7: {"state": "creating"}}, {})
    return result


@pytest.fixture
def two(tmp_path: Path) -> dict[str, Any]:
    """A daemon's key and an operator's key, and the public keyring listing both."""
    daemon, daemon_pub = _writer(tmp_path, "daemon-1", "daemon")
    operator, operator_pub = _writer(tmp_path, "ops-alice", "operator")
    public = {"daemon-1": daemon_pub, "ops-alice": operator_pub}
    return {
        "daemon": Keyring(public=public, signer=daemon),
        "operator": Keyring(public=public, signer=operator),
        "auditor": Keyring(public=public),
    }


def test_a_signed_chain_verifies_with_public_keys_only(two: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    _append(rows, two["operator"], _event(1, "started", detail={"trigger": "manual"}))
    _append(rows, two["daemon"], _event(2))
    result = _walk(two["auditor"], rows)
    assert result.ok, result.problems
    assert result.schemes == {SIGNED: 2} and result.keys_used == {"daemon-1", "ops-alice"}
    assert result.signed_from == (1, 101) and result.scope.startswith("SIGNED from seq 1")
    assert two["auditor"].sign(rows[0]["hash"]) is None  # an auditor cannot sign at all


def test_one_writers_key_cannot_sign_as_another(two: dict[str, Any]) -> None:
    """The daemon's key signs an event that names the operator's key id: caught."""
    rows: list[dict[str, Any]] = []
    _append(rows, two["operator"], _event(1, "started", detail={"trigger": "manual"}))
    forged = _event(2, "emergency_requested")
    _append(rows, two["daemon"], forged)
    forged["key_id"] = "ops-alice"  # speak as the operator...
    forged["hash"] = two["auditor"].link(forged["prev_hash"], forged)
    forged["signature"] = two["daemon"].sign(forged["hash"])  # ...with the daemon's key
    problems = _walk(two["auditor"], rows).problems
    assert problems and "event 102: its signature is not key 'ops-alice'" in problems[0]


def test_a_daemon_key_may_not_request(two: dict[str, Any]) -> None:
    """Signed as itself but out of its role: a request, a flag raised, a hold lifted."""
    rows: list[dict[str, Any]] = []
    _append(rows, two["operator"], _event(1, "started", detail={"trigger": "manual"}))
    raised = {"rotation": {"state": "creating", "emergency_requested": True}, "credential": None}
    _append(rows, two["daemon"], _event(2, "emergency_requested", state=raised))
    problems = _walk(two["auditor"], rows).problems
    assert any("'emergency_requested' is an operator's request" in p for p in problems)
    assert any("emergency_requested raised by event 102" in p for p in problems)
    # The engine's own check on the claim path sees the same, from that rotation alone.
    assert any("operator's request" in p for p in trail_problems(7, rows, two["auditor"]))


def test_a_forged_unsigned_event_after_the_signed_part_is_refused(two: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    _append(rows, two["operator"], _event(1, "started", detail={"trigger": "manual"}))
    _append(rows, Keyring(), _event(2))  # a writer without a key: plain SHA-256
    problems = _walk(two["auditor"], rows).problems
    assert problems and "linked with sha256 after ed25519" in problems[0]


def test_a_retired_key_verifies_its_old_events_and_signs_no_new_one(
    tmp_path: Path, two: dict[str, Any]
) -> None:
    rows: list[dict[str, Any]] = []
    _append(rows, two["operator"], _event(1, "started", detail={"trigger": "manual"}))
    listed = two["auditor"].public["ops-alice"]
    retired = dict(two["auditor"].public)
    retired["ops-alice"] = PublicKey(
        "ops-alice", listed.key, listed.roles, None, T0 + timedelta(minutes=1, seconds=30)
    )
    ring = Keyring(public=retired)
    assert _walk(ring, rows).ok
    _append(rows, Keyring(public=retired, signer=two["operator"].signer), _event(2))
    assert "key 'ops-alice' was not valid at" in _walk(ring, rows).problems[0]


def test_hmac_events_before_the_signed_part_stay_verifiable(two: dict[str, Any]) -> None:
    hmac_key = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
    rows: list[dict[str, Any]] = []
    _append(rows, hmac_key, _event(1, "started", detail={"trigger": "manual"}))
    _append(rows, two["daemon"], _event(2))
    with_hmac = Keyring(hmac_key.keys, public=two["auditor"].public)
    result = _walk(with_hmac, rows)
    assert result.ok and result.schemes == {KEYED: 1, SIGNED: 1} and result.unverified == 0
    assert "SIGNED from seq 2 (event 102)" in result.scope
    public_only = _walk(two["auditor"], rows)  # the HMAC link is taken on trust, and said so
    assert public_only.ok and public_only.unverified == 1
    assert "1 of them unchecked" in public_only.scope
    rows[0]["actor"] = "mallory"  # but with the HMAC key, an edit before the switch shows
    assert "event 101: its content was changed" in _walk(with_hmac, rows).problems[0]


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "w.key"
    keys.generate_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="exists: refusing to overwrite"):
        keys.generate_signing_key(path)


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    _, public = _writer(tmp_path, "w", "daemon")
    path = tmp_path / "w.key"
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=r"accessible by group or others \(mode 0640\)"):
        keys.load_signer(path, {"w": public})


def test_a_private_key_missing_from_the_keyring_is_refused(tmp_path: Path) -> None:
    _writer(tmp_path, "w", "daemon")
    _, other = _writer(tmp_path, "other", "daemon")
    with pytest.raises(ConfigError, match="is not in the \\[audit\\] keyring"):
        keys.load_signer(tmp_path / "w.key", {"other": other})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no"),
        ('[keys.a]\npublic_key = "xx"', "public_key: a public key is base64"),
        ('[keys.a]\npublic_key = "' + "A" * 43 + "=" + '"\nroles = ["root"]', "roles must be"),
        ('[keys.a]\npublic_key = "' + "A" * 43 + "=" + '"\nvalid_from = 2026-01-01', "with a zone"),
        ('[keys.a]\npublic_key = "' + "A" * 43 + "=" + '"\ncolour = 1', "unknown field"),
    ],
)
def test_a_bad_keyring_fails_with_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        keys.load_keyring(_ring(tmp_path, text))


def test_the_keygen_command_makes_a_key_and_lists_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rotator.cli import main

    ring, out = tmp_path / "ring.toml", tmp_path / "d.key"
    argv = ["audit", "keygen", "--out", str(out), "--id", "daemon-1", "--role", "daemon"]
    made = CliRunner().invoke(main, [*argv, "--keyring", str(ring)])
    assert made.exit_code == 0, made.output
    listed = keys.load_keyring(ring)
    assert listed["daemon-1"].roles == frozenset({"daemon"})
    assert keys.load_signer(out, listed).id == "daemon-1"
    again = CliRunner().invoke(main, [*argv, "--keyring", str(ring)])
    assert again.exit_code != 0 and "exists: refusing to overwrite" in again.output
    printed = CliRunner().invoke(main, [*argv[:3], str(tmp_path / "o.key"), "--id", "ops-1"])
    assert printed.exit_code == 0 and '[keys."ops-1"]' in printed.output
    assert 'roles = ["operator"]' in printed.output  # the default role
    bad = CliRunner().invoke(main, [*argv[:5], "bad id!"])
    assert bad.exit_code == 2 and "not a valid key id" in bad.output
