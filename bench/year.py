"""A year of a daemon's life in-process: does memory stay flat?

1,000 credentials (default). Every simulated day each credential is surveyed: AWSCURRENT is
read (its value registered with the redactor as `AwsSecrets.read` does) and the management
token an Adobe call would use is fetched (the value registered as `_api_call` does; the
token is cached, so minted again once a day; the list call itself is left out to halve the
run time, it keeps nothing). Every quarter each
credential rotates (staggered over the quarter): a new secret (as Adobe's add returns it),
verified by a mint, read back from AWS, the old secret deleted. Time is a fake clock given
to the Adobe client and the redactor; Adobe is an httpx.MockTransport, so only rotator's
own code runs (the real `AdobeClient` and `rotator.redaction`).

Printed at the start, after each quarter and at the end: this process's RSS, the redactor's
registry (values, and by why they are kept where the code says), and the Adobe client's
token states (secrets with a state, minted tokens kept).

    .venv/bin/python bench/year.py                   # 1,000 credentials, 365 days
    .venv/bin/python bench/year.py --credentials 200 --days 120   # quicker

Run against an older commit to compare (its redactor has no `sizes()`; values only):
    PYTHONPATH=$(bench/snapshot.sh 1921d21) .venv/bin/python bench/year.py
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

from rotator import redaction
from rotator.adapters.adobe import AdobeClient
from rotator.ports import CredentialRef

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class FakeAdobe(httpx.BaseTransport):
    """Tokens (a day's life), a list of the credential's secrets, add and delete."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mints = 0
        self.secrets: dict[str, list[dict[str, Any]]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/ims/token/v3":
            self.mints += 1
            token = f"eyJ{uuid.uuid4().hex}{uuid.uuid4().hex}"
            return httpx.Response(200, json={"access_token": token, "expires_in": 86399})
        credential = path.split("/credentials/")[1].split("/")[0]
        if request.method == "GET":
            return httpx.Response(200, json={"client_secrets": self.secrets[credential]})
        if request.method == "DELETE":
            gone = path.rsplit("/", 1)[1]
            self.secrets[credential] = [s for s in self.secrets[credential] if s["uuid"] != gone]
            return httpx.Response(204)
        return httpx.Response(404)

    def add(self, credential: str) -> str:
        entry = {"uuid": uuid.uuid4().hex, "created_at": int(self.clock() * 1000)}
        self.secrets.setdefault(credential, []).append(entry)
        return str(entry["uuid"])


def figures(client: AdobeClient) -> dict[str, Any]:
    gc.collect()
    sizes = getattr(redaction, "sizes", None)
    keys = client._ims.cache.keys
    return {
        "rss_mb": round(h.rss_mb(os.getpid()), 1),
        "redactor values": redaction.known_count(),
        **({f"  {k}": v for k, v in sizes().items() if k != "values"} if sizes else {}),
        "token states (secrets)": len(keys),
        "tokens kept": sum(len(s.minted) for s in keys.values()),
    }


def show(label: str, row: dict[str, Any]) -> None:
    print(f"  {label:<10} " + ", ".join(f"{k.strip()} {v}" for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--credentials", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    h.print_machine()
    clock = Clock()
    if hasattr(redaction, "clock"):
        redaction.clock = clock
    adobe = FakeAdobe(clock)
    client = AdobeClient("https://ims.test", "https://api.test", transport=adobe, clock=clock)
    creds = [
        CredentialRef(f"c{i:05d}", "org", f"{i}", f"client{i:05d}") for i in range(args.credentials)
    ]
    current: dict[str, tuple[str, str]] = {}  # name -> (uuid, value)
    for cred in creds:
        current[cred.name] = (adobe.add(cred.credential_id), f"p8e-{uuid.uuid4().hex}")
    scoped = hasattr(redaction, "sizes")  # False on the code before this bench

    def read_aws(cred: CredentialRef, value: str) -> None:
        """What AwsSecrets.read registers: the value, scoped to the AWS secret."""
        if scoped:
            redaction.register(value, scope=f"aws:adobe/{cred.name}")
        else:
            redaction.register(value)

    print(
        f"a year in-process: {args.credentials} credentials, {args.days} days, a daily survey "
        "(AWS read, the token for an Adobe call, minted daily) and a quarterly rotation each"
    )
    started = time.perf_counter()
    for cred in creds:  # day 0: the daemon starts and surveys
        read_aws(cred, current[cred.name][1])
        client.list_secrets(cred, current[cred.name][1])
    start = figures(client)
    show("start", start)
    rotations = 0
    for day in range(1, args.days + 1):
        clock.now = START + day * DAY
        for index, cred in enumerate(creds):
            old_uuid, old_value = current[cred.name]
            if day % 91 == index % 91:  # this credential's quarterly rotation
                new_uuid = adobe.add(cred.credential_id)
                new_value = f"p8e-{uuid.uuid4().hex}"
                # Adobe's add answer registers the value (scoped to the client id now).
                if scoped:
                    redaction.register(new_value, scope=f"adobe:{cred.client_id}")
                else:
                    redaction.register(new_value)
                client.verify(cred, new_value)
                read_aws(cred, new_value)  # promoted: AWSCURRENT
                client.list_secrets(cred, new_value)  # a drain poll
                client.delete_secret(cred, new_value, old_uuid)
                current[cred.name] = (new_uuid, new_value)
                rotations += 1
            else:  # the daily survey: AWSCURRENT read, a call to Adobe with its token
                read_aws(cred, old_value)
                redaction.register(
                    old_value, **({"scope": f"adobe:{cred.client_id}"} if scoped else {})
                )
                client._management_token(cred, old_value, "survey")
        if day % 91 == 0:
            show(f"day {day}", figures(client))
    end = figures(client)
    show("end", end)
    elapsed = time.perf_counter() - started
    print(
        f"  {rotations} rotations, {adobe.mints} tokens minted, {elapsed:.0f} s; "
        f"RSS {start['rss_mb']} -> {end['rss_mb']} MB; redactor values "
        f"{start['redactor values']} -> {end['redactor values']}; tokens kept "
        f"{start['tokens kept']} -> {end['tokens kept']}"
    )
    client.close()


if __name__ == "__main__":
    main()
