"""The botocore session rotator keeps: the services it uses, botocore's data as usual."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import UnknownServiceError

from rotator.adapters import aws_secrets


def test_it_makes_clients_for_secrets_manager_and_sts_and_refuses_others() -> None:
    made = aws_secrets.session()
    for service in ("secretsmanager", "sts"):
        client = made.create_client(
            service,
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:1",
            aws_access_key_id="placeholder",
            aws_secret_access_key="placeholder",
        )
        assert client.meta.service_model.service_name == service
    with pytest.raises(UnknownServiceError, match="secretsmanager, sts"):
        made.create_client("s3", region_name="us-east-1")


def test_it_searches_aws_data_path_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    paths = aws_secrets.session().get_component("data_loader").search_paths
    assert paths[0] == str(tmp_path)
    assert paths[-1].endswith("botocore/data")
