"""Eventual-consistency switches (consistency.py) and the oracle (oracle.py), over HTTP."""

from __future__ import annotations

import pytest

from rotator.devkit.sandbox import SandboxAdmin
from rotator.devkit.sandbox.state import SandboxState

from .conftest import Adobe


def _usage(entry: dict[str, object]) -> int | None:
    usages = entry["secret_usages"]
    if not usages:
        return None
    assert isinstance(usages, list)
    return max(int(u["last_used_at"]) for u in usages)


def test_an_omission_leaves_the_named_secret_out_exactly_n_times(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    second = admin.add_secret(adobe.cred.credential_id)
    admin.omit_secret(client_id=adobe.cred.client_id, uuid=second.uuid, count=2)
    seen = [[e["uuid"] for e in adobe.entries(token)] for _ in range(3)]
    assert [second.uuid in s for s in seen] == [False, False, True]
    assert all(len(s) == (1 if i < 2 else 2) for i, s in enumerate(seen))
    truth = admin.oracle(adobe.cred.credential_id)
    (row,) = [s for s in truth["secrets"] if s["uuid"] == second.uuid]
    assert row["hidden"] == {"omitted": 2} and row["answers"] == 1


def test_an_omission_without_uuid_leaves_out_a_random_one_and_is_seeded(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    admin.add_secret(adobe.cred.credential_id)

    def run() -> list[list[str]]:
        admin.omit_secret(client_id=adobe.cred.client_id, count=4, seed=7)
        return [[e["uuid"] for e in adobe.entries(token)] for _ in range(4)]

    first, again = run(), run()
    assert first == again
    assert all(len(s) == 1 for s in first)


def test_an_omission_aimed_at_another_client_changes_nothing_here(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    other = admin.create_credential()
    admin.omit_secret(client_id=other.client_id)
    assert len(adobe.entries()) == 1


def test_usages_go_back_to_null_then_come_back(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()  # a use of the first secret
    before = _usage(adobe.entries(token)[0])
    assert before is not None
    admin.regress_usages("null", client_id=adobe.cred.client_id, count=1)
    assert adobe.entries(token)[0]["secret_usages"] is None
    assert _usage(adobe.entries(token)[0]) == before
    (row,) = admin.oracle(adobe.cred.credential_id)["secrets"]
    assert row["hidden"] == {"null": 1}
    assert row["reported_last_used_at"] == before  # a null never lowers what was reported


def test_stale_usages_show_an_older_time(adobe: Adobe, admin: SandboxAdmin) -> None:
    adobe.token()
    first = _usage(adobe.entries()[0])
    admin.advance_clock(3600)
    token = adobe.token()  # a use an hour later
    latest = _usage(adobe.entries(token)[0])
    assert first is not None and latest is not None and latest >= first + 3_600_000
    admin.regress_usages("stale", stale_ms=1_800_000, client_id=adobe.cred.client_id, count=1)
    stale = _usage(adobe.entries(token)[0])
    assert stale is not None and first <= stale < latest - 1_000_000  # as a replica 30 min behind
    (row,) = admin.oracle(adobe.cred.credential_id)["secrets"]
    assert row["hidden"] == {"stale": 1}
    assert row["last_used_at"] >= latest  # the truth is never distorted


def test_a_lag_with_jitter_per_client_hides_uses_for_a_while(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    admin.set_timing(
        usage_lag_ms=600_000, usage_lag_jitter_ms=60_000, client_id=adobe.cred.client_id, seed=3
    )
    other = admin.create_credential()
    assert other.secret is not None
    token = adobe.token()
    assert adobe.entries(token)[0]["secret_usages"] is None  # not visible yet (lag 10-11 min)
    admin.consume(other.credential_id, other.secret.uuid)
    assert admin.secrets(other.credential_id)[0]["last_used_at"] is not None  # no lag there
    admin.advance_clock(661)
    assert _usage(adobe.entries(token)[0]) is not None
    truth = admin.oracle(adobe.cred.credential_id)["secrets"][0]
    assert truth["use_count"] == 1 and truth["uses"][0]["source"] == "http"


def test_an_accept_delay_per_client(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.set_timing(accept_delay_ms=30_000, client_id=adobe.cred.client_id)
    created = adobe.add_secret(adobe.token())
    value = created.json()["client_secret"]
    refused = adobe.token_response(secret=value)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    admin.advance_clock(31)
    assert adobe.token_response(secret=value).status_code == 200
    truth = admin.oracle(adobe.cred.credential_id)
    (row,) = [s for s in truth["secrets"] if s["uuid"] == created.json()["uuid"]]
    assert [r["reason"] for r in row["refusals"]] == ["not accepted yet"]


@pytest.mark.parametrize("status", [200, 201, 202])
def test_an_add_answered_with_any_2xx_per_client(
    adobe: Adobe, admin: SandboxAdmin, status: int
) -> None:
    admin.set_add_status(status, client_id=adobe.cred.client_id)
    response = adobe.add_secret()
    assert response.status_code == status
    assert {"uuid", "client_secret", "created_at"} <= set(response.json())
    admin.set_add_status(None, client_id=adobe.cred.client_id)
    admin.delete_secret(adobe.cred.credential_id, response.json()["uuid"])
    assert adobe.add_secret().status_code == 201


def test_the_oracle_records_consumer_uses_deletions_and_refusals_of_deleted_secrets(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    cred = adobe.cred
    assert cred.secret is not None
    second = admin.add_secret(cred.credential_id)
    assert admin.consume(cred.credential_id, second.uuid).status_code == 200
    admin.delete_secret(cred.credential_id, second.uuid)
    refused = adobe.token_response(secret=second.client_secret)
    assert refused.status_code == 400
    truth = {s["uuid"]: s for s in admin.oracle(cred.credential_id)["secrets"]}
    row = truth[second.uuid]
    assert row["created_by"] == "console" and row["deleted_by"] == "admin"
    assert row["last_consumer_use_at"] is not None and row["deleted_at"] is not None
    assert [(r["reason"], r["source"]) for r in row["refusals"]] == [("no such secret", "http")]
    assert not row["deleted_while_current"]
    assert truth[cred.secret.uuid]["deleted_at"] is None
    assert admin.oracle()["deletions"] >= 1


def test_the_oracle_flags_a_deletion_of_the_watched_current_value() -> None:
    state = SandboxState()
    cred, first = state.create_credential()
    assert first is not None
    state.admin_add_secret(cred.credential_id)
    state.oracle.watch_current(cred.credential_id, lambda: first.value)
    state.admin_delete_secret(cred.credential_id, first.uuid)
    truth = state.oracle.secret(cred.credential_id, first.uuid)
    assert truth is not None and truth.deleted_while_current


def test_reset_forgets_the_switches_and_the_truth(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.omit_secret()
    admin.regress_usages("null")
    admin.set_add_status(202)
    admin.reset()
    view = admin.faults()["consistency"]
    assert view == {"timing": {}, "omissions": [], "usage_regressions": [], "lingering": []}
    assert admin.oracle()["secrets"] == []


def test_switches_are_removed_by_id(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    rule = admin.omit_secret(client_id=adobe.cred.client_id)
    assert adobe.entries(token) == []
    admin.remove_fault(rule)
    assert len(adobe.entries(token)) == 1


def test_a_deleted_secret_lingers_in_the_next_answers(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    second = adobe.add_secret(token).json()["uuid"]
    admin.linger_deleted(answers=2, client_id=adobe.cred.client_id, count=1)
    assert adobe.delete_secret(second, token).status_code in (200, 204)
    listed = [[e["uuid"] for e in adobe.entries(token)] for _ in range(3)]
    assert [second in uuids for uuids in listed] == [True, True, False]
    assert len(admin.secrets(adobe.cred.credential_id)) == 1  # the truth: it is gone
    assert adobe.delete_secret(second, token).status_code == 404
    (row,) = [s for s in admin.oracle(adobe.cred.credential_id)["secrets"] if s["uuid"] == second]
    assert row["hidden"] == {"lingering": 2} and row["deleted_by"] == "api"


def test_a_switch_for_one_client_leaves_the_others_to_everyones_settings(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    admin.set_add_status(202, client_id=adobe.cred.client_id)
    admin.set_timing(accept_delay_ms=30_000)  # for everyone, this client included
    created = adobe.add_secret()
    assert created.status_code == 202
    assert adobe.token_response(secret=created.json()["client_secret"]).status_code == 400
    assert admin.faults()["accept_delay_ms"] == 30_000
