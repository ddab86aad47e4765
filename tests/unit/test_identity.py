"""Which uuid AWSCURRENT's value is: a binding or an observation, never the AWS claim alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.domain.identity import (
    BINDING,
    CLOCK_SKEW,
    OBSERVED,
    Identity,
    IdentityVerdict,
    Probe,
    by_binding,
    judge_probe,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
BOUND = timedelta(minutes=30)
H = timedelta(hours=1)
LAG = timedelta(minutes=5)


def probe(
    baseline: dict[str, datetime | None],
    *answers: dict[str, datetime | None],
    candidate: str | None = None,
) -> Probe:
    """A test token minted at T0; `candidate` the uuid the token before it moved."""
    p = Probe("v1", T0, T0, baseline, dict(baseline), candidate)
    for answer in answers:
        p = p.fold(answer)
    return p


def test_a_binding_counts_only_for_its_exact_version() -> None:
    assert by_binding("v1", "a", "v1") == Identity("a", "v1", BINDING)
    assert by_binding("v2", "a", "v1") is None  # a hand edit made a new version
    assert by_binding("v1", None, "v1") is None


def judge(p: Probe, now: datetime, claimed: str | None = None) -> IdentityVerdict:
    return judge_probe(p, claimed=claimed, now=now, lag=LAG, bound=BOUND, secret_id="s", name="x")


SETTLED = T0 + LAG  # every use from before the test token has been reported by now


def test_one_uuid_moved_by_two_test_tokens_in_a_row_is_proof_once_the_lag_has_passed() -> None:
    answer = {"a": T0 - timedelta(days=1), "b": T0}
    first = probe({"a": T0 - timedelta(days=1), "b": None}, answer)
    assert judge(first, T0).wait  # not before: another secret's late report could still come
    once = judge(first, SETTLED)
    assert once.identity is None and once.reprobe and first.single() == "b"
    # The second token's baseline is everything the first saw: b must move past T0.
    later = {"a": T0 - timedelta(days=1), "b": T0 + LAG}
    second = probe(dict(first.seen), later, candidate="b")
    assert judge(second, SETTLED).identity == Identity("b", "v1", OBSERVED, ("a", "b"))
    unmoved = probe(dict(first.seen), answer, candidate="b")  # b still at the first's use
    verdict = judge(unmoved, SETTLED)
    assert verdict.identity is None and verdict.reprobe and unmoved.single() is None


def test_a_candidate_with_a_secret_the_token_never_saw_is_no_proof() -> None:
    p = probe({"a": None}, {"a": T0, "c": None}, candidate="a")
    verdict = judge(p, SETTLED)
    assert verdict.identity is None and verdict.reprobe
    assert p.single() is None  # the fresh token (in time or after a late judgment) confirms nothing


def test_what_a_fresh_token_must_confirm_is_the_one_uuid_this_token_moved() -> None:
    assert probe({"a": None, "b": None}, candidate="a").single() is None  # none moved
    assert probe({"a": None, "b": None}, {"a": T0}, candidate="a").single() == "a"
    assert probe({"a": None, "b": None}, {"b": T0}, candidate="a").single() == "b"
    assert probe({"a": None, "b": None}, {"a": T0, "b": T0}).single() is None


def test_one_token_is_one_observation_a_second_that_moves_another_uuid_starts_over() -> None:
    # The long run of 7 Dec on f165c13: a consumer still on the old secret used it in the
    # second of the test token while Adobe showed AWSCURRENT's own secret unused. One
    # token's answers named the old secret; the next token's show the truth.
    p = probe({"old": T0 - H, "live": None}, {"old": T0, "live": None}, candidate=None)
    assert judge(p, SETTLED, claimed="old").reprobe and p.single() == "old"
    both = {"old": T0 + timedelta(seconds=1), "live": T0}
    p = probe({"old": T0, "live": None}, both, candidate="old")
    verdict = judge(p, SETTLED, claimed="old")
    assert verdict.identity is None and verdict.reprobe and p.single() is None
    p = probe({"old": T0, "live": None}, {"old": T0, "live": T0}, candidate="old")
    assert judge(p, SETTLED, claimed="old").reprobe and p.single() == "live"  # next: confirm
    p = probe({"old": T0, "live": None}, both, candidate="live")
    late = judge(p, T0 + BOUND)
    assert late.attention and "moved the last use of 2 of them" in late.attention
    p = probe({"old": T0, "live": None}, {"old": T0, "live": T0 + timedelta(seconds=1)})
    late = judge(p, T0 + BOUND)
    assert late.attention and "which no second test token confirmed" in late.attention


def test_a_late_report_of_another_secrets_earlier_use_is_not_taken_for_the_probe() -> None:
    # Issue 11, found by the model: N was used seconds before the test token and that use
    # shows up first; the test token's own use (of D) shows up later. Deciding early would
    # prove N, matching the stale claim, and delete D, the live value.
    p = probe({"n": T0 - H, "d": T0 - H}, {"n": T0 - timedelta(seconds=5), "d": T0 - H})
    assert judge(p, T0 + timedelta(minutes=1), claimed="n").wait
    p = p.fold({"n": T0 - timedelta(seconds=5), "d": T0})
    verdict = judge(p, SETTLED, claimed="n")
    assert verdict.identity is None  # both moved near the mint: look again, never guess
    assert verdict.reprobe


def test_a_claim_the_observation_contradicts_asks_a_person() -> None:
    p = probe({"a": None, "b": None}, {"a": None, "b": T0 + timedelta(seconds=1)}, candidate="b")
    verdict = judge(p, SETTLED, claimed="a")
    assert verdict.identity is None
    assert verdict.attention and "moved the last use of b" in verdict.attention


def test_late_reports_are_merged_grow_only() -> None:
    p = probe({"a": None, "b": None}, {"a": None, "b": None}, candidate="a")
    p = p.fold({"a": T0 + timedelta(seconds=30), "b": None}).fold({"a": None, "b": None})
    proven = judge(p, SETTLED).identity
    assert proven == Identity("a", "v1", OBSERVED, ("a", "b"))  # the null did not undo it


def test_none_or_several_moved_asks_for_a_fresh_probe_then_a_person() -> None:
    for answer in ({"a": T0, "b": T0}, {"a": None, "b": None}):
        p = probe({"a": None, "b": None}, answer)
        assert judge(p, SETTLED).reprobe
        late = judge(p, T0 + BOUND)
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
    confirming = probe({"a": None}, {"a": T0}, candidate="a")
    assert Probe.from_dict(confirming.as_dict()) == confirming
    stored = {k: v for k, v in confirming.as_dict().items() if k != "candidate"}
    assert Probe.from_dict(stored) == probe({"a": None}, {"a": T0})  # from before 2 tokens
    assert Identity.from_dict(Identity("a", "v", OBSERVED).as_dict()) == Identity(
        "a", "v", OBSERVED
    )
    seen = Identity("a", "v", OBSERVED, ("a", "b"))
    assert Identity.from_dict(seen.as_dict()) == seen
    assert Identity.from_dict({"uuid": 3}) is None


def test_a_secret_first_listed_after_the_test_token_voids_the_observation() -> None:
    # The long run of 7 Dec: the list before the mint left out "d", the hand-made secret
    # AWSCURRENT holds; "n" (the recorded uuid) was used by rotator's own calls in the same
    # second and showed up late. One moved uuid, the claimed one, is no proof while a
    # secret whose move could not be seen is listed: look again with a fresh token.
    p = probe({"n": T0 - H}, {"d": None}, {"n": T0, "d": T0})
    assert p.moved() == ["n"]
    verdict = judge(p, SETTLED, claimed="n")
    assert verdict.identity is None and verdict.reprobe
    late = judge(p, T0 + BOUND, claimed="n")
    assert late.attention and "lists left out d before the test token" in late.attention


def test_an_observation_covers_only_the_secrets_it_saw() -> None:
    seen = Identity("a", "v", OBSERVED, ("a", "b"))
    assert seen.covers("b") and not seen.covers("c")
    assert Identity("a", "v", BINDING).covers("c")  # a binding is proof by construction
