"""Issue 26's findings in the rough world, as named model examples.

Each drives the model of `test_engine_model.py` (the real Engine and Store, the in-memory
Adobe and AWS, a fake clock) through one sequence that the world of fae5c9a could not
produce: only token mints are uses, Adobe's clock may be off ours by more than the two
minutes `identity.CLOCK_SKEW` allows, a contradiction may outlast `usage_lag`, and a
consumer may be busy on the other secret while the rotator observes. Every invariant and
the oracle are checked after each operation; safety only (these worlds break the bounds
liveness rests on).

On fae5c9a each failed on the engine's rule, not on the world (a clock skew past
CLOCK_SKEW let busy consumers prove the wrong secret; two null answers decided a proof; a
contradiction outlasting usage_lag ended in a delete); the engine that destroys only what
it knows by construction (I12, I13) passes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.devkit.fakes import CREDENTIAL_ID, CURRENT
from tests.reliability.test_engine_model import NAME, EngineModel, template

__all__ = ["template"]

TICK = timedelta(minutes=10)  # the model's poll_interval


@pytest.fixture
def model(template: Path) -> Iterator[EngineModel]:
    EngineModel.template = template
    instance = EngineModel()
    instance.bounded = False  # these worlds break the bounds: safety only
    yield instance
    instance.close()


def _ticks(model: EngineModel, n: int, *, consumer_uses: str | None = None) -> None:
    """`n` times: ten minutes pass, a consumer may mint with `consumer_uses`, consumers
    busy on the other secret mint, the daemon steps whatever is due; then every safety
    invariant and the oracle."""
    for _ in range(n):
        model.clock.now += TICK
        if consumer_uses is not None:
            model.adobe.mint(consumer_uses)
        model.adobe.consumers_tick()
        model._work(1)
        model.i2_never_deleted_awscurrent()
        model.i1_awscurrent_works()
        model.oracle_no_deletion_under_a_consumer()
        model.i3_one_unfinished()


def _a_second_secret_in_use(model: EngineModel) -> tuple[str, str]:
    """A consumer uses secret A; a person makes B in the Console and pastes it into
    AWSCURRENT without a uuid; consumers keep using A (busy on the other secret)."""
    a = (model.aws.value(CURRENT) or {})["secret_uuid"]
    model.consumer_reads_current_and_mints()
    model.operator_rotates_by_hand("missing")
    b = next(uuid for uuid in model.adobe.secrets if uuid != a)
    model.adobe.busy_other = True
    return a, b


def test_adobe_clock_behind_ours_never_lets_busy_consumers_prove_the_wrong_secret(
    model: EngineModel,
) -> None:
    model.adobe.skew = timedelta(minutes=-10)
    _a_second_secret_in_use(model)
    model.start_emergency()
    _ticks(model, 30)
    assert not model.adobe.i2_violations


def test_null_usages_of_awscurrent_never_let_busy_consumers_prove_the_wrong_secret(
    model: EngineModel,
) -> None:
    _a, b = _a_second_secret_in_use(model)
    model.adobe.consistency.distort_usages(mode="null", uuid=b)  # until cleared
    model.start_emergency()
    _ticks(model, 30)
    assert not model.adobe.i2_violations


def test_null_usages_past_usage_lag_never_end_in_a_delete_under_a_consumer(
    model: EngineModel,
) -> None:
    old_uuid = (model.aws.value(CURRENT) or {})["secret_uuid"]
    old_value = (model.aws.value(CURRENT) or {})["client_secret"]
    model.start_normal()
    _ticks(model, 3, consumer_uses=old_value)  # planned .. draining; Adobe shows the uses
    rule = model.adobe.consistency.distort_usages(mode="null", uuid=old_uuid)
    model.adobe.contradictions_only.add(rule)
    _ticks(model, 36, consumer_uses=old_value)  # six hours of a consumer every 10 minutes
    truth = model.adobe.oracle.secret(CREDENTIAL_ID, old_uuid)
    assert truth is not None and truth.deleted_at is None, "deleted under its consumer"
    assert model.store.active(NAME) is not None  # still draining, or asking a person


def test_busy_consumers_of_the_other_secret_alone_do_not_fool_the_proof(
    model: EngineModel,
) -> None:
    """The control of the two above: the same emergency with Adobe's clock right and no
    null answer is safe on fae5c9a (so what fails them is the skew, the nulls)."""
    _a_second_secret_in_use(model)
    model.start_emergency()
    _ticks(model, 30)
    assert not model.adobe.i2_violations
