"""``GET /api/health`` (no login; no patient data): liveness, database reachability, and whether
messages can be committed now. What it answers is described in :mod:`interface.store.health`."""

from __future__ import annotations

import os
import shutil

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from interface.store.health import commit_failure

router = APIRouter()

MIN_FREE_BYTES = 64 * 1024 * 1024
disk_usage = shutil.disk_usage  # (a module attribute: tests give it a nearly full disk)


class Health(BaseModel):
    status: str  # ok | degraded | error
    database: str  # ok | unreachable
    reasons: list[str] = []


def _write_problems(engine) -> list[str]:
    """Why the database could not take a write now, as far as can be seen without writing."""
    problems = []
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if path and path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path)) or "."
            try:
                readonly_mount = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
            except OSError:
                readonly_mount = False
            if (
                readonly_mount
                or not os.access(folder, os.W_OK)
                or (os.path.exists(path) and not os.access(path, os.W_OK))
            ):
                problems.append("database read-only")
            try:
                free = disk_usage(folder).free
            except OSError:
                free = None
            if free is not None and free < MIN_FREE_BYTES:
                problems.append(f"disk nearly full ({free // (1024 * 1024)} MiB free)")
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            if conn.execute(text("SELECT current_setting('transaction_read_only')")).scalar_one() == "on":
                problems.append("database read-only")
            conn.rollback()
    return problems


@router.get(
    "/api/health",
    response_model=Health,
    tags=["health"],
    responses={
        503: {
            "model": Health,
            "description": "degraded (commits failing, database "
            "read-only or disk nearly full) or database unreachable",
        }
    },
)
def health(request: Request):
    """Liveness, database reachability, and whether messages can be committed (no login needed).
    503 ``degraded`` says why in ``reasons``."""
    try:
        with request.app.state.reader.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.rollback()
        reasons = _write_problems(request.app.state.engine)
    except SQLAlchemyError:
        return JSONResponse(
            {"status": "error", "database": "unreachable", "reasons": ["database unreachable"]},
            status_code=503,
        )
    failing = commit_failure()
    if failing is not None:
        since, why = failing
        reasons.insert(0, f"journal commits failing since {since.strftime('%Y-%m-%dT%H:%M:%SZ')}: {why}")
    if reasons:
        return JSONResponse({"status": "degraded", "database": "ok", "reasons": reasons}, status_code=503)
    return Health(status="ok", database="ok", reasons=[])
