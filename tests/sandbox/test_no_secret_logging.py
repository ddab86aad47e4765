"""The sandbox never writes a secret or a token to the log, whatever the level."""

from __future__ import annotations

import logging

import pytest

from rotator.devkit.sandbox import SandboxAdmin

from .conftest import Adobe


def test_nothing_secret_reaches_the_logs(
    adobe: Adobe, admin: SandboxAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = adobe.token()
    added = adobe.add_secret(token).json()
    adobe.token_response(secret="p8e-not-the-secret-" + adobe.secret)
    adobe.http.post(
        "/ims/token/v3", params={"client_secret": adobe.secret}, data={"grant_type": "x"}
    )
    adobe.http.get(
        "/ims/logout/v1/token", params={"access_token": token, "client_id": adobe.cred.client_id}
    )
    admin.drop_next("list_secrets")
    with pytest.raises(Exception):  # noqa: B017 - the dropped connection
        adobe.list_secrets(token)
    # httpx and httpcore are the test's own client; only the server side is under test.
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in server_side)
    for needle in [adobe.secret, added["client_secret"], token]:
        assert needle not in text
    assert adobe.secret in caplog.text  # the capture did see the client's own logging


def test_an_access_line_that_does_get_written_loses_its_query_string() -> None:
    from rotator.devkit.sandbox.server import _StripQueryStrings

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/ims/logout/v1/token?access_token=eyJ.x.y", "1.1", 200),
        None,
    )
    assert _StripQueryStrings().filter(record)
    assert "eyJ" not in record.getMessage()
    assert "/ims/logout/v1/token" in record.getMessage()
