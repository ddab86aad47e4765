"""The long-lived process: `service` (the `Daemon`: tick, start, stop), `clock` (the
scheduler's jobs, the wait for the database at start), `health` (what /healthz and /readyz
say), `http` (serving them and /metrics), `workers` (the pool and what a stop waits for),
`lock` (one daemon per SQLite file)."""

from rotator.daemon.service import Daemon

__all__ = ["Daemon"]
