"""`rotator demo`: one normal and one emergency rotation, end to end, on this machine.

Everything runs in this process on 127.0.0.1: the Adobe sandbox (a real HTTP fake of IMS and
the I/O Management API), moto's server standing in for AWS Secrets Manager, and a SQLite
state database in a fresh directory that is kept afterwards. The rotations are driven by
the real engine (`app.build`, `engine.request`, `rotator.engine.follow`): the same code, the
same state machine and the same audit trail as in production; only the quiet period is
shortened from 25 hours to seconds.

A simulated consumer thread uses the credential the way docs/operations.md asks consumers
to: it caches its access token until it expires (1 s here, about 24 h at Adobe), then reads
AWSCURRENT again and mints a new one. Its tally is the demo's proof of invariant I8: during
the normal rotation it never gets ``invalid_client``.

Nothing here prints a secret value: every line passes the redactor, and at the end the demo
checks its own output against every client secret and access token the sandbox issued.
Heavy imports (moto, boto3, the engine) happen inside the command, so `rotator --help`
stays fast and importing this package does not import `rotator.cli` (which loads it by name).

The parts: ``command.py`` (the click command and the run), ``context.py`` (what every part
shares: files, output, problems), ``output.py`` (plain lines or live boards), ``consumer.py``
(the simulated consumer), ``prepare.py`` (credential, AWS secret, config, app),
``rotations.py`` (the two rotations and the checks after them), ``record.py`` (the audit
trail, the report, the leak check and the files left behind).
"""

from rotator.devkit.demo.command import demo

__all__ = ["demo"]
