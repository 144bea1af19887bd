"""Actions on selected messages, shared by the console (``pages_messages``) and the API
(``api.messages``): export as an ``.hl7`` file, and reprocess to a destination.

* **Export** hands out the messages as received (raw bytes, unmasked), so it is a reveal: it
  needs a reason and a role that may reveal message data (``masking.check_reveal``), and writes
  one audit row per message (action ``export``, ``patient=`` the message's MRN) before the file
  is sent.
* **Reprocess** queues each message again to one destination of its channel
  (``desk.errorqueue.reprocess_message``, which audits it), each in its own transaction so one
  refused message does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from sqlalchemy import select

from interface.desk import errorqueue, masking
from interface.store.schema import messages
from interface.web import auth

MAX_SELECTED = 500


def _ids(ids: list[int]) -> list[int]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise HTTPException(status_code=400, detail="select at least one message")
    if len(ids) > MAX_SELECTED:
        raise HTTPException(status_code=400, detail=f"at most {MAX_SELECTED} messages at once")
    return ids


def export_file(request: Request, user, ids: list[int], reason: str | None) -> tuple[bytes, str]:
    """(the ``.hl7`` file's bytes, its file name): the messages in the order given, one after
    the other, each ending in CR LF. 400 without a reason, 403 for a role that may not reveal,
    404 for an unknown id."""
    ids = _ids(ids)
    try:
        why = masking.check_reveal(getattr(user, "role", None), masking.MESSAGE, True, reason)
    except masking.RevealRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    with request.app.state.engine.begin() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(messages.c.id, messages.c.raw, messages.c.patient_id).where(messages.c.id.in_(ids))
            )
        }
        missing = [i for i in ids if i not in rows]
        if missing:
            raise HTTPException(status_code=404, detail=f"no message {missing[0]}")
        now = auth.clock(request)
        for i in ids:
            auth.record_audit(
                conn,
                user=user,
                action="export",
                target_type="message",
                target_id=i,
                reason=why,
                detail={"messages": len(ids)},
                now=now,
                patient=rows[i].patient_id,
            )
    body = b"".join(rows[i].raw.rstrip(b"\r\n") + b"\r\n" for i in ids)
    name = f"messages-{ids[0]}.hl7" if len(ids) == 1 else f"messages-{len(ids)}.hl7"
    return body, name


@dataclass
class ReprocessResult:
    queued: dict[int, int] = field(default_factory=dict)  # message id -> new work item id
    refused: dict[int, str] = field(default_factory=dict)  # message id -> why


def reprocess(
    request: Request, user, ids: list[int], destination: str, reason: str | None
) -> ReprocessResult:
    out = ReprocessResult()
    for message_id in _ids(ids):
        try:
            with request.app.state.engine.begin() as conn:
                out.queued[message_id] = errorqueue.reprocess_message(
                    conn,
                    message_id,
                    destination,
                    channels=request.app.state.channels or [],
                    user=user.name,
                    now=auth.clock(request),
                    reason=(reason or "").strip()[:2000] or None,
                )
        except errorqueue.ActionError as exc:
            out.refused[message_id] = str(exc)
    return out
