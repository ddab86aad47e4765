"""Issue 26: one spelling of an Adobe secret uuid wherever rotator reads one.

On fae5c9a uuids were compared as raw strings: the same secret spelt `11EDE399-...` in an
AWS value (or by an operator) and `11ede399...` by Adobe was two secrets, so a binding or
a recorded uuid matched nothing. Adobe's answers (tests/unit/test_adobe_answers.py), AWS
values (here) and `rotator adopt` (the CLI) all go through `canonical_uuid`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotator.adapters.aws_secrets import AwsSecrets
from rotator.domain.model import canonical_uuid

ADOBE = "11ede399b68b57a5aca6a96b8b6487c9"


@pytest.mark.parametrize(
    "spelt",
    [
        ADOBE,
        ADOBE.upper(),
        "11ede399-b68b-57a5-aca6-a96b8b6487c9",
        "11EDE399-B68B-57A5-ACA6-A96B8B6487C9",
        f"  {ADOBE}\n",
    ],
)
def test_every_spelling_of_a_uuid_is_adobes(spelt: str) -> None:
    assert canonical_uuid(spelt) == ADOBE


@pytest.mark.parametrize("other", ["not-a-uuid", "11ede399", ADOBE + "0", "g" * 32])
def test_what_is_no_uuid_is_left_as_typed(other: str) -> None:
    assert canonical_uuid(f" {other} ") == other


class _Answers:
    """A botocore client that answers one GetSecretValue."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        return {
            "VersionId": "v1",
            "VersionStages": ["AWSCURRENT"],
            "SecretString": json.dumps(self.value),
        }


def test_a_uuid_a_person_typed_into_aws_is_read_in_adobes_spelling() -> None:
    value = {"client_secret": "p8e-x", "secret_uuid": "11EDE399-B68B-57A5-ACA6-A96B8B6487C9"}
    aws = AwsSecrets(region="us-east-1", client=_Answers(value))  # type: ignore[arg-type]

    read = aws.read("adobe/analytics")

    assert read is not None
    assert read.value == {"client_secret": "p8e-x", "secret_uuid": ADOBE}
