# size: one named test per example the model found, each a story that reads alone.
"""Issue 11's findings, and every example the long model run has found, as named tests.

Each drives the model of `test_engine_model.py` (the real Engine and Store against the
hostile in-memory Adobe and AWS, a fake clock) through one exact sequence and checks every
invariant and the oracle after each operation, then settles it like any model example.
They fail on 1921d21 (the safety core before issue 11) and must pass from now on; the
long run (ROTATOR_LONG=1) adds a test here for each new example it finds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.devkit.fakes import CREDENTIAL_ID, CURRENT, ms
from rotator.domain.model import State
from tests.reliability.test_engine_model import NAME, QUIET, EngineModel, template

__all__ = ["template"]  # the module-scoped fixture: a migrated SQLite file to copy

TICK = timedelta(minutes=10)  # the model's poll_interval


@pytest.fixture
def model(template: Path) -> Iterator[EngineModel]:
    EngineModel.template = template
    instance = EngineModel()
    yield instance
    instance.close()


def _state(model: EngineModel) -> State | None:
    active = model.store.active(NAME)
    return None if active is None else active.state


def _step_until(model: EngineModel, state: State, *, limit: int = 12) -> None:
    """What `rotator rotate` does: step the rotation now, until it is in `state`."""
    for _ in range(limit):
        if _state(model) is state:
            return
        model.step_now()
        model.check()
        model.clock.now += timedelta(seconds=1)
    assert _state(model) is state, f"never reached {state}: {_state(model)}"


def _tick(model: EngineModel, *, consumer_uses: str | None = None) -> None:
    """Ten minutes pass; a consumer mints with `consumer_uses` (asserted never refused);
    the daemon steps whatever is due; every invariant and the oracle are checked."""
    model.clock.now += TICK
    if consumer_uses is not None:
        assert model.adobe.mint(consumer_uses), "a consumer still using the old secret was refused"
    model.step_when_due()
    model.check()


def _old(model: EngineModel) -> tuple[str, str]:
    current = model.aws.value(CURRENT) or {}
    return current["secret_uuid"], current["client_secret"]


def _finish(model: EngineModel) -> None:
    for _ in range(60):
        if model.store.active(NAME) is None:
            break
        _tick(model)
    model.teardown()


def test_one_list_answer_without_the_old_secret_does_not_retire_it(
    model: EngineModel,
) -> None:
    """Draining; Adobe's list leaves the old uuid out once. The old secret is not gone:
    a consumer using it every 10 minutes for 3 hours is never refused, and it is deleted
    only a quiet period after that consumer stopped."""
    old_uuid, old_value = _old(model)
    model.start_normal()
    _step_until(model, State.DRAINING)
    model.adobe.consistency.omit(uuid=old_uuid, count=1)
    for _ in range(18):
        _tick(model, consumer_uses=old_value)
        assert old_uuid in model.adobe.secrets, "the old secret was deleted under a consumer"
    last_use = model.clock.now
    _finish(model)
    truth = model.adobe.oracle.secret(CREDENTIAL_ID, old_uuid)
    assert truth is not None and truth.deleted_at is not None
    assert truth.deleted_at - ms(last_use) >= QUIET.total_seconds() * 1000


@pytest.mark.parametrize("answer", ["null", "older"])
def test_a_null_or_older_answer_never_lowers_the_evidence(model: EngineModel, answer: str) -> None:
    """Draining; the rotator saw a use; from then on Adobe's answers show the old secret's
    usages as null (or an older use). It is deleted only a quiet period after that use,
    and not while the answers keep contradicting it (I13): null answers that last past
    usage_lag and the quiet deadline hold the delete for as long as they last."""
    old_uuid, old_value = _old(model)
    model.start_normal()
    _step_until(model, State.DRAINING)
    _tick(model, consumer_uses=old_value)
    _tick(model, consumer_uses=old_value)
    _tick(model)  # the rotator polls and sees the last use
    last_use = model.clock.now - 2 * TICK
    if answer == "null":
        rule = model.adobe.consistency.distort_usages(mode="null", uuid=old_uuid)
        for _ in range(int((QUIET + timedelta(hours=2)) / TICK)):  # past deadline and lag
            _tick(model)
            assert old_uuid in model.adobe.secrets  # the contradiction holds the delete
        model.adobe.consistency.remove(rule)  # Adobe answers truly again: now it may go
    else:  # a replica 55 minutes behind: for a while, shows the use before the last one
        model.adobe.consistency.distort_usages(mode="stale", stale_ms=55 * 60_000, uuid=old_uuid)
        for _ in range(3):
            _tick(model)
            assert old_uuid in model.adobe.secrets
    _finish(model)
    truth = model.adobe.oracle.secret(CREDENTIAL_ID, old_uuid)
    assert truth is not None and truth.deleted_at is not None
    assert truth.deleted_at - ms(last_use) >= QUIET.total_seconds() * 1000


@pytest.mark.parametrize("trigger", ["normal", "emergency"])
@pytest.mark.parametrize("uuid", ["stale", "missing"])
def test_awscurrent_edited_by_hand_is_never_deleted(
    model: EngineModel, uuid: str, trigger: str
) -> None:
    """A person pasted secret B into AWSCURRENT with secret A's uuid (or none). Whatever
    the rotator does (a rotation, an emergency), it never deletes B before B's replacement
    is promoted, and a consumer reading AWSCURRENT is never refused."""
    model.operator_rotates_by_hand(uuid)
    model.consumer_reads_current_and_mints()
    if trigger == "emergency":
        model.start_emergency()
    else:
        model.start_normal()
    for _ in range(30):
        model.consumer_reads_current_and_mints()
        model.step_now()
        model.check()
        model.clock.now += timedelta(minutes=1)
    _finish(model)


@pytest.mark.parametrize("ending", ["never accepted", "cancelled"])
def test_rollback_after_a_lost_put_answer_leaves_no_awspending(
    model: EngineModel, ending: str
) -> None:
    """The put took effect but its answer was lost, the next put failed before it took
    effect; the rotation then rolls back (the new secret is never accepted, or an operator
    cancels): no version keeps AWSPENDING."""
    model.adobe.accept_delay = timedelta(days=2)
    model.arm_fault(("put", "after"), "transient")
    model.arm_fault(("put", "before"), "transient")
    model.start_normal()
    for _ in range(10):
        model.step_now()
        model.check()
        model.clock.now += timedelta(seconds=1)
        if len(model.aws.faults.fired) >= 2:
            break
    if ending == "cancelled":
        model.cancel()
    model.rotate_through_a_fault(("read", "before"), "transient", emergency=False, then="work")
    model.check()
    _finish(model)


def test_a_lost_put_answer_cancel_emergency_crash_before_a_list_cancel(
    model: EngineModel,
) -> None:
    """The long run's find on 1921d21 ("AWSPENDING left with no rotation running"): a
    transient fault after a put that took effect, cancel, emergency, a crash before a
    list, cancel, a rotation through that crash."""
    model.rotate_through_a_fault(("put", "after"), "transient", emergency=False, then="cancel")
    model.check()
    model.start_emergency()
    model.check()
    model.arm_fault(("list", "before"), "crash")
    model.cancel()
    model.check()
    model.rotate_through_a_fault(("list", "before"), "crash", emergency=False, then="work")
    model.check()
    _finish(model)


# --- found by the model run (each one its shrunk example) ---------------------------------


def test_model_find_hand_edit_after_an_emergency_with_lagging_usages(model: EngineModel) -> None:
    """CI's model run, 09:20 (shrunk by hand): uses show 10-15 minutes late. A person
    rotates by hand (uuid right); an emergency completes; a person rotates by hand again,
    pasting secret D with the uuid of the secret the emergency made (N). An emergency now
    must not delete D, the value AWSCURRENT holds: N's lagging uses (the previous
    emergency's own token mints, shown late) moving `last_used_at` are no proof that
    AWSCURRENT holds N."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(600, 300), seed=33418)
    model.operator_rotates_by_hand("right")
    model.check()
    model.start_emergency()
    model.rotate_through_a_fault(("put", "before"), "crash", emergency=False, then="emergency")
    model.check()
    model.operator_rotates_by_hand("stale")
    model.check()
    model.rotate_through_a_fault(("delete", "after"), "crash", emergency=True, then="work")
    model.check()
    _finish(model)


def test_model_find_null_usages_hand_edit_then_emergency_crashing_before_a_list(
    model: EngineModel,
) -> None:
    """A random model run, 09:15 (found against that minute's engine, shrunk by
    Hypothesis): a list answer shows usages as null once, a consumer uses the secret it
    read, a person pastes a Console secret into AWSCURRENT with the old uuid, and an
    emergency crashes before its first list, then runs. The value AWSCURRENT holds was
    deleted."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    model.adobe_usages_go_back(which="old", mode="null", count=1)
    model.consumer_keeps_using_what_it_read()
    model.operator_rotates_by_hand("stale")
    model.check()
    model.rotate_through_a_fault(("list", "before"), "crash", emergency=True, then="work")
    model.check()
    _finish(model)


def test_long_run_find_a_crash_after_an_add_then_a_cancel_leaves_no_orphan(
    model: EngineModel,
) -> None:
    """The long run, 10:14 (b3f5fe1, shrunk by Hypothesis): the process dies right after
    Adobe created the new secret (its plaintext lost), then an operator cancels. The
    secret Adobe made must be found and deleted (I7); it was left behind."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    model.rotate_through_a_fault(("add", "after"), "crash", emergency=False, then="cancel")
    model.check()
    _finish(model)


def test_soak_find_an_emergency_at_the_two_secret_limit_clears_the_stray_and_goes_on(
    model: EngineModel,
) -> None:
    """The long soak (seed 503130265): Adobe holds a second secret that the emergency's
    planning never saw (a list that left it out), so the add is refused at the two-secret
    limit. With a binding for AWSCURRENT (I12) the emergency does not wait for a person:
    it lists again, deletes the stray (an emergency deletes strays at once) and adds
    again; AWSCURRENT's secret is never deleted before its replacement is promoted."""
    current_uuid, _value = _old(model)
    model.engine.adopt(NAME, current_uuid, actor="person")
    stray = model.adobe.seed()
    assert model.adobe.mint(stray.value)  # someone used it: not an orphan of ours
    model.adobe.consistency.omit(uuid=stray.uuid, count=2)  # the plan's lists leave it out
    model.start_emergency()
    for _ in range(20):  # the identity proof waits up to usage_lag (30 minutes) for Adobe
        if _state(model) in {None, State.RETIRING}:
            break
        model.step_now()
        model.check()
        assert _state(model) is not State.NEEDS_ATTENTION, model.store.active(NAME)
        model.clock.now += TICK
    assert stray.uuid not in model.adobe.secrets, "the stray blocking the limit was kept"
    assert model.adobe.adds >= 1
    _finish(model)
    assert current_uuid not in model.adobe.secrets  # the leaked secret went, after promotion


def test_long_run_find_a_cancel_after_the_add_then_a_list_that_leaves_the_new_secret_out(
    model: EngineModel,
) -> None:
    """The long run, 21:40 (3600923, shrunk by Hypothesis): Adobe made the new secret, an
    operator cancels, and the one list answer the rollback reads leaves that secret out.
    One answer is no proof the secret is gone: it must be deleted, not left at Adobe under
    no AWS label (I7)."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    model.check()
    for operation in (
        model.start_normal,
        model.step_now,
        model.cancel,
        model.step_now,
        lambda: model.adobe_leaves_a_secret_out(count=1, which="new"),
        lambda: model.work_until_idle(steps=2),
    ):
        operation()
        model.check()
    _finish(model)


def test_long_run_find_an_emergency_cancelled_early_then_lists_that_leave_the_new_out(
    model: EngineModel,
) -> None:
    """The long run, 21:40 (3600923, shard 3): an emergency adds its secret, an operator
    cancels it before promotion, the next two lists leave the new secret out, and a crash
    before the next put ends that process. The rolled-back secret must still be deleted:
    it was left at Adobe with its plaintext in no AWS version (I7)."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    model.engine.adopt(NAME, _old(model)[0], actor="person")  # AWSCURRENT known (I12)
    model.check()
    for operation in (
        model.start_emergency,
        model.step_now,
        model.cancel,
        lambda: model.adobe_leaves_a_secret_out(count=2, which="new"),
        lambda: model.rotate_through_a_fault(
            ("put", "before"), "crash", emergency=False, then="work"
        ),
    ):
        operation()
        model.check()
    _finish(model)


def test_long_run_find_a_rollback_then_an_emergency_through_a_crash_before_a_list(
    model: EngineModel,
) -> None:
    """The long run, 21:40 (3600923, shard 0): a cancelled rotation rolls back, an emergency
    follows, a crash before a list, and another cancel. No secret may stay at Adobe under no
    AWS label once nothing runs (I7)."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    model.check()
    for operation in (
        model.start_normal,
        model.step_now,
        model.cancel,
        model.step_now,
        model.start_emergency,
        lambda: model.rotate_through_a_fault(
            ("list", "before"), "crash", emergency=False, then="cancel"
        ),
    ):
        operation()
        model.check()
    _finish(model)


def test_long_run_find_lists_that_leave_the_old_secret_out_while_draining(
    model: EngineModel,
) -> None:
    """The long run, 04:17 (38c8731, shard 2): while a rotation drains, three list answers
    in a row leave the old secret out. Two of them apart in time used to count as "already
    gone": draining ended without deleting it, so the old secret stayed at Adobe, alive,
    with no rotation running (I4). Now absence never cuts the quiet period short and the
    old secret is deleted by uuid at the deadline whatever the lists say."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0, skew=0)
    model.check()
    for operation in (
        lambda: model.adobe_leaves_a_secret_out(count=1, which="old"),
        lambda: model.rotate_through_a_fault(
            ("list", "before"), "crash", emergency=False, then="work"
        ),
        model.start_normal,
        lambda: model.work_until_idle(steps=7),
        lambda: model.adobe_leaves_a_secret_out(count=3, which="old"),
        lambda: model.rotate_through_a_fault(
            ("list", "before"), "crash", emergency=False, then="work"
        ),
    ):
        operation()
        model.check()
    _finish(model)


def test_long_run_find_usages_gone_null_then_the_old_secret_left_out_while_draining(
    model: EngineModel,
) -> None:
    """The long run, 04:17 (38c8731, shard 1): the old secret's usage goes back to null,
    then three lists leave it out while the rotation drains; it must still be deleted at
    the end of the quiet period, not left at Adobe once the rotation completes (I4)."""
    for operation in (
        model.start_normal,
        lambda: model.adobe_usages_go_back(count=1, mode="null", which="old"),
        model.step_now,
        model.step_now,
        lambda: model.adobe_usages_go_back(count=1, mode="null", which="old"),
        lambda: model.adobe_leaves_a_secret_out(count=3, which="old"),
        lambda: model.rotate_through_a_fault(
            ("list", "before"), "crash", emergency=False, then="work"
        ),
    ):
        operation()
        model.check()
    _finish(model)


def test_lists_that_leave_the_leaked_secret_out_do_not_end_an_emergency_without_it(
    model: EngineModel,
) -> None:
    """The same class for an emergency: once the replacement is promoted, lists that leave
    the leaked secret out must not let the emergency complete with it still at Adobe."""
    leaked, _value = _old(model)
    model.start_emergency()
    _step_until(model, State.RETIRING)
    model.adobe.consistency.omit(uuid=leaked, count=3)
    model.work_until_idle(steps=12)
    model.check()
    assert leaked not in model.adobe.secrets, "the leaked secret outlived its emergency"
    _finish(model)


def test_long_run_find_a_crash_after_the_put_then_a_cancel_and_lists_that_leave_it_out(
    model: EngineModel,
) -> None:
    """The long run, 04:17 (38c8731, shard 0): the put of the new secret took effect but
    its answer died with the process; an operator cancels; the lists the rollback reads
    leave the new secret out. It stayed at Adobe under no AWS label (I7); the rollback now
    reads its uuid from the rotation's own AWS version (fails on cba0eec)."""
    for operation in (
        lambda: model.arm_fault(("put", "after"), "crash"),
        model.start_normal,
        model.step_now,
        lambda: model.adobe_lists_deleted_secrets(answers=1, count=1),
        lambda: model.adobe_usages_go_back(count=1, mode="null", which="old"),
        model.cancel,
        lambda: model.work_until_idle(steps=3),
        lambda: model.adobe_leaves_a_secret_out(count=1, which="any"),
        model.step_now,
        lambda: model.adobe_leaves_a_secret_out(count=1, which="any"),
        model.crash_between_steps,
        model.step_now,
    ):
        operation()
        model.check()
    _finish(model)


def test_a_staged_secret_one_list_leaves_out_is_given_back_before_a_fresh_token(
    model: EngineModel,
) -> None:
    """A put took effect and its answer died with the process; on resume one list leaves
    the staged secret out. Its plaintext lives only in the rotation's own AWS version, so
    it is deleted by uuid before the token is renewed, not left for a later list to show
    (a cancel then would leave it under no AWS label, I7). Fails on cba0eec."""
    before = set(model.adobe.secrets)
    model.arm_fault(("put", "after"), "crash")
    model.start_normal()
    model.step_now()  # planned
    model.step_now()  # create: the add and the put take effect, the process dies
    model.check()
    (staged,) = set(model.adobe.secrets) - before
    model.adobe.consistency.omit(uuid=staged, count=1)
    model.step_now()  # create resumes: the list does not show the staged secret
    model.check()
    truth = model.adobe.oracle.secret(CREDENTIAL_ID, staged)
    assert truth is not None and truth.deleted_at is not None, "the staged secret was left"
    assert staged not in model.adobe.secrets
    _finish(model)


def test_a_lost_add_then_a_cancel_and_lists_that_leave_it_out_three_times(
    model: EngineModel,
) -> None:
    """An add took effect and its answer died with the process, so no uuid was recorded
    anywhere but Adobe; an operator cancels; the next three lists leave the new secret
    out. Two answers in a row ended the rollback with it at Adobe under no AWS label (I7):
    a rollback that cannot name what it looks for asks for four. Fails on cba0eec.
    (Deleting that orphan needs AWSCURRENT's secret known by construction: adopted here.)"""
    model.engine.adopt(NAME, _old(model)[0], actor="person")
    before = set(model.adobe.secrets)
    model.arm_fault(("add", "after"), "crash")
    model.start_normal()
    model.step_now()  # planned
    model.step_now()  # create: the add takes effect, the process dies
    model.check()
    (added,) = set(model.adobe.secrets) - before
    model.cancel()
    model.adobe.consistency.omit(uuid=added, count=3)
    model.work_until_idle(steps=12)
    model.check()
    assert added not in model.adobe.secrets, "the lost add's secret outlived the rollback"
    _finish(model)


def test_long_run_find_a_probe_whose_baseline_left_the_hand_made_secret_out(
    model: EngineModel,
) -> None:
    """The long run of 7 Dec (bff8628, shard 1): AWSCURRENT edited by hand (a Console
    secret beside the stale uuid); an emergency's test token; the list before it left the
    hand-made secret out, and the old secret's last use, from the previous rotation's own
    calls at that very second, showed up late. One uuid moved, the recorded one: taken as
    proof, and at Adobe's two-secret limit the emergency deleted the secret AWSCURRENT held
    (I1, I2). A secret first listed after the test token now voids the observation, and a
    proof covers only the secrets it saw (fails on bff8628)."""
    for operation in (
        lambda: model.adobe_is_eventually_consistent(
            accept_delay=30, skew=0, seed=95, lag=(300, 0)
        ),
        lambda: model.adobe_lists_deleted_secrets(answers=1, count=1),
        lambda: model.rotate_through_a_fault(
            call=("verify", "before"), emergency=False, kind="transient", then="work"
        ),
        lambda: model.operator_rotates_by_hand(uuid="stale"),
        model.start_emergency,
        lambda: model.adobe_leaves_a_secret_out(count=3, which="new"),
        lambda: model.rotate_through_a_fault(
            call=("add", "before"), emergency=True, kind="crash", then="work"
        ),
    ):
        operation()
        model.check()
    _finish(model)


def test_long_run_find_a_cancelled_emergency_after_a_hand_edit_gives_back_what_it_inherited(
    model: EngineModel,
) -> None:
    """The long run of 7 Dec (bff8628, shards 2 and 3): an emergency abandons a normal
    rotation with a staged secret; AWSCURRENT is edited by hand; an operator cancels. The
    rollback would give back the inherited secret (already deleted as a stray) but refused
    every delete because AWSCURRENT was on a version the rotation had not planned for: it
    went between rolling_back and needs_attention for ever. A secret whose plaintext lives
    only in a version rotator wrote, and is not AWSCURRENT's, is given back whatever moved
    AWSCURRENT (fails on bff8628)."""
    for operation in (
        model.start_normal,
        model.step_now,
        model.start_emergency,
        model.step_when_due,
        model.step_now,
        model.step_when_due,
        lambda: model.work_until_idle(steps=1),
        lambda: model.operator_rotates_by_hand(uuid="missing"),
        model.step_when_due,
        model.cancel,
        model.step_now,
    ):
        operation()
        model.check()
    model.work_until_idle(steps=12)
    assert model.store.active(NAME) is None, "the cancelled emergency never finished"
    _finish(model)


def test_long_run_find_a_cancelled_emergency_whose_probe_ran_out_starts_a_fresh_one(
    model: EngineModel,
) -> None:
    """The long run of 7 Dec on f165c13 (shard 0, liveness): AWSCURRENT edited by hand
    without a uuid, lists that left the old secret out, an emergency cancelled while its
    test token was judged. The rollback came back after the observation's bound and asked
    a person at every retry on that same stale probe: it went between rolling_back and
    needs_attention for ever. Asking a person now drops the observation, so the retry mints
    a fresh test token (fails on f165c13)."""
    for operation in (
        lambda: model.adobe_is_eventually_consistent(
            accept_delay=0, skew=0, seed=65535, lag=(0, 0)
        ),
        lambda: model.operator_rotates_by_hand(uuid="missing"),
        lambda: model.adobe_leaves_a_secret_out(count=2, which="old"),
        model.start_emergency,
        model.step_now,
        model.step_when_due,
        model.cancel,
        model.step_now,
    ):
        operation()
        model.check()
    model.teardown()  # the settle phase, as the long run ended it


def test_long_run_find_a_late_use_of_the_old_secret_is_not_proof_after_a_stale_uuid_edit(
    model: EngineModel,
) -> None:
    """The long run of 7 Dec on f165c13 (shard 2, I1): AWSCURRENT edited by hand beside a
    stale uuid, usages that went back to null or to older answers, then an emergency whose
    put failed once. A consumer still on the old secret used it in the second of the test
    token, and the answers showed AWSCURRENT's secret unused: the old secret was the only
    uuid that moved, that was taken as proof, and the hand-made secret AWSCURRENT held was
    deleted. One observation is not proof; a second test token must move the same uuid."""
    for operation in (
        model.consumer_reads_current_and_mints,
        lambda: model.operator_rotates_by_hand(uuid="stale"),
        lambda: model.adobe_usages_go_back(count=1, mode="null", which="any"),
        lambda: model.adobe_usages_go_back(count=1, mode="stale", which="old"),
        lambda: model.adobe_usages_go_back(count=3, mode="stale", which="any"),
        lambda: model.adobe_usages_go_back(count=3, mode="null", which="old"),
        lambda: model.rotate_through_a_fault(
            call=("put", "before"), emergency=True, kind="transient", then="work"
        ),
    ):
        operation()
        model.check()
    _finish(model)


def test_long_run_find_a_use_in_the_second_of_the_test_token_is_not_proof_after_a_hand_edit(
    model: EngineModel,
) -> None:
    """The long run of 7 Dec on f165c13 (shard 3, I1): AWSCURRENT edited by hand with no
    uuid, lists that left the old secret out, a consumer that kept using what it had read.
    A fresh test token was minted in the second of that consumer's use, and one answer
    showed the old secret used and the hand-made one null: the old secret was taken as
    AWSCURRENT's and the hand-made secret deleted as an orphan. One observation is not
    proof; a second test token must move the same uuid."""
    for operation in (
        lambda: model.operator_rotates_by_hand(uuid="missing"),
        lambda: model.adobe_leaves_a_secret_out(count=3, which="old"),
        model.start_normal,
        lambda: model.work_until_idle(steps=9),
        model.consumer_keeps_using_what_it_read,
        lambda: model.adobe_usages_go_back(count=1, mode="stale", which="any"),
        lambda: model.adobe_usages_go_back(count=1, mode="null", which="any"),
        lambda: model.work_until_idle(steps=4),
    ):
        operation()
        model.check()
    _finish(model)


def test_model_find_a_rollback_that_asks_a_person_is_not_re_entered_by_a_cancel(
    model: EngineModel,
) -> None:
    """The model on the issue-26 engine (shrunk by Hypothesis): a rollback that needs a
    person (an orphan to delete, AWSCURRENT's secret not known by construction) went back
    and forth between needs_attention and rolling_back under a pending cancel, so the
    question never stayed asked and the settle found it still rolling back."""
    state = model
    state.adobe_is_eventually_consistent(accept_delay=400, skew=-120, seed=65535, lag=(900, 0))
    state.rotate_through_a_fault(
        call=("list", "after"), emergency=True, kind="transient", then="work"
    )
    state.crash_between_steps()
    state.rotate_through_a_fault(
        call=("add", "after"), emergency=False, kind="transient", then="cancel"
    )
    state.consumer_reads_current_and_mints()
    state.start_normal()
    state.work_until_idle(steps=10)
    state.start_normal()
    state.consumer_reads_current_and_mints()
    state.start_normal()
    state.rotate_through_a_fault(
        call=("move", "before"), emergency=True, kind="crash", then="cancel"
    )
    state.rotate_through_a_fault(
        call=("put", "before"), emergency=True, kind="transient", then="cancel"
    )
    state.cancel()
    state.step_now()
    state.time_passes(seconds=21600)
    state.arm_fault(call=("stages", "before"), kind="crash")
    state.consumer_keeps_using_what_it_read()
    state.cancel()
    state.consumer_keeps_using_what_it_read()
    state.consumer_keeps_using_what_it_read()
    state.step_now()
    state.consumer_keeps_using_what_it_read()
    state.step_now()
    state.consumer_keeps_using_what_it_read()
    state.step_when_due()
    state.teardown()


def test_model_find_an_orphan_of_an_abandoned_add_is_found_by_the_emergency_s_rollback(
    model: EngineModel,
) -> None:
    """The model on the issue-26 engine (shrunk by Hypothesis): a normal rotation's add took
    effect and the process died before the put; an emergency abandoned it, then was
    cancelled. Its rollback must find the lost add's secret (first listed after that add's
    intent) and, once a person named AWSCURRENT's secret, delete it (I7); a stale
    resume_state made the rollback and the cancel flap instead."""
    state = model
    state.adobe_is_eventually_consistent(accept_delay=30, lag=(300, 0), seed=1567, skew=0)
    state.rotate_through_a_fault(
        call=("put", "before"), emergency=False, kind="crash", then="emergency"
    )
    state.rotate_through_a_fault(
        call=("stages", "before"), emergency=True, kind="transient", then="cancel"
    )
    state.teardown()


def _crash_inside(model: EngineModel, call: tuple[str, str], *, emergency: bool) -> None:
    """A rotation starts and is stepped (as `rotator rotate` does) until the process dies
    inside `call` (the fault fires once)."""
    model.arm_fault(call, "crash")
    (model.start_emergency if emergency else model.start_normal)()
    for _ in range(12):
        if model.adobe.faults.fired or model.aws.faults.fired:
            break
        model.step_now()
        model.check()
    assert model.adobe.faults.fired or model.aws.faults.fired, "the crash never came"


def _lost_add(model: EngineModel, old_uuid: str) -> str:
    (orphan,) = [u for u in model.adobe.secrets if u != old_uuid]
    return orphan


def test_long_run_find_an_add_refused_at_the_limit_keeps_the_lost_add_s_intent(
    model: EngineModel,
) -> None:
    """The long run (issue 26's engine, its first and third finds, shrunk by hand): the
    process dies right after an add took effect (its answer lost: only the intent recorded
    before the POST knows an orphan may exist). The next owner's list leaves it out, so it
    adds again and Adobe refuses at the two-secret limit: that refusal proves only that
    *this* add made nothing, yet it dropped the intent of the earlier one. An operator
    then cancels, and the rollback, knowing of no add whose outcome was unknown, found no
    orphan: a secret stayed at Adobe with its plaintext in no AWS version (I7)."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    old_uuid, _value = _old(model)
    model.engine.adopt(NAME, old_uuid, actor="person")  # AWSCURRENT known (I12)
    model.check()
    _crash_inside(model, ("add", "after"), emergency=False)
    orphan = _lost_add(model, old_uuid)
    model.adobe.consistency.omit(uuid=orphan, count=2)  # the next owner's lists
    model.step_now()  # lists (orphan left out), adds: refused at the limit
    model.check()
    active = model.store.active(NAME)
    assert active is not None and active.detail.get("add_intent"), "the lost add was forgotten"
    model.cancel()
    _finish(model)
    assert orphan not in model.adobe.secrets, "the lost add's secret was left at Adobe"


def test_long_run_find_an_emergency_s_lost_add_is_given_back_once_a_person_names_current(
    model: EngineModel,
) -> None:
    """The long run (issue 26's engine, its second find, shrunk by hand): an emergency with no
    binding adds into the free slot and the process dies before the put (the answer, uuid
    and plaintext, lost). The secret it made fills the second slot; deleting it needs
    AWSCURRENT's secret known (I9, I12: the lost add's secret is found only as "not listed
    before the add", which an omitting list can fake), so the rotation asks a person for
    `rotator adopt`. The person's first try is refused because a list leaves AWSCURRENT's
    secret out; they try again, and the emergency gives the orphan back and finishes (I7)."""
    model.adobe_is_eventually_consistent(accept_delay=0, lag=(0, 0), seed=0)
    old_uuid, _value = _old(model)
    model.check()
    _crash_inside(model, ("put", "before"), emergency=True)
    orphan = _lost_add(model, old_uuid)
    model.step_now()
    model.check()
    active = model.store.active(NAME)
    assert active is not None and active.state is State.NEEDS_ATTENTION
    assert f"rotator adopt {NAME}" in (active.last_error or ""), active.last_error
    assert orphan in model.adobe.secrets  # never deleted on a guess
    model.adobe.consistency.omit(uuid=old_uuid, count=2)  # the person's first look
    model.teardown()  # the settle phase: the person adopts when asked, and tries again
    assert orphan not in model.adobe.secrets
    assert old_uuid not in model.adobe.secrets  # the leaked secret went, after promotion
