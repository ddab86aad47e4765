"""The auditor's report as data, from a synthetic trail: ages against max_age, deletion
evidence, needs_attention episodes, the period; and its renderings agree with it."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.audit import trail as reporting
from rotator.audit.render import render
from tests.audit_events import Ev

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def rot(state: str, **extra: Any) -> dict[str, Any]:
    base = {"trigger": "scheduled", "state": state, "actor": "rotator", "reason": ""}
    return {**base, "old_uuid": "u-old", "new_uuid": "u-new", **extra}


def cred(uuid: str, created: datetime) -> dict[str, Any]:
    return {"current_uuid": uuid, "secret_created_at": created.isoformat()}


def trail() -> list[Ev]:
    old, new = cred("u-old", T0 - 100 * DAY), cred("u-new", T0 + 10 * DAY)
    promoted = (T0 + 10 * DAY).isoformat()
    evidence = {
        "polled_at": (T0 + 12 * DAY).isoformat(),
        "old_last_used_at": (T0 + 10.5 * DAY).isoformat(),
    }
    return [
        Ev(1, None, T0, "surveyed", None, None, state={"rotation": None, "credential": old}),
        Ev(
            2,
            7,
            T0 + 10 * DAY,
            "started",
            None,
            "planned",
            {"trigger": "scheduled"},
            {"rotation": rot("planned"), "credential": old},
        ),
        Ev(
            3,
            7,
            T0 + 10 * DAY,
            "promoted",
            "verified",
            "promoted",
            {},
            {"rotation": rot("promoted", promoted_at=promoted), "credential": new},
        ),
        Ev(
            4,
            7,
            T0 + 11 * DAY,
            "needs_attention",
            "draining",
            "needs_attention",
            {"why": "old secret still in use"},
            {"rotation": rot("needs_attention", promoted_at=promoted), "credential": new},
        ),
        Ev(
            5,
            7,
            T0 + 12 * DAY,
            "quiet",
            "needs_attention",
            "retiring",
            {},
            {
                "rotation": rot("retiring", promoted_at=promoted, evidence=evidence),
                "credential": new,
            },
        ),
        Ev(
            6,
            7,
            T0 + 12 * DAY,
            "completed",
            "retiring",
            "completed",
            {"deleted": ["u-old"]},
            {
                "rotation": rot(
                    "completed",
                    promoted_at=promoted,
                    evidence=evidence,
                    finished_at=(T0 + 12 * DAY).isoformat(),
                ),
                "credential": new,
            },
        ),
    ]


POLICY = {"analytics": reporting.CredentialPolicy(timedelta(days=90), timedelta(hours=25))}
VERIFIED = {"ok": True, "checked": 6, "scope": "keyed (k1): ...", "replayed_rows": 2}


def build(since: datetime = T0, until: datetime = T0 + 20 * DAY) -> dict[str, Any]:
    return reporting.build(trail(), POLICY, VERIFIED, since=since, until=until, generated_at=until)


def test_the_oldest_age_is_the_old_secret_at_its_promotion_and_it_violates_max_age() -> None:
    (c,) = build()["credentials"]
    assert c["oldest_secret"] == "u-old"
    assert c["oldest_age_days"] == 110.0 and c["max_age_days"] == 90.0
    assert c["violation"] is True
    assert [s["uuid"] for s in c["secrets"]] == ["u-old", "u-new"]
    assert c["secrets"][1]["age_reached_days"] == 10.0 and not c["secrets"][1]["violation"]


def test_a_period_after_the_old_secret_retired_has_no_violation() -> None:
    (c,) = build(since=T0 + 15 * DAY)["credentials"]
    assert c["oldest_secret"] == "u-new" and c["violation"] is False
    assert c["rotations"] == [] and c["deletions"] == []


def test_each_deletion_carries_its_evidence() -> None:
    (c,) = build()["credentials"]
    (d,) = c["deletions"]
    assert d["uuid"] == "u-old" and d["was_old_secret"] and not d["emergency"]
    assert d["last_use_seen"] == (T0 + 10.5 * DAY).isoformat()
    assert d["quiet_for_seconds"] == 1.5 * 86400  # deleted 1.5 days after its last use
    assert d["quiet_period_seconds"] == 25 * 3600


def test_a_needs_attention_episode_and_how_it_ended() -> None:
    (c,) = build()["credentials"]
    assert c["attention"] == [
        {
            "rotation_id": 7,
            "started_at": (T0 + 11 * DAY).isoformat(),
            "why": "old secret still in use",
            "ended_at": (T0 + 12 * DAY).isoformat(),
            "ended_as": "retiring",
            "ended_by": "rotator",
        }
    ]
    (r,) = c["rotations"]
    assert r["outcome"] == "completed" and r["verified_actor"].startswith("aws:arn")
    assert [s["state"] for s in r["steps"]] == [
        "planned",
        "promoted",
        "needs_attention",
        "retiring",
        "completed",
    ]


def test_the_renderings_agree_with_the_data() -> None:
    report = build()
    assert json.loads(render(report, "json")) == json.loads(json.dumps(report))
    (row,) = csv.DictReader(io.StringIO(render(report, "csv")))
    assert (row["rotation_id"], row["outcome"], row["deleted"]) == ("7", "completed", "u-old")
    assert row["credential_violation"] == "True"
    html = render(report, "html")
    assert '<b id="oldest-analytics">110.00 d</b>' in html
    assert "VIOLATION" in html and "old secret still in use" in html
    assert "<svg" in html and "<script" not in html


def test_each_row_names_the_key_that_signed_it_apart_from_the_self_reported_identity() -> None:
    report = build()
    (rotation,) = report["credentials"][0]["rotations"]
    assert rotation["signed_by"] == "daemon-1"
    assert {s["signed_by"] for s in rotation["steps"]} == {"daemon-1"}
    (row,) = csv.DictReader(io.StringIO(render(report, "csv")))
    assert row["signed_by"] == "daemon-1"
    html = render(report, "html")
    assert '<td class="signed-by"><code>daemon-1</code></td>' in html
    assert "identity (self-reported)" in html
    unsigned = reporting.build(
        [replace(e, scheme="hmac-sha256", key_id="k1") for e in trail()],
        POLICY,
        VERIFIED,
        since=T0,
        until=T0 + 20 * DAY,
        generated_at=T0 + 20 * DAY,
    )
    assert unsigned["credentials"][0]["rotations"][0]["signed_by"] is None
    assert '<td class="signed-by"><code>not signed</code></td>' in render(unsigned, "html")


def test_deletes_recorded_by_every_event_that_records_one_are_in_the_report() -> None:
    """Each detail key the engine writes a delete under (reporting.DELETION_KEYS): a stray
    cleared to make room (a retry), a secret given back after a lost put (`token_renewed`
    says `deleted: true` and names it `stale_uuid`; a failed put's retry: `given_back`)."""
    start = rot("creating", old_uuid="u-old", new_uuid=None)
    events = [
        Ev(1, 8, T0, "started", None, "planned", {}, {"rotation": start}),
        Ev(2, 8, T0 + DAY, "retry", "creating", "creating", {"strays_deleted": ["u-s"]}),
        Ev(
            3,
            8,
            T0 + DAY,
            "token_renewed",
            "creating",
            "creating",
            {"deleted": True, "stale_uuid": "u-lost"},
        ),
        Ev(
            4,
            8,
            T0 + DAY,
            "token_renewed",
            "creating",
            "creating",
            {"deleted": False, "stale_uuid": "None"},
        ),
        Ev(5, 8, T0 + 2 * DAY, "retry", "creating", "creating", {"given_back": ["u-put"]}),
    ]
    report = reporting.build(
        events, POLICY, VERIFIED, since=T0, until=T0 + 3 * DAY, generated_at=T0 + 3 * DAY
    )
    (c,) = report["credentials"]
    assert [(d["uuid"], d["kind"]) for d in c["deletions"]] == [
        ("u-s", "stray"),
        ("u-lost", "given_back"),
        ("u-put", "given_back"),
    ]
    assert {s["uuid"]: s["was_current"] for s in c["secrets"]} == {
        "u-s": False,
        "u-lost": False,
        "u-put": False,
    }
    (row,) = csv.DictReader(io.StringIO(render(report, "csv")))
    assert row["deletions"].split() == [
        f"{d['kind']}:{d['uuid']}@{d['deleted_at']}" for d in c["deletions"]
    ]


def test_an_unkeyed_chain_is_amber_a_keyed_one_green_a_broken_one_red() -> None:
    def box(verification: dict[str, Any]) -> str:
        report = reporting.build(
            trail(), POLICY, verification, since=T0, until=T0 + DAY, generated_at=T0 + DAY
        )
        html = render(report, "html")
        return html.split('id="chain-status" class="', 1)[1].split("<", 1)[0]

    assert box({**VERIFIED, "keyed": True}) == 'ok">intact'
    assert box({**VERIFIED, "keyed": False}) == 'warn">intact, UNKEYED'
    assert box({**VERIFIED, "ok": False, "problems": ["x"]}) == 'bad">BROKEN'


def test_a_csv_cell_hiding_a_formula_behind_control_characters_or_blanks_stays_text() -> None:
    from rotator.audit.render import cell

    assert cell('\x01=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert cell(" =1+1") == "' =1+1"
    assert cell("plain") == "plain" and cell(3) == 3
