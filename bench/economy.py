"""API economy: what one rotation costs at Adobe and at AWS, against what the protocol needs.

Part 1 (engine): rotations driven to completion one at a time (quiet_period 1 s, polls
every 300 ms), normal and emergency. Every call is counted where it lands (the sandbox's
per-endpoint counters; moto's request log by X-Amz-Target) and attributed to the step
that made it; AwsSecrets.stats and AdobeClient.stats are printed beside them as a
cross-check. Drain polls are counted apart, per poll.

Part 2 (daemon): the real daemon (`Daemon.run()`, tick 1 s) looks after a few credentials
from scratch: it surveys each, finds its secret older than max_age, rotates it, drains,
retires, and keeps surveying. Tokens minted per credential are read from the sandbox
(which secret minted each), all within one token lifetime (24 h at Adobe and here).

    .venv/bin/python bench/economy.py            # 5 normal + 5 emergency, daemon with 5
    .venv/bin/python bench/economy.py --quick    # 3 + 3, daemon with 3
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

from rotator import app as app_mod
from rotator.daemon import Daemon
from rotator.domain.model import Rotation, State, Trigger

FAST = {"quiet_period": "1s", "poll_interval": "300ms", "verify_timeout": "5s"}
ADOBE = ("token", "list_secrets", "add_secret", "delete_secret", "invalidate", "revoke")
AWS = ("GetSecretValue", "DescribeSecret", "PutSecretValue", "UpdateSecretVersionStage")

# The least each phase needs, from the protocol in docs/design (rotation.md) and the AWS
# rotation protocol; see README for the derivation of each number.
MINIMUM: dict[str, dict[str, dict[str, int]]] = {
    "normal": {
        "to draining": {
            "token": 2,  # one management token (old secret) + one verification (new)
            "list_secrets": 1,  # planned: the uuids and strays, persisted before any write
            "add_secret": 1,
            "GetSecretValue": 1,  # planned: AWSCURRENT (value, uuid, version id)
            "DescribeSecret": 1,  # promote: "check the labels first" (idempotent finish)
            "PutSecretValue": 1,  # AWSPENDING with the persisted token
            "UpdateSecretVersionStage": 2,  # move AWSCURRENT; remove AWSPENDING
        },
        "per drain poll": {"list_secrets": 1},  # last_used_at of the old secret
        "retire": {
            "GetSecretValue": 1,  # I2: AWSCURRENT must hold the new uuid before any delete
            "delete_secret": 1,  # the token is cached; 404 counts as done
        },
    },
    "emergency": {
        "to retiring": {
            "token": 2,
            "list_secrets": 1,
            "add_secret": 1,
            "GetSecretValue": 1,
            "DescribeSecret": 1,
            "PutSecretValue": 1,
            "UpdateSecretVersionStage": 2,
        },
        "retire": {
            "GetSecretValue": 1,  # I2, as above; the leaked value was read at planned
            "invalidate": 1,  # the one token this process minted with the leaked secret
            "delete_secret": 1,  # every other secret (one, here)
        },
    },
}


def phase_of(state: str, emergency: bool) -> str:
    if state == "draining":
        return "per drain poll"
    if state in {"retiring"}:
        return "retire"
    return "to retiring" if emergency else "to draining"


def rotate_counted(
    app: Any, sandbox: h.Sandbox, moto: h.Moto, name: str, emergency: bool
) -> dict[str, Any]:
    """Drive one rotation to its end; attribute every call to the step that made it."""
    sandbox.admin.reset_counters()
    moto.clear_log()
    adobe0, aws0 = dict(app.adobe.stats), dict(app.aws.stats)
    marks: list[tuple[float, str]] = []  # (when a step ended, the state it ran in)
    adobe_by_phase: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    last = {"state": "planned", "counters": dict.fromkeys(ADOBE, 0)}
    polls = 0

    def on_step(rotation: Rotation) -> None:
        nonlocal polls
        now = sandbox.admin.counters()["endpoints"]
        counts = {k: now[k]["requests"] for k in ADOBE}
        ran_in = str(last["state"])
        phase = phase_of(ran_in, emergency)
        if ran_in == "draining":
            polls += 1
        for k in ADOBE:
            adobe_by_phase[phase][k] += counts[k] - last["counters"][k]  # type: ignore[index]
        marks.append((time.time(), ran_in))
        last["state"], last["counters"] = rotation.state.value, counts

    trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
    final = app.engine.request(name, trigger, actor="bench")
    deadline = time.monotonic() + 60
    # `rotator rotate --wait`'s loop, with a callback after every step (drain polls too).
    while not final.state.terminal and final.state is not State.NEEDS_ATTENTION:
        claim = app.engine.claim(final.id)
        final = app.engine.drive(claim, on_step=on_step) if claim else app.store.get(final.id)
        if time.monotonic() > deadline:
            break
        if final.next_attempt_at is not None and not final.state.terminal:
            time.sleep(min(max((final.next_attempt_at - h.now()).total_seconds(), 0.02), 1.0))
    aws_by_phase: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for arrived, _, target in moto.log():
        ran_in = next((s for t, s in marks if t >= arrived), "completed")
        aws_by_phase[phase_of(ran_in, emergency)][target] += 1
    return {
        "final": final.state.value,
        "polls": polls,
        "adobe": {p: dict(c) for p, c in adobe_by_phase.items()},
        "aws": {p: dict(c) for p, c in aws_by_phase.items()},
        "adobe_stats": {k: v - adobe0.get(k, 0) for k, v in app.adobe.stats.items()},
        "aws_stats": {k: v - aws0.get(k, 0) for k, v in app.aws.stats.items()},
    }


def per_phase(runs: list[dict[str, Any]], phase: str, per_poll: bool = False) -> dict[str, float]:
    """Median count per endpoint in a phase (per poll for the drain phase)."""
    out: dict[str, float] = {}
    for key in (*ADOBE, *AWS):
        values = []
        for r in runs:
            side = r["adobe"] if key in ADOBE else r["aws"]
            n = side.get(phase, {}).get(key, 0)
            if per_poll:
                n = n / max(1, r["polls"])
            values.append(n)
        if any(values):
            out[key] = h.median(values)
    return out


def show_phase(kind: str, phase: str, measured: dict[str, float]) -> tuple[float, float]:
    minimum = MINIMUM[kind].get(phase, {})
    keys = [k for k in (*ADOBE, *AWS) if k in measured or k in minimum]
    adobe_m = sum(measured.get(k, 0) for k in ADOBE)
    aws_m = sum(measured.get(k, 0) for k in AWS)
    adobe_min = sum(minimum.get(k, 0) for k in ADOBE)
    aws_min = sum(minimum.get(k, 0) for k in AWS)
    print(
        f"  {kind:9} {phase:15} Adobe {adobe_m:4.1f} (min {adobe_min})  "
        f"AWS {aws_m:4.1f} (min {aws_min})   "
        + ", ".join(f"{k} {measured.get(k, 0):g}/{minimum.get(k, 0)}" for k in keys)
    )
    return adobe_m, aws_m


def engine_part(args: argparse.Namespace) -> None:
    with h.stand_ins() as (sandbox, moto), h.database("sqlite") as url:
        n = args.runs
        creds, _ = h.make_fleet(sandbox, moto, 2 * n + 1)
        settings = h.settings(h.settings_mapping(url, sandbox.url, moto.url, creds, defaults=FAST))
        app = app_mod.build(settings, upgrade=True)
        try:
            # Warm-up (first connections, first moto call) on a credential of its own.
            rotate_counted(app, sandbox, moto, creds[-1]["name"], False)
            normal = [rotate_counted(app, sandbox, moto, c["name"], False) for c in creds[:n]]
            emergency = [
                rotate_counted(app, sandbox, moto, c["name"], True) for c in creds[n : 2 * n]
            ]
        finally:
            app.close()
    ends = collections.Counter(r["final"] for r in normal + emergency)
    print(f"engine: {n} normal + {n} emergency rotations to their end ({dict(ends)})")
    print("  calls per phase, median over rotations (measured/minimum per endpoint):")
    a1, w1 = show_phase("normal", "to draining", per_phase(normal, "to draining"))
    a2, w2 = show_phase("normal", "per drain poll", per_phase(normal, "per drain poll", True))
    a3, w3 = show_phase("normal", "retire", per_phase(normal, "retire"))

    def minimum(kind: str, phases: tuple[str, ...], side: tuple[str, ...]) -> int:
        return sum(MINIMUM[kind][p].get(k, 0) for p in phases for k in side)

    both = ("to draining", "retire")
    print(
        f"  normal rotation without polls: Adobe {a1 + a3:g} (min "
        f"{minimum('normal', both, ADOBE)}), AWS {w1 + w3:g} (min "
        f"{minimum('normal', both, AWS)}); each drain poll adds Adobe {a2:g} (min 1), "
        f"AWS {w2:g} (min 0); median polls {h.median([r['polls'] for r in normal]):g}"
    )
    e1, v1 = show_phase("emergency", "to retiring", per_phase(emergency, "to retiring"))
    e2, v2 = show_phase("emergency", "retire", per_phase(emergency, "retire"))
    both = ("to retiring", "retire")
    print(
        f"  emergency rotation: Adobe {e1 + e2:g} (min {minimum('emergency', both, ADOBE)}), "
        f"AWS {v1 + v2:g} (min {minimum('emergency', both, AWS)})"
    )
    print(f"  AdobeClient.stats, first normal rotation: {normal[0]['adobe_stats']}")
    print(f"  AwsSecrets.stats,  first normal rotation: {normal[0]['aws_stats']}")
    print(f"  AdobeClient.stats, first emergency:       {emergency[0]['adobe_stats']}")
    print(f"  AwsSecrets.stats,  first emergency:       {emergency[0]['aws_stats']}")


def daemon_part(args: argparse.Namespace) -> None:
    """Tokens per credential while the real daemon surveys, rotates, drains and retires."""
    with h.stand_ins() as (sandbox, moto), h.database("sqlite") as url:
        creds, created = h.make_fleet(sandbox, moto, args.daemon_credentials)
        for cred in created:  # Adobe's created_at says 91 days: due once surveyed
            assert cred.secret is not None
            sandbox.admin.set_secret_times(
                cred.credential_id, cred.secret.uuid, created_ago_s=91 * 86400
            )
        settings = h.settings(
            h.settings_mapping(
                url,
                sandbox.url,
                moto.url,
                creds,
                defaults={**FAST, "quiet_period": "2s", "poll_interval": "1s"},
                daemon={"tick": "1s", "jitter": "0s"},
            )
        )
        sandbox.admin.reset_counters()
        daemon = Daemon(settings)
        completed: set[str] = set()
        done = threading.Event()

        def seen(rows: list[Any]) -> None:
            completed.update(r.credential for r in rows if r.state == State.COMPLETED.value)
            if len(completed) == len(creds):
                done.set()

        h.watch_rotations(daemon, seen, done)

        def stopper() -> None:
            done.wait(args.timeout)
            time.sleep(args.linger)  # keep surveying a while after the rotations ended
            daemon._stop.set()
            if daemon.app is not None:
                daemon.app.engine.stopping.set()

        thread = threading.Thread(target=stopper, daemon=True)
        thread.start()
        started = time.monotonic()
        daemon.run()
        elapsed = time.monotonic() - started
        thread.join()
        counters = sandbox.admin.counters()["endpoints"]
        per_cred = []
        for cred in created:
            assert cred.secret is not None
            tokens = sandbox.admin.tokens(cred.client_id)
            by_secret = collections.Counter(
                "old" if t["secret_uuid"] == cred.secret.uuid else "new" for t in tokens
            )
            per_cred.append(by_secret)
    n = len(creds)
    print(
        f"daemon: {n} credentials surveyed, rotated, drained and retired by `Daemon.run()` "
        f"(tick 1 s) in {elapsed:.1f}s, {len(completed)} completed; "
        f"then {args.linger:g}s more of surveys every poll_interval (1 s)"
    )
    print(
        "  tokens minted per credential: "
        + ", ".join(f"old secret {c['old']} + new secret {c['new']}" for c in per_cred[:3])
        + (" ..." if n > 3 else "")
    )
    old = h.median([c["old"] for c in per_cred])
    new = h.median([c["new"] for c in per_cred])
    print(
        f"  median per credential: {old:g} management token (old secret) + {new:g} "
        f"verification token (new secret, then reused for drain polls, retirement and surveys)"
        f"; target 1 + 1"
    )
    print(
        "  sandbox calls in total: "
        + ", ".join(f"{k} {v['requests']}" for k, v in counters.items() if v["requests"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rotations of each kind")
    parser.add_argument("--daemon-credentials", type=int, default=5)
    parser.add_argument("--linger", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.daemon_credentials, args.linger = 3, 3, 3.0
    h.quiet_logs()
    h.print_machine()
    engine_part(args)
    daemon_part(args)


if __name__ == "__main__":
    main()
