"""The invariants of docs/design (I1-I7) over one `Case` of the reliability rig, as
functions that return what is wrong (an empty list when all is well), and the `Watcher`
that samples I2 and I3 of every running case, continuously."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rotator.adapters.db.store import Store, make_engine

if TYPE_CHECKING:
    from tests.reliability.harness import Case

PENDING, PREVIOUS = "AWSPENDING", "AWSPREVIOUS"


def i1_current_works(case: Case) -> list[str]:
    """I1: the value under AWSCURRENT mints a token at Adobe (as a consumer would)."""
    value = case.aws_value()
    secret = value.get("client_secret")
    if not isinstance(secret, str):
        return ["I1: AWSCURRENT has no client_secret"]
    status, error = case.mint(secret)
    return [] if status == 200 else [f"I1: AWSCURRENT does not mint a token ({status} {error})"]


def i2_sample(case: Case) -> list[str]:
    """I2: AWSCURRENT's secret is live at Adobe (sampled so a promotion cannot fool it)."""
    first = case.current_secret_fast()
    live = set(case.adobe().values())
    second = case.current_secret_fast()
    if first is None:  # caught in the middle of moto moving the label: no sample
        return []
    if first == second and first not in live:
        return ["I2: the secret AWSCURRENT holds was deleted at Adobe"]
    return []


def i3_one_unfinished(case: Case) -> list[str]:
    rows = case.rows(
        "SELECT count(*) AS n FROM rotations WHERE credential = :n AND finished_at IS NULL",
        n=case.name,
    )
    n = rows[0]["n"]
    return [] if n <= 1 else [f"I3: {n} unfinished rotations"]


def i4_completed_normal(case: Case, old_value: str) -> list[str]:
    """I4: one secret at Adobe, AWSCURRENT holds it, the old value is AWSPREVIOUS, no PENDING."""
    problems = []
    live = case.adobe()
    current = case.aws_value()
    if len(live) != 1:
        problems.append(f"I4: Adobe lists {len(live)} secrets, not 1")
    elif current.get("client_secret") not in live.values():
        problems.append("I4: AWSCURRENT does not hold Adobe's only secret")
    elif current.get("secret_uuid") not in live:
        problems.append("I4: AWSCURRENT records a uuid Adobe does not list")
    labels = case.labels()
    if any(PENDING in ls for ls in labels.values()):
        problems.append(f"I4: AWSPENDING is still on a version ({labels})")
    try:
        previous = case.aws_value(PREVIOUS).get("client_secret")
    except case.rig.sm.exceptions.ResourceNotFoundException:
        previous = None
    if previous != old_value:
        problems.append("I4: AWSPREVIOUS does not hold the old value")
    if current.get("consumer_setting") != "kept":
        problems.append("I4: the consumer's other keys were not kept")
    return problems


def i6_events(case: Case, *, chain: bool = True) -> list[str]:
    """I6: each rotation's events form one unbroken chain of its state changes.

    `chain`: also walk the hash chain of the whole database; only on a database that no
    process is writing to (see test_audit_verify.py for why).
    """
    problems = []
    for rotation in case.rotations():
        events = case.rows(
            "SELECT id, kind, from_state, to_state FROM events WHERE rotation_id = :r ORDER BY id",
            r=rotation["id"],
        )
        state = None
        for event in events:
            if event["from_state"] != state:
                problems.append(
                    f"I6: rotation {rotation['id']}: event {event['id']} ({event['kind']}) "
                    f"starts at {event['from_state']} but the state was {state}"
                )
            state = event["to_state"]
        if state != rotation["state"]:
            problems.append(
                f"I6: rotation {rotation['id']} is {rotation['state']} but its last event "
                f"says {state}"
            )
    if chain:
        problems += verify_chain(case.db_url)
    return problems


def verify_chain(db_url: str) -> list[str]:
    store = Store(make_engine(db_url))
    try:
        checked, broken = store.verify_chain()
    finally:
        store.engine.dispose()
    if broken:
        return [f"I6: audit chain broken after {checked} events: {broken}"]
    return []


def i7_no_orphan(case: Case, *, adds: int) -> list[str]:
    """I7: Adobe holds exactly AWSCURRENT's secret, and made exactly `adds` new ones."""
    problems = []
    live = case.adobe()
    current = case.aws_value().get("client_secret")
    if list(live.values()) != [current]:
        problems.append(f"I7: Adobe holds {len(live)} secrets; expected only AWSCURRENT's")
    if case.adds() != adds:
        problems.append(f"I7: Adobe created {case.adds()} secrets; expected {adds}")
    return problems


class Watcher:
    """One thread sampling I2 and I3 of every running case, continuously."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._cases: list[Case] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.skipped = 0

    def add(self, case: Case) -> None:
        with self._lock:
            self._cases.append(case)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="watcher")
                self._thread.start()

    def remove(self, case: Case) -> None:
        with self._lock:
            if case in self._cases:
                self._cases.remove(case)

    def _run(self) -> None:
        passes = 0
        while True:
            passes += 1
            with self._lock:
                cases = list(self._cases)
            for case in cases:
                try:
                    found = i2_sample(case)
                    if passes % 5 == 0:
                        found += i3_one_unfinished(case)
                except Exception:  # a sample raced moto's own writes or a teardown: skip it
                    self.skipped += 1
                    continue
                self.samples += 1
                for problem in found:
                    if problem not in case.violations:
                        case.violations.append(problem)
            time.sleep(self.interval)
