"""Who is really acting: the verified identity recorded next to any claimed actor.

Two facts a person at the keyboard cannot type in: the AWS caller identity (STS
GetCallerIdentity, through the same credential chain rotator uses for Secrets Manager) and
the operating-system user of the process's real uid (not LOGNAME or USER, which anyone can
set). `--actor` names who someone says they are; this says who the credentials belong to.

The STS call runs in a background thread from the moment the probe is made, so a command
pays for it only if it writes an event before the answer arrives (an emergency rotation
overlaps it with its pre-flight).
"""

from __future__ import annotations

import os
import threading
from typing import Any


def os_user() -> str:
    """`os:NAME(uid N)` from the real uid (the environment is not asked)."""
    uid = os.getuid()
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"os:uid {uid}"
    return f"os:{name}(uid {uid})"


def aws_caller(
    region: str, endpoint_url: str = "", timeout: float = 5.0, session: Any = None
) -> str:
    """`aws:ARN` of the caller, or `aws:unverified (why)` when STS cannot say. Pass the
    botocore session rotator already has (much cheaper than a new one)."""
    try:
        import botocore.session
        from botocore.config import Config

        client: Any = (session or botocore.session.get_session()).create_client(
            "sts",
            region_name=region,
            endpoint_url=endpoint_url or None,
            config=Config(
                connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 2}
            ),
        )
        arn = client.get_caller_identity().get("Arn")
    except Exception as exc:  # no credentials, no network: recorded, never fatal
        return f"aws:unverified ({type(exc).__name__})"
    return f"aws:{arn}" if arn else "aws:unverified (no ARN in the answer)"


class IdentityProbe:
    """Starts asking at once; `result()` waits for the answer (at most `timeout`)."""

    def __init__(
        self, region: str, endpoint_url: str = "", timeout: float = 5.0, session: Any = None
    ) -> None:
        self._os = os_user()
        self._aws: str | None = None
        self._timeout = timeout
        self._thread = threading.Thread(
            target=self._ask,
            args=(region, endpoint_url, session),
            daemon=True,
            name="identity-probe",
        )
        self._thread.start()

    def _ask(self, region: str, endpoint_url: str, session: Any) -> None:
        self._aws = aws_caller(region, endpoint_url, self._timeout, session)

    def result(self) -> str:
        self._thread.join(self._timeout * 2)
        return f"{self._aws or 'aws:unverified (no answer in time)'} {self._os}"
