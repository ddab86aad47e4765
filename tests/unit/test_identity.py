"""Which uuid AWSCURRENT's value is: known by construction only (I12); what rotator sees of
usage times is a suggestion for a person, never a proof."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.domain.identity import BINDING, Identity, by_binding, suggestion
from rotator.domain.model import AdobeSecret

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_a_binding_counts_for_its_version_or_a_version_with_the_same_value() -> None:
    assert by_binding("v1", "a", "v1") == Identity("a", "v1", BINDING)
    assert by_binding("v2", "a", "v1") is None  # a hand edit made a new version
    # ... unless the new version holds the same plaintext: the same Adobe secret.
    assert by_binding("v2", "a", "v1", same_value=True) == Identity("a", "v2", BINDING)
    assert by_binding("v1", None, "v1") is None
    assert by_binding("v1", "a", None, same_value=True) is None


def test_the_suggestion_names_what_was_seen_and_the_exact_adopt_command() -> None:
    listed = [AdobeSecret("b", T0 - 9 * H, T0), AdobeSecret("a", T0 - 9 * H, None)]
    text = suggestion(why="why", name="analytics", secret_id="adobe/x", claimed="a", listed=listed)
    assert text.startswith("why: ")
    assert f"b (last used {T0.isoformat()})" in text and "a (last used never)" in text
    assert "records uuid a (only a claim)" in text
    assert text.endswith("`rotator adopt analytics --uuid a`")
    assert "\n" not in text


def test_a_claim_that_adobe_does_not_list_is_not_offered_as_the_command() -> None:
    listed = [AdobeSecret("b", T0, None)]
    text = suggestion(why="w", name="n", secret_id="s", claimed="gone", listed=listed)
    assert text.endswith("`rotator adopt n --uuid <uuid>`")
    none = suggestion(why="w", name="n", secret_id="s", claimed=None, listed=[])
    assert "records no uuid" in none and "Adobe lists nothing" in none
