"""The redactor's cost as a daemon sees more secrets: one log line after each registration.

Every secret and token the process sees is registered with `rotator.redaction`, and every
log line passes `redact()` (at `rotator run`'s default INFO level, each step of each
rotation logs a line). This registers what one rotation registers (the AWSCURRENT value,
a management token, the new secret, a verification token) and then redacts one rendered
log line, as the next step's log line would, and reports the time of that one `redact()`
and this process's memory as rotations accumulate.

    .venv/bin/python bench/redaction.py                   # up to 1,000 rotations
    .venv/bin/python bench/redaction.py --rotations 300   # quicker
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

from rotator import redaction

LINE = (
    '{"event": "rotation step", "credential": "c00042", "rotation_id": 42, "kind": "verified", '
    '"from_state": "staged", "to_state": "verified", "level": "info", '
    '"timestamp": "2026-01-01T00:00:00Z"}'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rotations", type=int, default=1000)
    args = parser.parse_args()
    h.print_machine()
    checkpoints = {n for n in (1, 10, 100, 250, 500, 750, 1000, 2000) if n <= args.rotations}
    checkpoints.add(args.rotations)
    started = time.process_time()
    rss0 = h.rss_mb(os.getpid())
    which = "rotator.redaction"
    print(
        f"redaction ({which}): {args.rotations} rotations, 4 values registered each, "
        "then one redact()"
    )
    for i in range(1, args.rotations + 1):
        redaction.register(
            secrets.token_urlsafe(30),  # AWSCURRENT's client secret
            "eyJ" + secrets.token_urlsafe(90),  # management token
            secrets.token_urlsafe(30),  # the new secret
            "eyJ" + secrets.token_urlsafe(90),  # verification token
        )
        t = time.perf_counter()
        redaction.redact(LINE)
        one = time.perf_counter() - t
        if i in checkpoints:
            t = time.perf_counter()
            redaction.redact(LINE)
            again = time.perf_counter() - t
            print(
                f"  after {i:5d} rotations ({redaction.known_count():5d} values): redact() after "
                f"a registration {1000 * one:7.1f} ms, without one {1000 * again:6.2f} ms; "
                f"RSS +{h.rss_mb(os.getpid()) - rss0:5.0f} MB; CPU so far "
                f"{time.process_time() - started:6.1f}s"
            )


if __name__ == "__main__":
    main()
