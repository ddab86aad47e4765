"""The pure audit chain: links, checkpoints, the walk's verdicts and the replay."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from rotator.audit.chain import GENESIS, KEYED, LEGACY, PLAIN, Checkpoint, snapshot
from rotator.audit.checkpoints import CheckpointSink
from rotator.audit.signing import Keyring
from rotator.audit.verify import ChainWalk

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def chain(keyring: Keyring, n: int = 4) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS
    scheme, key_id = keyring.scheme()
    for seq in range(1, n + 1):
        row: dict[str, Any] = {
            "id": seq + 100,
            "seq": seq,
            "rotation_id": 7,
            "credential": "analytics",
            "at": T0 + timedelta(minutes=seq),
            "actor": "w",
            "actor_verified": "aws:arn:x os:w(uid 1)",
            "kind": "started" if seq == 1 else "step",
            "from_state": "planned",
            "to_state": "creating",
            "detail": {"n": seq},
            "state": {"rotation": {"state": "creating"}, "credential": {"current_uuid": "u1"}},
            "scheme": scheme,
            "key_id": key_id,
            "prev_hash": prev,
        }
        row["hash"] = prev = keyring.link(prev, row)
        rows.append(row)
    return rows


def walk(keyring: Keyring, rows: list[dict[str, Any]], cp: Checkpoint | None = None) -> Any:
    w = ChainWalk(keyring, cp)
    for row in rows:
        w.feed(row)
    last = rows[-1] if rows else None
    return w.finish(
        last["seq"] if last else 0, last["hash"] if last else GENESIS, last["id"] if last else None
    )


KEY = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")


def test_a_keyed_chain_verifies_and_says_what_it_proves() -> None:
    rows = chain(KEY)
    result = walk(KEY, rows)
    assert result.ok and result.keyed and result.checked == 4
    assert result.schemes == {KEYED: 4} and result.keys_used == {"k1"}
    assert "without --checkpoint" in result.scope


def test_the_mac_depends_on_the_key_and_on_every_field() -> None:
    row = chain(KEY, 1)[0]
    other = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
    assert other.link(GENESIS, row) != row["hash"]
    for field, value in [("seq", 9), ("actor_verified", "x"), ("state", {}), ("detail", {})]:
        assert KEY.link(GENESIS, {**row, field: value}) != row["hash"], field
    with pytest.raises(KeyError):  # a key id that is not configured cannot be checked
        KEY.link(GENESIS, {**row, "key_id": "k2"})


def test_a_downgrade_to_unkeyed_links_is_a_rewrite() -> None:
    rows = chain(KEY, 2)
    plain = Keyring()
    forged = {**rows[1], "scheme": PLAIN, "key_id": None, "actor": "mallory"}
    forged["hash"] = plain.link(rows[0]["hash"], forged)
    result = walk(KEY, [rows[0], forged])
    assert not result.ok and "linked with sha256 after hmac-sha256" in result.problems[0]


def test_a_checkpoint_catches_a_shortened_chain_and_a_rewritten_one() -> None:
    rows = chain(KEY)
    cp = Checkpoint(3, rows[2]["id"], rows[2]["hash"], KEYED, "k1", T0.isoformat())
    assert walk(KEY, rows, cp).ok
    assert "before the checkpoint" in walk(KEY, rows[:2], cp).problems[0]
    other = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
    rewritten = chain(other)
    problems = walk(other, rewritten, cp).problems
    assert problems and "differs from the checkpoint" in problems[0]


def test_a_gap_in_the_sequence_is_named() -> None:
    rows = chain(Keyring(), 3)
    rows[2]["seq"] = 4
    rows[2]["hash"] = Keyring().link(rows[1]["hash"], rows[2])
    assert "sequence 4 follows 2" in walk(Keyring(), rows).problems[0]


def test_unkeyed_says_so() -> None:
    result = walk(Keyring(), chain(Keyring()))
    assert result.ok and not result.keyed and result.scope.startswith("UNKEYED")


def test_replay_names_the_fields_that_differ() -> None:
    w = ChainWalk(KEY, None)
    for row in chain(KEY, 1):
        w.feed(row)
    w.replay(
        {7: {"state": "completed"}, 8: {"state": "planned"}},
        {"analytics": {"current_uuid": "u1"}, "other": {"current_uuid": "u9"}},
    )
    assert w.result.problems == [
        "rotation 7: state differ from its newest audit event (edited outside rotator)",
        "rotation 8 has no audit event (inserted outside rotator)",
        "credential other: current_uuid set with no audit event (edited outside rotator)",
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"seq": 1, "event_id": 2, "mac": "%s"}' % ("a" * 64),
        '{"event": "audit checkpoint", "seq": 1, "event_id": 2, "mac": "%s"}\n'
        '{"event": "rotation step"}\n' % ("a" * 64),
    ],
)
def test_checkpoints_parse_from_json_or_log_lines(text: str) -> None:
    assert Checkpoint.parse(text).seq == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ('{"seq": 1}', "integer seq and event_id"),
        ('{"seq": 1, "event_id": 1, "mac": "xyz"}', "64 hex digits"),
        ("not json\nat all", "line 1 is not JSON"),
        ('{"event": "x"}\n{"event": "y"}', "no checkpoint"),
    ],
)
def test_bad_checkpoints_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Checkpoint.parse(text)


def test_the_newest_checkpoint_in_a_file_wins(tmp_path: Path) -> None:
    sink = CheckpointSink(str(tmp_path / "cp.jsonl"))
    with structlog.testing.capture_logs() as logs:
        for seq in (1, 2):
            sink(Checkpoint(seq, seq, f"{seq}" * 64, KEYED, "k1", T0.isoformat()))
    assert [e["event"] for e in logs] == ["audit checkpoint"] * 2
    assert logs[1]["seq"] == 2 and logs[1]["mac"] == "2" * 64
    lines = (tmp_path / "cp.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    assert Checkpoint.parse("\n".join(lines)).seq == 2


def test_a_sink_that_cannot_write_does_not_raise(tmp_path: Path) -> None:
    sink = CheckpointSink(str(tmp_path / "missing-dir" / "cp.jsonl"))
    with structlog.testing.capture_logs() as logs:
        sink(Checkpoint(1, 1, "a" * 64, PLAIN, None, T0.isoformat()))
    assert logs[-1]["event"] == "audit checkpoint not written"


def test_snapshots_are_json_values() -> None:
    assert snapshot({"a": T0, "b": None, "c": "x"}, ["a", "b", "missing"]) == {
        "a": T0.isoformat(),
        "b": None,
    }
    assert snapshot(None, ["a"]) is None
    assert LEGACY == "sha256-v1"


def test_a_broken_chain_never_claims_what_an_intact_one_proves() -> None:
    rows = chain(KEY)
    cp = Checkpoint(3, rows[2]["id"], rows[2]["hash"], KEYED, "k1", T0.isoformat())
    rows[1] = {**rows[1], "actor": "mallory"}
    result = walk(KEY, rows, cp)
    assert not result.ok
    assert result.scope == f"not proven: {result.problems[0]}"
    assert "was changed, removed or re-ordered" not in result.scope


def test_under_a_configured_key_an_unkeyed_head_is_a_rewrite() -> None:
    plain = chain(Keyring(), 3)
    assert "not keyed" in walk(KEY, plain).problems[0]
    # 0.1 / unkeyed events before the first keyed one stay fine
    head = {**chain(KEY, 4)[3], "prev_hash": plain[2]["hash"]}
    head["hash"] = KEY.link(plain[2]["hash"], head)
    assert walk(KEY, [*plain, head]).ok


def test_replay_ignores_fields_an_older_event_did_not_record() -> None:
    w = ChainWalk(KEY, None)
    for row in chain(KEY, 1):
        w.feed(row)
    w.replay(
        {7: {"state": "creating", "request_token": "t"}}, {"analytics": {"current_uuid": "u1"}}
    )
    assert w.result.ok, w.result.problems


def test_a_writer_with_public_keys_but_no_signing_key_refuses_to_write() -> None:
    """Only public keys (an auditor's setup): reading and checking work, writing an event
    is a one-line configuration error instead of a silently unsigned event."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from rotator.audit.signing import PublicKey, Signer
    from rotator.domain.errors import ConfigError

    private = Ed25519PrivateKey.generate()
    public = {"w": PublicKey("w", private.public_key())}
    reader = Keyring(public=public)
    with pytest.raises(ConfigError, match=r"signing_key is not"):
        reader.scheme()
    assert reader.check({**chain(Keyring(), 1)[0], "id": 1}) is None  # still checks
    assert Keyring(public=public, signer=Signer("w", private)).scheme() == ("ed25519", "w")
