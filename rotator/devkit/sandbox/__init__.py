"""A local fake of Adobe IMS and the I/O Management API, for tests, benchmarks and demos.

It is a real HTTP server (Starlette on uvicorn) so the rotator's own Adobe client is
exercised end to end, with faults a real Adobe cannot be asked for: latency, errors,
dropped connections, requests held mid-flight while a test kills the client, and the
answers of an eventually consistent service (lagging ``last_used_at``, slow secret
propagation, secrets left out of a list, usages shown null or stale, deleted secrets still
listed, adds answered 200/201/202), while an oracle records what really happened.

* :class:`~rotator.devkit.sandbox.state.SandboxState`: the Adobe model, no HTTP (``state.py``),
  a facade over one shared core (``world.py``) and a class per concern: IMS (``ims.py``),
  the secrets API (``secrets_api.py``), the admin controls and views (``admin.py``,
  ``admin_views.py``); records, settings and replies in ``model.py``, save/load in
  ``document.py``;
* :class:`~rotator.devkit.sandbox.faults.FaultPlan`: faults, holds, counters (``faults.py``);
* :class:`~rotator.devkit.sandbox.consistency.Consistency`: eventual-consistency switches
  (``consistency.py``);
* :class:`~rotator.devkit.sandbox.oracle.Oracle`: the true uses, refusals and deletions
  (``oracle.py``);
* :mod:`~rotator.devkit.sandbox.rs256`: RS256 JWTs for the legacy exchange (``rs256.py``);
* :func:`~rotator.devkit.sandbox.app.create_app`: the ASGI app (``app.py``), its plumbing
  and fault machinery in ``asgi.py``, its routes by concern (``routes_ims.py``,
  ``routes_secrets.py``, ``routes_admin.py``, ``routes_controls.py``);
* :class:`~rotator.devkit.sandbox.server.SandboxServer`: run it in a thread (``server.py``);
* :class:`~rotator.devkit.sandbox.client.SandboxAdmin`: drive it from tests (``client.py``,
  over :class:`~rotator.devkit.sandbox.controls_client.SandboxControls`);
* ``rotator sandbox``: run it from the command line (``cli.py``);
* :mod:`rotator.devkit.sandbox.testing`: pytest fixtures for other suites.
"""

from rotator.devkit.sandbox.client import (
    CreatedCredential,
    SandboxAdmin,
    SandboxAdminError,
    SecretValue,
)
from rotator.devkit.sandbox.consistency import SWITCHES, Consistency
from rotator.devkit.sandbox.controls_client import SandboxControls
from rotator.devkit.sandbox.faults import ENDPOINTS, FaultPlan
from rotator.devkit.sandbox.oracle import Oracle
from rotator.devkit.sandbox.server import SandboxServer
from rotator.devkit.sandbox.state import MANAGEMENT_SCOPES, SandboxState, Settings

__all__ = [
    "ENDPOINTS",
    "MANAGEMENT_SCOPES",
    "SWITCHES",
    "Consistency",
    "CreatedCredential",
    "FaultPlan",
    "Oracle",
    "SandboxAdmin",
    "SandboxAdminError",
    "SandboxControls",
    "SandboxServer",
    "SandboxState",
    "SecretValue",
    "Settings",
]
