"""Which uuid AWSCURRENT's value is: a binding or an observation, never the AWS claim alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.domain.identity import (
    BINDING,
    CLOCK_SKEW,
    OBSERVED,
    Identity,
    Probe,
    by_binding,
    judge_probe,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
BOUND = timedelta(minutes=30)


def probe(baseline: dict[str, datetime | None], *answers: dict[str, datetime | None]) -> Probe:
    p = Probe("v1", T0, T0, baseline, dict(baseline))
    for answer in answers:
        p = p.fold(answer)
    return p


def test_a_binding_counts_only_for_its_exact_version() -> None:
    assert by_binding("v1", "a", "v1") == Identity("a", "v1", BINDING)
    assert by_binding("v2", "a", "v1") is None  # a hand edit made a new version
    assert by_binding("v1", None, "v1") is None


def test_exactly_one_moved_uuid_is_proof() -> None:
    p = probe({"a": T0 - timedelta(days=1), "b": None}, {"a": T0 - timedelta(days=1), "b": T0})
    verdict = judge_probe(p, claimed=None, now=T0, bound=BOUND, secret_id="s", name="x")
    assert verdict.identity == Identity("b", "v1", OBSERVED)


def test_a_claim_the_observation_contradicts_asks_a_person() -> None:
    p = probe({"a": None, "b": None}, {"a": None, "b": T0 + timedelta(seconds=1)})
    verdict = judge_probe(p, claimed="a", now=T0, bound=BOUND, secret_id="s", name="x")
    assert verdict.identity is None
    assert (
        verdict.attention
        and "a" in verdict.attention
        and "moved the last use of b" in verdict.attention
    )


def test_a_late_report_waits_then_decides_from_grow_only_answers() -> None:
    p = probe({"a": None, "b": None}, {"a": None, "b": None})
    waiting = judge_probe(
        p, claimed=None, now=T0 + timedelta(minutes=1), bound=BOUND, secret_id="s", name="x"
    )
    assert waiting.wait and waiting.identity is None
    p = p.fold({"a": T0 + timedelta(seconds=30), "b": None}).fold({"a": None, "b": None})
    decided = judge_probe(
        p, claimed=None, now=T0 + timedelta(minutes=2), bound=BOUND, secret_id="s", name="x"
    )
    assert decided.identity == Identity("a", "v1", OBSERVED)  # the later null did not undo it


def test_several_moved_asks_for_a_fresh_probe_then_a_person() -> None:
    p = probe({"a": None, "b": None}, {"a": T0, "b": T0})
    early = judge_probe(p, claimed=None, now=T0, bound=BOUND, secret_id="s", name="x")
    assert early.wait and early.reprobe
    late = judge_probe(p, claimed=None, now=T0 + BOUND, bound=BOUND, secret_id="s", name="x")
    assert late.attention and "refusing to delete on a guess" in late.attention


def test_a_uuid_missing_before_the_mint_or_an_old_use_proves_nothing() -> None:
    # The list left "c" out before the mint, then shows it with a use from yesterday.
    p = probe({"a": None}, {"a": None, "c": T0 - timedelta(days=1)})
    assert p.moved() == []
    p = probe({"a": None}, {"a": T0 - CLOCK_SKEW - timedelta(seconds=1)})
    assert p.moved() == []


def test_a_probe_reads_back_the_same() -> None:
    p = probe({"a": None, "b": T0}, {"a": T0, "b": T0})
    assert Probe.from_dict(p.as_dict()) == p
    assert Identity.from_dict(Identity("a", "v", OBSERVED).as_dict()) == Identity(
        "a", "v", OBSERVED
    )
    assert Identity.from_dict({"uuid": 3}) is None
