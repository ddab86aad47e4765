"""Keys kept in AWS Secrets Manager (moto's server): plain, JSON field, and a missing one."""

from __future__ import annotations

import json
import secrets
import uuid

import boto3
import pytest

from rotator import redaction
from rotator.audit.keys import KeySource
from rotator.devkit.localaws import LocalAws
from rotator.domain.errors import ConfigError


def test_keys_from_aws_secrets_manager(local_aws: LocalAws) -> None:
    sm = boto3.client(
        "secretsmanager", region_name="us-east-1", endpoint_url=local_aws.endpoint_url
    )
    plain, field = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    name = f"rotator/audit-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=name, SecretString=plain)
    sm.create_secret(Name=name + "-json", SecretString=json.dumps({"hmac": field}))
    where = {"endpoint_url": local_aws.endpoint_url}

    assert KeySource("a", aws_secret=name).load(**where).material == plain.encode()
    key = KeySource("b", aws_secret=name + "-json", json_key="hmac").load(**where)
    assert key.material == field.encode()
    assert redaction.redact(field) == redaction.MASK

    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        KeySource("c", aws_secret=name + "-missing").load(**where)
    with pytest.raises(ConfigError, match="JSON object") as caught:
        KeySource("d", aws_secret=name, json_key="hmac").load(**where)
    assert plain not in str(caught.value)
