"""Injected faults without crashes: every rotation completes, or ends in needs_attention or
failed with a reason a person understands; I1 and I2 hold throughout (a watcher samples
them while the engine works).

The engine runs in this process with its real adapters: httpx to the Adobe sandbox (faults
aimed at the case's client id), boto3 through the AWS proxy (faults aimed at the case's
secret), and a SQLite database of its own. `[adobe] timeout = "1s"` so that sandbox
latency above a second is a client timeout.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from rotator import app as app_mod
from rotator import config
from rotator.domain.model import State, Trigger
from tests.reliability import figures
from tests.reliability.awsproxy import wait_until
from tests.reliability.harness import Case, InProcess, ServicesRig, rotate_in_process
from tests.reliability.invariants import (
    i1_current_works,
    i2_sample,
    i4_completed_normal,
    i6_events,
    i7_no_orphan,
)

ADOBE = {"timeout": "1s"}
QUICK = {"quiet_period": "200ms", "poll_interval": "200ms"}  # drains are not the point here


def _sandbox_faults(rig: ServicesRig) -> int:
    endpoints = rig.state.faults.counters()["endpoints"]
    return sum(int(e["faults"]) for e in endpoints.values())


def _case(rig: ServicesRig, **kw: object) -> Case:
    kw.setdefault("adobe", ADOBE)
    kw["defaults"] = {**QUICK, **dict(kw.get("defaults") or {})}  # type: ignore[arg-type]
    return rig.new_case("sqlite", **kw)  # type: ignore[arg-type]


def _rotate(rig: ServicesRig, case: Case, **kw: object) -> InProcess:
    with rig.watching(case):
        result = rotate_in_process(case, **kw)  # type: ignore[arg-type]
    figures.add("rotations under injected faults")
    assert not case.violations, case.violations
    return result


def _adopted(case: Case) -> Case:
    case.adopt_initial()  # an orphan of a lost add is deleted without asking (I12)
    return case


def _completed(case: Case, result: InProcess, *, adds: int = 1) -> None:
    rotation = result.rotation
    assert rotation.state is State.COMPLETED, (rotation.state, rotation.last_error)
    problems = (
        i1_current_works(case)
        + i4_completed_normal(case, case.initial_value)
        + i6_events(case)
        + i7_no_orphan(case, adds=adds)
    )
    assert not problems, problems


def _ended_safely(case: Case, result: InProcess, *words: str) -> None:
    """Failed or needs attention, with a reason naming the cause; nothing lost or left over."""
    rotation = result.rotation
    assert rotation.state in {State.FAILED, State.NEEDS_ATTENTION}, rotation.state
    reason = rotation.last_error or ""
    assert reason and "\n" not in reason
    for word in words:
        assert word in reason, reason
    assert case.aws_value()["client_secret"] == case.initial_value  # AWSCURRENT untouched
    assert not any("AWSPENDING" in ls for ls in case.labels().values()), case.labels()
    assert list(case.adobe().values()) == [case.initial_value]  # the new secret given back
    assert not i1_current_works(case) + i2_sample(case) + i6_events(case)


class _When(threading.Thread):
    """Runs `action` once `predicate` holds (e.g. lift a fault after it was hit); `join`
    raises what the action raised, so a check made in the thread fails the test."""

    def __init__(self, predicate: Callable[[], bool], action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.predicate, self.action = predicate, action
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_until(self.predicate, timeout=30, interval=0.02)
            self.action()
        except BaseException as exc:  # handed to join(), in the test's thread
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def _when(predicate: Callable[[], bool], action: Callable[[], None]) -> _When:
    thread = _When(predicate, action)
    thread.start()
    return thread


def _requests(rig: ServicesRig, endpoint: str) -> int:
    return int(rig.state.faults.counters()["endpoints"][endpoint]["requests"])


# --- Adobe ---------------------------------------------------------------------------------


def adobe_429_with_retry_after_is_waited_out(rig: ServicesRig) -> None:
    case = _case(rig)
    rig.state.faults.add(
        "list_secrets", status=429, count=2, retry_after_s=0.4, client_id=case.cred.client_id
    )
    result = _rotate(rig, case)
    _completed(case, result)
    assert result.adobe_stats["throttled"] == 2


def adobe_5xx_on_an_idempotent_call_is_retried(rig: ServicesRig, endpoint: str) -> None:
    case = _case(rig)
    rig.state.faults.add(endpoint, status=503, count=2, client_id=case.cred.client_id)
    result = _rotate(rig, case)
    _completed(case, result)
    assert result.adobe_stats["retries"] >= 2


def adobe_5xx_before_an_add_takes_effect_is_tried_again_later(rig: ServicesRig) -> None:
    case = _case(rig)
    rig.state.faults.add("add_secret", status=502, count=1, client_id=case.cred.client_id)
    _completed(case, _rotate(rig, case), adds=1)


def adobe_5xx_after_an_add_took_effect_leaves_an_orphan_that_is_deleted(
    rig: ServicesRig,
) -> None:
    case = _adopted(_case(rig))
    rig.state.faults.add(
        "add_secret", status=500, count=1, phase="after", client_id=case.cred.client_id
    )
    result = _rotate(rig, case)
    _completed(case, result, adds=2)  # the lost one was found and deleted


def adobe_dropped_connection(rig: ServicesRig, endpoint: str, phase: str, adds: int) -> None:
    case = _adopted(_case(rig))
    rig.state.faults.add(
        endpoint, action="drop", count=1, phase=phase, client_id=case.cred.client_id
    )
    _completed(case, _rotate(rig, case), adds=adds)


def adobe_timeouts_on_list_are_retried(rig: ServicesRig) -> None:
    case = _case(rig)
    start = _requests(rig, "list_secrets")
    rig.state.faults.set_latency("list_secrets", 1500)  # above the 1 s client timeout
    lift = _when(
        lambda: _requests(rig, "list_secrets") >= start + 2,
        lambda: rig.state.faults.set_latency("list_secrets", 0),
    )
    try:
        result = _rotate(rig, case)
    finally:
        lift.join()
        rig.state.faults.set_latency("list_secrets", 0)
    _completed(case, result)
    assert result.adobe_stats["retries"] >= 2


def adobe_timeout_on_add_whose_secret_appears_later_is_cleaned_up(rig: ServicesRig) -> None:
    """The add times out, and Adobe creates the secret after the client gave up."""
    case = _case(rig)
    start = _requests(rig, "add_secret")
    rig.state.faults.set_latency("add_secret", 1500)
    lift = _when(
        lambda: _requests(rig, "add_secret") >= start + 1,
        lambda: rig.state.faults.set_latency("add_secret", 0),
    )
    try:
        result = _rotate(rig, case)
    finally:
        lift.join()
        rig.state.faults.set_latency("add_secret", 0)
    assert result.rotation.state is State.COMPLETED, result.rotation.last_error
    assert not i1_current_works(case) + i4_completed_normal(case, case.initial_value)
    assert case.adds() in (1, 2)  # 2 if the late secret landed: then it was deleted
    assert not i7_no_orphan(case, adds=case.adds())


def a_new_secret_accepted_late_is_verified_by_retrying(rig: ServicesRig) -> None:
    case = _case(rig, defaults={"verify_timeout": "10s"})
    rig.state.faults.set_timing(accept_delay_ms=1500)
    try:
        result = _rotate(rig, case)
    finally:
        rig.state.faults.set_timing(accept_delay_ms=0)
    _completed(case, result)
    kinds = [r["kind"] for r in case.rows("SELECT kind FROM events ORDER BY id")]
    assert "verify_pending" in kinds


def a_new_secret_never_accepted_rolls_back_and_says_why(rig: ServicesRig) -> None:
    case = _case(rig, defaults={"verify_timeout": "1s"})
    rig.state.faults.set_timing(accept_delay_ms=600_000)
    try:
        result = _rotate(rig, case)
    finally:
        rig.state.faults.set_timing(accept_delay_ms=0)
    _ended_safely(case, result, "verify_timeout")
    assert result.rotation.state is State.FAILED


def a_late_last_used_at_still_delays_deletion_by_the_quiet_period(rig: ServicesRig) -> None:
    """Uses show at Adobe 0.8 s late; a use of the old secret after promotion must still
    keep it alive for a full quiet period after that use."""
    quiet = 2.0
    case = _case(rig, defaults={"quiet_period": "2s", "poll_interval": "300ms", "usage_lag": "1s"})
    rig.state.faults.set_timing(usage_lag_ms=800)
    used_at: list[datetime] = []

    def consumer_uses_the_old_secret() -> None:
        time.sleep(0.3)
        used_at.append(datetime.now(UTC))  # just before: Adobe records the use after this
        status, _ = case.mint(case.initial_value)  # a consumer that has not re-read AWS yet
        assert status == 200

    user = _when(lambda: case.db_state() == "draining", consumer_uses_the_old_secret)
    try:
        result = _rotate(rig, case)
    finally:
        rig.state.faults.set_timing(usage_lag_ms=0)
    user.join()
    _completed(case, result)
    assert not case.oracle_problems(quiet)
    quiet_event = case.rows("SELECT at FROM events WHERE kind = 'quiet'")[0]["at"]
    if isinstance(quiet_event, str):
        quiet_event = datetime.fromisoformat(quiet_event)
    quiet_event = quiet_event if quiet_event.tzinfo else quiet_event.replace(tzinfo=UTC)
    assert quiet_event >= used_at[0] + timedelta(seconds=quiet) - timedelta(milliseconds=50)


def a_long_retry_after_is_honoured_by_the_engine(rig: ServicesRig) -> None:
    """Adobe asks for 120 s: the engine schedules the next attempt no earlier than that."""
    case = _case(rig)
    rig.state.faults.add(
        "add_secret", status=429, count=1, retry_after_s=120, client_id=case.cred.client_id
    )
    app = app_mod.build(config.load(case.config))
    try:
        rotation = app.engine.request(case.name, Trigger.MANUAL, actor="test")
        claim = app.engine.claim(rotation.id)
        assert claim is not None
        claim = app.engine.step(claim)  # planned -> creating
        assert claim is not None
        asked = datetime.now(UTC)
        assert app.engine.step(claim) is None  # the add is throttled: wait
        after = app.store.get(rotation.id)
    finally:
        app.close()
    assert after.state is State.CREATING and "retry after 120" in (after.last_error or "")
    assert after.next_attempt_at is not None
    assert after.next_attempt_at >= asked + timedelta(seconds=115), after.next_attempt_at


def adobe_add_answered_with_another_2xx(rig: ServicesRig, status: int) -> None:
    """Any 2xx whose body carries the new secret is a success (finding 4: a 202 went to
    the error path, and the error quoted the body, plaintext included)."""
    case = _case(rig)
    rig.state.faults.consistency.set_add_status(status, client_id=case.cred.client_id)
    result = _rotate(rig, case)
    _completed(case, result)
    assert not [r for r in case.rotations() if r["last_error"]], "an error on the way"


def _consumer_of_the_old_secret(
    case: Case, seconds: float, uses: list[datetime], refused: list[str]
) -> None:
    """Once the rotation drains: a consumer that has not re-read AWS mints with the old
    secret every 200 ms for `seconds`, then stops; refused, it stops at once (it would read
    AWS again). Whether a refusal was fair is the oracle's call, on the true uses: a thread
    starved of CPU for a quiet period went quiet, whatever its own clock says."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, error = case.mint(case.initial_value)
        if status != 200:
            refused.append(error)
            return
        uses.append(datetime.now(UTC))
        time.sleep(0.2)


def a_drain_through_hostile_answers_never_deletes_under_a_consumer(rig: ServicesRig) -> None:
    """Draining while Adobe leaves the old secret out of an answer, shows its usages as
    null twice and stale at random, and reports uses up to 0.6 s late (usage_lag 1s):
    the consumer still using it is never refused unfairly (the oracle, on the true uses),
    and the old secret goes a full quiet period after its last use (findings 1 and 2,
    over HTTP)."""
    quiet = 2.0
    case = _case(rig, defaults={"quiet_period": "2s", "poll_interval": "300ms", "usage_lag": "1s"})
    client, old = case.cred.client_id, case.cred.secret
    assert old is not None
    faults = rig.state.faults
    faults.set_timing(client_id=client, usage_lag_ms=300, usage_lag_jitter_ms=300, seed=11)
    uses: list[datetime] = []
    refused: list[str] = []

    def hostile_drain() -> None:
        # Within the contract: hidden for less than usage_lag (two answers in a row
        # without it would be confirmed absence; more nulls would outlast the bound).
        faults.consistency.omit(client_id=client, uuid=old.uuid, count=1)
        faults.consistency.distort_usages(mode="null", client_id=client, uuid=old.uuid, count=2)
        faults.consistency.distort_usages(
            mode="stale", stale_ms=300, client_id=client, rate=0.3, seed=12
        )
        _consumer_of_the_old_secret(case, 3.0, uses, refused)

    user = _when(lambda: case.db_state() == "draining", hostile_drain)
    result = _rotate(rig, case, timeout=40)
    user.join()
    _completed(case, result)
    # Never deleted under the consumer, by the true uses (a refusal is fine only if fair).
    assert uses and not case.oracle_problems(quiet), (case.oracle_problems(quiet), refused)
    truth = rig.state.oracle.secret(case.cred.credential_id, old.uuid)
    assert truth is not None and truth.deleted_at is not None and sum(truth.hidden.values()) >= 2


def awscurrent_edited_by_hand(
    rig: ServicesRig, uuid: str, emergency: bool, *, old_busy: bool = False
) -> None:
    """A person pasted a Console-made secret B into AWSCURRENT with A's uuid (or none).
    The rotator never deletes B before a verified replacement is promoted, and consumers
    reading AWSCURRENT are never refused (finding 3); it completes or asks a person.

    `old_busy`: a consumer that never re-read keeps using A all along, while the next
    answers show B's uses as null (the long run's I1 class on f165c13): A is the one uuid
    that moves around a test token, and taking that for proof deleted B."""
    case = _case(rig)
    old = case.cred.secret
    assert old is not None
    made = rig.sandbox.admin.add_secret(case.cred.credential_id)
    if old_busy:
        rig.state.faults.consistency.distort_usages(
            mode="null", client_id=case.cred.client_id, uuid=made.uuid, count=4
        )
    value = {"client_secret": made.client_secret, "consumer_setting": "kept"}
    if uuid == "stale":
        value["secret_uuid"] = old.uuid
    rig.sm.put_secret_value(SecretId=case.secret_id, SecretString=json.dumps(value))
    refused: list[str] = []
    stop = threading.Event()

    def consumer() -> None:
        while not stop.is_set():
            read_at = time.monotonic()
            current = case.current_secret_fast()
            if current:
                status, error = case.mint(current)
                # I8 presumes a value used as it is read; a thread starved between the
                # two while an emergency deleted it is not what I8 is about.
                if status != 200 and time.monotonic() - read_at < 0.2:
                    refused.append(error)
            if old_busy:
                case.mint(old.client_secret)  # not AWSCURRENT's: an emergency may retire it
            time.sleep(0.05)

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    try:
        result = _rotate(rig, case, emergency=emergency, timeout=30)
    finally:
        stop.set()
        thread.join()
    assert not refused, f"consumers reading AWSCURRENT were refused {len(refused)} times"
    assert result.rotation.state in {State.COMPLETED, State.NEEDS_ATTENTION}, (
        result.rotation.state,
        result.rotation.last_error,
    )
    assert not i1_current_works(case) + case.oracle_problems(0.2)
    truth = rig.state.oracle.secret(case.cred.credential_id, made.uuid)
    assert truth is not None and not truth.deleted_while_current
    if truth.deleted_at is not None:  # only once its replacement was promoted
        assert case.aws_value()["client_secret"] != made.client_secret


# --- AWS -----------------------------------------------------------------------------------


def aws_throttling_and_5xx_are_retried(
    rig: ServicesRig, target: str, status: int, code: str
) -> None:
    case = _case(rig)
    rig.proxy.add_fault(target, secret_id=case.secret_id, status=status, code=code, count=2)
    _completed(case, _rotate(rig, case))


def aws_label_move_answer_lost_after_it_took_effect(rig: ServicesRig) -> None:
    """AWSCURRENT moved, the answer was a 500: the retry finds the move already done."""
    case = _case(rig)
    rig.proxy.add_fault(
        "UpdateSecretVersionStage",
        secret_id=case.secret_id,
        status=500,
        code="InternalServiceError",
        count=1,
        phase="after",
    )
    _completed(case, _rotate(rig, case))


def aws_put_answer_lost_after_it_took_effect(rig: ServicesRig) -> None:
    case = _case(rig)
    rig.proxy.add_fault(
        "PutSecretValue",
        secret_id=case.secret_id,
        status=500,
        code="InternalServiceError",
        count=1,
        phase="after",
    )
    _completed(case, _rotate(rig, case))


def aws_refusing_the_put_gives_the_new_secret_back_and_says_why(rig: ServicesRig) -> None:
    case = _case(rig)
    rig.proxy.add_fault(
        "PutSecretValue", secret_id=case.secret_id, status=400, code="AccessDeniedException"
    )
    result = _rotate(rig, case, timeout=15)
    _ended_safely(case, result, "AccessDeniedException")
    assert case.adds() == 1


def aws_dropped_connections_are_retried(rig: ServicesRig) -> None:
    case = _case(rig)
    for target in ("GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage"):
        rig.proxy.add_fault(target, secret_id=case.secret_id, action="drop", count=1)
    _completed(case, _rotate(rig, case))


# --- everything at once --------------------------------------------------------------------


def random_faults_everywhere_at_once(rig: ServicesRig, emergency: bool) -> None:
    seed = 20_260_601
    case = _case(rig)
    rig.state.faults.add("*", status=503, rate=0.2, seed=seed, client_id=case.cred.client_id)
    rig.state.faults.add(
        "*", action="drop", rate=0.05, seed=seed + 1, client_id=case.cred.client_id
    )
    rig.proxy.add_fault("*", secret_id=case.secret_id, rate=0.15, seed=seed + 2)
    result = _rotate(rig, case, emergency=emergency, timeout=60)
    assert result.rotation.state is State.COMPLETED, result.rotation.last_error
    assert not i1_current_works(case) + i4_completed_normal(case, case.initial_value)
    assert not i6_events(case)
    assert not i7_no_orphan(case, adds=case.adds())  # a lost add may have made an orphan


# --- the registry: one test each ------------------------------------------------------------

SCENARIOS: list[tuple[str, Callable[[ServicesRig], None]]] = [
    ("adobe 429 Retry-After", adobe_429_with_retry_after_is_waited_out),
    *[
        (f"adobe 503 on {e}", partial(adobe_5xx_on_an_idempotent_call_is_retried, endpoint=e))
        for e in ("token", "list_secrets", "delete_secret")
    ],
    ("adobe 502 before add", adobe_5xx_before_an_add_takes_effect_is_tried_again_later),
    ("adobe 500 after add", adobe_5xx_after_an_add_took_effect_leaves_an_orphan_that_is_deleted),
    *[
        (f"adobe drop {e} {ph}", partial(adobe_dropped_connection, endpoint=e, phase=ph, adds=n))
        for e, ph, n in [
            ("add_secret", "before", 1),
            ("add_secret", "after", 2),
            ("list_secrets", "before", 1),
            ("token", "before", 1),
            ("delete_secret", "before", 1),
            ("delete_secret", "after", 1),
        ]
    ],
    ("adobe Retry-After 120s", a_long_retry_after_is_honoured_by_the_engine),
    *[
        (f"adobe add answered {st}", partial(adobe_add_answered_with_another_2xx, status=st))
        for st in (200, 202)
    ],
    (
        "hostile answers while draining",
        a_drain_through_hostile_answers_never_deletes_under_a_consumer,
    ),
    *[
        (
            f"AWSCURRENT edited by hand, {u} uuid, {'emergency' if e else 'normal'}",
            partial(awscurrent_edited_by_hand, uuid=u, emergency=e),
        )
        for u in ("stale", "missing")
        for e in (False, True)
    ],
    *[
        (
            f"AWSCURRENT edited by hand, {u} uuid, the old secret busy, emergency",
            partial(awscurrent_edited_by_hand, uuid=u, emergency=True, old_busy=True),
        )
        for u in ("stale", "missing")
    ],
    *[
        (
            f"aws {code} on {t}",
            partial(aws_throttling_and_5xx_are_retried, target=t, status=st, code=code),
        )
        for t, st, code in [
            ("PutSecretValue", 400, "ThrottlingException"),
            ("UpdateSecretVersionStage", 400, "ThrottlingException"),
            ("GetSecretValue", 500, "InternalServiceError"),
            ("DescribeSecret", 400, "ThrottlingException"),
            ("UpdateSecretVersionStage", 500, "InternalServiceError"),
        ]
    ],
    ("aws label move answer lost", aws_label_move_answer_lost_after_it_took_effect),
    ("aws put answer lost", aws_put_answer_lost_after_it_took_effect),
    ("aws put refused", aws_refusing_the_put_gives_the_new_secret_back_and_says_why),
    ("aws dropped connections", aws_dropped_connections_are_retried),
    ("random faults, normal", partial(random_faults_everywhere_at_once, emergency=False)),
    ("random faults, emergency", partial(random_faults_everywhere_at_once, emergency=True)),
]
# These turn a knob the sandbox has for every client at once: one test each (tests run one
# at a time in a test process, and each process has its own sandbox).
ALONE: list[tuple[str, Callable[[ServicesRig], None]]] = [
    ("adobe timeouts on list", adobe_timeouts_on_list_are_retried),
    ("adobe timeout on add", adobe_timeout_on_add_whose_secret_appears_later_is_cleaned_up),
    ("accept_delay within verify_timeout", a_new_secret_accepted_late_is_verified_by_retrying),
    ("accept_delay beyond verify_timeout", a_new_secret_never_accepted_rolls_back_and_says_why),
    ("usage_lag", a_late_last_used_at_still_delays_deletion_by_the_quiet_period),
]


@pytest.fixture
def fault_rig(rig: ServicesRig) -> Iterator[ServicesRig]:
    """The rig; afterwards every fault is cleared and the ones that fired are counted."""
    before = _sandbox_faults(rig) + rig.proxy.faults_fired
    yield rig
    figures.add(
        "faults injected (no crash)", _sandbox_faults(rig) + rig.proxy.faults_fired - before
    )
    rig.state.faults.clear_faults()
    rig.proxy.clear_faults()


def test_faults_aimed_at_one_credential_each_side_by_side(fault_rig: ServicesRig) -> None:
    """Every scenario whose faults are aimed at its own client id / secret: all at once."""

    def attempt(run: Callable[[ServicesRig], None]) -> str | None:
        try:
            run(fault_rig)
        except BaseException as exc:
            where = "".join(traceback.format_tb(exc.__traceback__, limit=-4))
            return f"{type(exc).__name__}: {exc}"[:3000] + f"\n{where}"
        return None

    with ThreadPoolExecutor(8, thread_name_prefix="fault") as pool:
        results = list(pool.map(attempt, [run for _name, run in SCENARIOS]))
    failures = [
        f"[{name}] {error}" for (name, _run), error in zip(SCENARIOS, results, strict=True) if error
    ]
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("run", [pytest.param(run, id=name) for name, run in ALONE])
def test_fault_with_a_global_knob(
    fault_rig: ServicesRig, run: Callable[[ServicesRig], None]
) -> None:
    run(fault_rig)
