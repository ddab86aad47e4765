"""In-memory stand-ins for the engine's ports, stricter than moto where AWS is strict.

`FakeAdobe` is the `AdobeApi` port for one credential, as hostile as the sandbox (the very
same switches, `rotator.devkit.sandbox.consistency`) and keeping the same oracle;
`FakeAws` is the `SecretsStore` port for one AWS secret, with AWS's staging-label rules;
`FakeClock` is the time they (and the store and engine of a test) share.
Both take one-shot `Faults` (a transient error, a `Crash` standing for SIGKILL, or an
action of the world's, before or after a call takes effect). `tests/integration/
test_port_conformance.py` runs one contract against these and against the real adapters.
"""

from __future__ import annotations

from rotator.devkit.fakes.adobe import CLIENT_ID, CREDENTIAL_ID, TOKEN_REUSE, FakeAdobe, ms
from rotator.devkit.fakes.aws import CURRENT, PENDING, PREVIOUS, FakeAws
from rotator.devkit.fakes.clock import FakeClock
from rotator.devkit.fakes.faults import Crash, Faults

__all__ = [
    "CLIENT_ID",
    "CREDENTIAL_ID",
    "CURRENT",
    "PENDING",
    "PREVIOUS",
    "TOKEN_REUSE",
    "Crash",
    "FakeAdobe",
    "FakeAws",
    "FakeClock",
    "Faults",
    "ms",
]
