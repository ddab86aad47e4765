"""Checkpoints put to S3 (moto's server): one object per checkpoint, and a sink that cannot
reach S3 does not fail the rotation that published it."""

from __future__ import annotations

import json
import uuid

import boto3
import structlog

from rotator import config
from rotator.app import audit_log
from rotator.audit.chain import KEYED, Checkpoint
from rotator.devkit.localaws import LocalAws


def test_each_checkpoint_is_an_object_in_the_bucket(local_aws: LocalAws) -> None:
    bucket = f"rotator-audit-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=local_aws.endpoint_url)
    s3.create_bucket(Bucket=bucket)
    settings = config.from_mapping(
        {
            "aws": {"endpoint_url": local_aws.endpoint_url},
            "audit": {"checkpoint_s3": f"s3://{bucket}/prod/checkpoints"},
        }
    )
    publish = audit_log(settings).publish
    for seq in (1, 2):
        publish(Checkpoint(seq, seq + 10, f"{seq}" * 64, KEYED, "k1", "2026-11-24T09:00:00+00:00"))
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="prod/checkpoints/")["Contents"]
    keys = [o["Key"] for o in listed]
    assert keys == ["prod/checkpoints/000000000001.json", "prod/checkpoints/000000000002.json"]
    body = json.loads(s3.get_object(Bucket=bucket, Key=keys[1])["Body"].read())
    assert Checkpoint.from_dict(body) == Checkpoint(
        2, 12, "2" * 64, KEYED, "k1", "2026-11-24T09:00:00+00:00"
    )


def test_an_unreachable_bucket_is_logged_not_raised(local_aws: LocalAws) -> None:
    settings = config.from_mapping(
        {
            "aws": {"endpoint_url": local_aws.endpoint_url},
            "audit": {"checkpoint_s3": "s3://no-such-bucket-rotator"},
        }
    )
    with structlog.testing.capture_logs() as logs:
        audit_log(settings).publish(Checkpoint(1, 1, "a" * 64, KEYED, "k1", ""))
    assert [e["event"] for e in logs][-1] == "audit checkpoint not put to S3"
