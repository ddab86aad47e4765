"""The soak's "no binding" (seed 409203367): a lost add answer in the first rotation of a
credential rotator never rotated, and one list that leaves the orphan out.

rotator knows AWSCURRENT's secret by construction only from a promotion of its own or an
`adopt` (I12). A credential it never rotated has neither: its first rotation goes on with
a free slot, and when an add whose answer was lost leaves a secret nobody can name, an
add refused at the two-secret limit must ask a person (the orphan could be AWSCURRENT's
secret left out of the list the add intent recorded). Once AWSCURRENT is known (adopted
after installing, or promoted by rotator), the same faults cost nothing: the orphan is
given back and the rotation goes on.
"""

from __future__ import annotations

from rotator.app import App
from rotator.domain.model import Rotation, State, Trigger
from tests.integration.test_known_by_construction import _drive
from tests.world import World


def _lost_add_then_a_list_without_the_orphan(world: World) -> tuple[App, Rotation, str]:
    """The add takes effect but its answer is lost; the next list leaves its secret out,
    so the add is sent again and refused at the two-secret limit."""
    current = world.creds["analytics"].secret.uuid  # type: ignore[union-attr]
    app = world.app
    world.admin.drop_next("add_secret", phase="after")
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    lost = _drive(app, rotation.id, lambda r: len(world.adobe_uuids()) == 2)
    assert lost.state is State.CREATING and "add secret" in (lost.last_error or "")
    orphan = next(u for u in world.adobe_uuids() if u != current)
    world.admin.omit_secret(uuid=orphan, count=1)
    return app, lost, orphan


def test_a_lost_add_in_a_never_rotated_credential_asks_for_adopt_and_deletes_nothing(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    cred = world.credential()  # installed, never adopted, never rotated by rotator
    current = cred.secret.uuid  # type: ignore[union-attr]
    app, rotation, orphan = _lost_add_then_a_list_without_the_orphan(world)

    asked = _drive(app, rotation.id, lambda r: r.state is State.NEEDS_ATTENTION)

    assert asked.state is State.NEEDS_ATTENTION
    assert "two-secret limit" in (asked.last_error or "")
    assert f"rotator adopt analytics --uuid {current}" in (asked.last_error or "")
    assert sorted(world.adobe_uuids()) == sorted([current, orphan])  # nothing deleted
    assert world.works()

    app.engine.adopt("analytics", current, actor="ops")  # the person confirms
    final = _drive(app, rotation.id, lambda r: r.state is State.COMPLETED, seconds=10)

    assert final.state is State.COMPLETED, final.last_error
    assert orphan not in world.adobe_uuids() and current not in world.adobe_uuids()
    assert world.works()


def test_a_lost_add_costs_nothing_once_awscurrent_is_known(sqlite_world: World) -> None:
    # What the soak's credentials lacked: `rotator adopt` once after installing (or a
    # first promotion) makes the orphan of a lost add rotator's to give back.
    world = sqlite_world
    cred = world.credential()
    current = cred.secret.uuid  # type: ignore[union-attr]
    world.adopt()
    app, rotation, orphan = _lost_add_then_a_list_without_the_orphan(world)

    final = _drive(app, rotation.id, lambda r: r.state is State.COMPLETED, seconds=10)

    assert final.state is State.COMPLETED, final.last_error
    assert "needs_attention" not in [e.kind for e in app.store.events(rotation_id=rotation.id)]
    assert orphan not in world.adobe_uuids() and current not in world.adobe_uuids()
    assert world.works()
