"""The admin API's test controls: faults, latency, consistency switches, holds, counters and
the oracle (JSON under ``/sandbox``, no auth, never counted or faulted)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from starlette.requests import Request

from rotator.devkit.sandbox.admin_payloads import (
    AddStatusIn,
    FaultIn,
    HoldIn,
    LatencyIn,
    LingeringIn,
    OmissionIn,
    ReleaseIn,
    TimingIn,
    UsagesIn,
    WaitIn,
)
from rotator.devkit.sandbox.asgi import POLL_S, AdminHandler, json_response, path_param, payload
from rotator.devkit.sandbox.state import SandboxState

__all__ = ["CONTROL_ROUTES"]


async def _faults(state: SandboxState, request: Request) -> Any:
    return state.faults.view()


async def _clear_faults(state: SandboxState, request: Request) -> Any:
    state.faults.clear_faults()


async def _add_fault(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, FaultIn)
    return json_response({"id": state.faults.add(**spec.model_dump())}, 201)


async def _remove_fault(state: SandboxState, request: Request) -> Any:
    rule_id = path_param(request, "fault_id")
    if not state.faults.consistency.remove(rule_id):
        state.faults.remove(rule_id)


async def _latency(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, LatencyIn)
    state.faults.set_latency(spec.endpoint, spec.ms, spec.jitter_ms, spec.seed)
    return state.faults.view()


async def _timing(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, TimingIn)
    state.faults.set_timing(**spec.model_dump())
    return state.faults.view()


async def _add_status(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, AddStatusIn)
    state.faults.consistency.set_add_status(spec.status, client_id=spec.client_id)
    return state.faults.view()


async def _omission(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, OmissionIn)
    return json_response({"id": state.faults.consistency.omit(**spec.model_dump())}, 201)


async def _usages(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, UsagesIn)
    return json_response({"id": state.faults.consistency.distort_usages(**spec.model_dump())}, 201)


async def _lingering(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, LingeringIn)
    return json_response({"id": state.faults.consistency.linger(**spec.model_dump())}, 201)


async def _oracle(state: SandboxState, request: Request) -> Any:
    return state.oracle.view(request.query_params.get("credential_id"))


async def _credential_oracle(state: SandboxState, request: Request) -> Any:
    credential_id = path_param(request, "credential_id")
    state.credential_view(credential_id)  # 404 for an unknown credential
    return state.oracle.view(credential_id)


async def _holds(state: SandboxState, request: Request) -> Any:
    return state.faults.holds_view()


async def _arm_hold(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, HoldIn)
    hold = state.faults.arm_hold(
        spec.endpoint, spec.phase, client_id=spec.client_id, timeout_s=spec.timeout_s
    )
    return json_response(hold.view(), 201)


async def _wait_hold(state: SandboxState, request: Request) -> Any:
    hold = state.faults.hold(path_param(request, "hold_id"))
    spec = await payload(request, WaitIn)
    deadline = time.monotonic() + spec.timeout_s
    while not hold.held_event.is_set():
        if time.monotonic() >= deadline:
            return json_response({"detail": "no request was held in time", **hold.view()}, 408)
        await asyncio.sleep(POLL_S)
    return hold.view()


async def _release_hold(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, ReleaseIn)
    state.faults.release(path_param(request, "hold_id"), drop=spec.drop)
    return state.faults.hold(path_param(request, "hold_id")).view()


async def _clear_holds(state: SandboxState, request: Request) -> Any:
    state.faults.clear_holds()


async def _counters(state: SandboxState, request: Request) -> Any:
    return state.faults.counters()


async def _reset_counters(state: SandboxState, request: Request) -> Any:
    state.faults.reset_counters()


CONTROL_ROUTES: Final[list[tuple[str, AdminHandler, list[str]]]] = [
    ("/faults", _faults, ["GET"]),
    ("/faults", _clear_faults, ["DELETE"]),
    ("/faults/rules", _add_fault, ["POST"]),
    ("/faults/rules/{fault_id}", _remove_fault, ["DELETE"]),
    ("/faults/latency", _latency, ["PUT"]),
    ("/faults/timing", _timing, ["PUT"]),
    ("/faults/add-status", _add_status, ["PUT"]),
    ("/faults/omissions", _omission, ["POST"]),
    ("/faults/usages", _usages, ["POST"]),
    ("/faults/lingering", _lingering, ["POST"]),
    ("/oracle", _oracle, ["GET"]),
    ("/credentials/{credential_id}/oracle", _credential_oracle, ["GET"]),
    ("/holds", _holds, ["GET"]),
    ("/holds", _arm_hold, ["POST"]),
    ("/holds", _clear_holds, ["DELETE"]),
    ("/holds/{hold_id}/wait", _wait_hold, ["POST"]),
    ("/holds/{hold_id}/release", _release_hold, ["POST"]),
    ("/counters", _counters, ["GET"]),
    ("/counters", _reset_counters, ["DELETE"]),
]
