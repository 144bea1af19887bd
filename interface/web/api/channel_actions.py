"""An analyst's actions on channels (analyst and admin; each audited,
:mod:`interface.desk.channel_actions`):

* ``POST /api/channels/{name}/pause`` / ``resume``: the channel's intake. While paused, new
  connections are refused and frames on open ones are answered AE / CE, ERR 207, nothing
  stored (:mod:`interface.engine.controls`); every engine process takes it within a second;
* ``POST /api/channels/{name}/destinations/{destination}/pause`` / ``resume``: workers skip
  the destination's items (they keep their place in their patient's order);
* ``POST /api/channels/{name}/destinations/{destination}/retry``: every item in error back in
  the queue, every item waiting for its next attempt tried now;
* ``POST /api/reload``: ``interface reload`` (re-read the configuration; see
  :mod:`interface.ops.reload`), when the console runs with the engine.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from interface.desk import channel_actions
from interface.desk.users import User
from interface.web.auth import ERROR_RESPONSES, OPERATE, clock, record_audit, require

log = logging.getLogger("interface.web.api.channel_actions")

router = APIRouter(tags=["channels"])


def _name():
    return Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # one instance per parameter


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=500)


class ActionResult(BaseModel):
    channel: str
    destination: str | None = None
    action: str
    changed: bool = Field(description="false when it already was so")
    detail: str


class RetryResult(BaseModel):
    channel: str
    destination: str
    retried: list[int] = Field(description="items in error put back in the queue")
    rescheduled: int = Field(description="items waiting for their next attempt, tried now")
    failed: list[str]


class ReloadResult(BaseModel):
    requested: bool
    detail: str


def known(request: Request, name: str, destination: str | None = None):
    """404 unless the channel (and destination) is configured."""
    ch = next((c for c in (request.app.state.channels or []) if c.name == name), None)
    if ch is None:
        raise HTTPException(404, f"no channel {name}")
    if destination is not None and destination not in {d.name for d in ch.destinations}:
        raise HTTPException(404, f"channel {name} has no destination {destination}")
    return ch


def take_effect(request: Request) -> None:
    """When the engine runs in this process, make it read the controls now."""
    runtime = request.app.state.runtime
    sync = getattr(runtime, "sync", None)
    if sync is not None:
        try:
            sync.now()
        except Exception as exc:  # the engine takes it at its next round anyway
            log.warning("could not refresh the controls now: %s", type(exc).__name__)


def pause_channel(
    request: Request, user: User, name: str, destination: str | None, paused: bool, reason=None
):
    known(request, name, destination)
    changed = channel_actions.set_paused(
        request.app.state.engine, name, destination, paused, user=user.name, now=clock(request), reason=reason
    )
    take_effect(request)
    what = f"destination {destination} of channel {name}" if destination else f"channel {name}'s intake"
    verb = "paused" if paused else "resumed"
    detail = f"{what} {verb}" if changed else f"{what} was already {verb}"
    return ActionResult(
        channel=name,
        destination=destination,
        action="pause" if paused else "resume",
        changed=changed,
        detail=detail,
    )


@router.post("/api/channels/{name}/pause", response_model=ActionResult, responses=ERROR_RESPONSES)
def pause(
    request: Request,
    name: str = _name(),
    body: PauseBody | None = Body(None),
    user: User = Depends(require(*OPERATE)),
) -> ActionResult:
    """Pause the channel's intake: new connections refused, frames answered AE / CE (nothing
    stored) until resumed."""
    return pause_channel(request, user, name, None, True, body.reason if body else None)


@router.post("/api/channels/{name}/resume", response_model=ActionResult, responses=ERROR_RESPONSES)
def resume(request: Request, name: str = _name(), user: User = Depends(require(*OPERATE))) -> ActionResult:
    """Resume the channel's intake."""
    return pause_channel(request, user, name, None, False)


@router.post(
    "/api/channels/{name}/destinations/{destination}/pause",
    response_model=ActionResult,
    responses=ERROR_RESPONSES,
)
def pause_destination(
    request: Request,
    name: str = _name(),
    destination: str = _name(),
    body: PauseBody | None = Body(None),
    user: User = Depends(require(*OPERATE)),
) -> ActionResult:
    """Pause a destination's queue: the workers skip its items until resumed."""
    return pause_channel(request, user, name, destination, True, body.reason if body else None)


@router.post(
    "/api/channels/{name}/destinations/{destination}/resume",
    response_model=ActionResult,
    responses=ERROR_RESPONSES,
)
def resume_destination(
    request: Request, name: str = _name(), destination: str = _name(), user: User = Depends(require(*OPERATE))
) -> ActionResult:
    """Resume a destination's queue."""
    return pause_channel(request, user, name, destination, False)


def retry_all(request: Request, user: User, name: str, destination: str) -> RetryResult:
    known(request, name, destination)
    r = channel_actions.retry_destination(
        request.app.state.engine, name, destination, user=user.name, now=clock(request)
    )
    runtime = request.app.state.runtime
    if runtime is not None and getattr(runtime, "sync", None) is not None and runtime.sync.on_change:
        runtime.sync.on_change()  # wake the workers
    return RetryResult(
        channel=name,
        destination=destination,
        retried=r.retried,
        rescheduled=r.rescheduled,
        failed=[f"item {i}: {why}" for i, why in r.failed],
    )


@router.post(
    "/api/channels/{name}/destinations/{destination}/retry",
    response_model=RetryResult,
    responses=ERROR_RESPONSES,
)
def retry_destination(
    request: Request, name: str = _name(), destination: str = _name(), user: User = Depends(require(*OPERATE))
) -> RetryResult:
    """Retry every item of the destination now: those in error and those waiting to retry."""
    return retry_all(request, user, name, destination)


def request_reload(request: Request, user: User) -> ReloadResult:
    reload = getattr(request.app.state, "reload", None)
    now = clock(request)
    if reload is None:
        return ReloadResult(
            requested=False,
            detail="this console does not run with the engine: run `interface reload` on its host",
        )
    detail = reload()
    with request.app.state.engine.begin() as conn:
        record_audit(conn, user=user, action="reload", target_type="config", now=now, detail=detail)
    return ReloadResult(requested=True, detail=detail)


@router.post("/api/reload", response_model=ReloadResult, responses=ERROR_RESPONSES)
def reload(request: Request, user: User = Depends(require(*OPERATE))) -> ReloadResult:
    """Re-read the configuration (``interface reload``): the outcome is the event
    ``config_reloaded`` or ``config_rejected`` (``/api/events``)."""
    return request_reload(request, user)
