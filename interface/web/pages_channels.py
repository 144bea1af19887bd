"""The channels console: ``/channels`` (every channel: live endpoint, connections, rate,
queues, paused or not) and ``/channels/{name}`` (its configuration as loaded with file and
line, its live endpoints, each destination's queue with the oldest item's age, its trends), and
the analyst's actions on them (pause / resume intake or a destination, retry a destination,
reload the configuration): the same functions as the API (:mod:`interface.web.api.channel_actions`),
role-checked (analyst, admin) and audited."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from interface.desk.users import User
from interface.web import auth, trends_view
from interface.web.api import channel_actions
from interface.web.api.channels import channel_states, config_entries
from interface.web.auth import require
from interface.web.pages import _now, _reader, _render, fmt_age, html_errors

router = APIRouter(include_in_schema=False)

ANY = require(*auth.ANY)
OPERATE = require(*auth.OPERATE)


def _can_operate(user: User | None) -> bool:
    return user is not None and (user.role == "admin" or user.role in auth.OPERATE)


@router.get("/channels", response_class=HTMLResponse)
@html_errors
def channels_page(request: Request, user: User = Depends(ANY)):
    states = channel_states(request)
    return _render(
        request,
        "channels.html",
        {
            "channels": states,
            "fmt_age": fmt_age,
            "can_operate": _can_operate(user),
            "reload_here": getattr(request.app.state, "reload", None) is not None,
            "done": request.query_params.get("done", "")[:200],
        },
    )


@router.get("/channels/{name}", response_class=HTMLResponse)
@html_errors
def channel_page(request: Request, name: str, user: User = Depends(ANY), trend: str = "hour"):
    states = channel_states(request, only=name)
    if not states:
        raise HTTPException(404, "no such channel")
    ch = next((c for c in (request.app.state.channels or []) if c.name == name), None)
    file, config = config_entries(ch) if ch is not None else (None, [])
    with _reader(request).connect() as conn:
        t = trends_view.trend(conn, _now(request), window=trend, channel=name)
    return _render(
        request,
        "channel.html",
        {
            "c": states[0],
            "file": file,
            "config": config,
            "trend": t,
            "trend_scope": f"channel {name}",
            "fmt_age": fmt_age,
            "can_operate": _can_operate(user),
            "done": request.query_params.get("done", "")[:200],
        },
    )


def _back(name: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/channels/{quote(name, safe='')}?done={quote(done)}", status_code=303)


@router.post("/channels/{name}/pause")
@html_errors
def page_pause(
    request: Request, name: str, reason: str = Form("", max_length=500), user: User = Depends(OPERATE)
):
    r = channel_actions.pause_channel(request, user, name, None, True, reason.strip() or None)
    return _back(name, r.detail)


@router.post("/channels/{name}/resume")
@html_errors
def page_resume(request: Request, name: str, user: User = Depends(OPERATE)):
    r = channel_actions.pause_channel(request, user, name, None, False)
    return _back(name, r.detail)


@router.post("/channels/{name}/destinations/{destination}/{action}")
@html_errors
def page_destination(
    request: Request, name: str, destination: str, action: str, user: User = Depends(OPERATE)
):
    if action == "retry":
        r = channel_actions.retry_all(request, user, name, destination)
        done = f"{len(r.retried)} item(s) in error put back in the queue, {r.rescheduled} retried now"
        if r.failed:
            done += f"; {len(r.failed)} could not be retried"
        return _back(name, done)
    if action not in ("pause", "resume"):
        raise HTTPException(404, "no such action")
    a = channel_actions.pause_channel(request, user, name, destination, action == "pause")
    return _back(name, a.detail)


@router.post("/channels/reload")
@html_errors
def page_reload(request: Request, user: User = Depends(OPERATE)):
    r = channel_actions.request_reload(request, user)
    return RedirectResponse(f"/channels?done={quote(r.detail[:200])}", status_code=303)
