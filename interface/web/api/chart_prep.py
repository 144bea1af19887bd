"""``GET /api/chart-prep?days=N&start=YYYY-MM-DD``: the chart-prep worklist
(:mod:`interface.desk.chart_prep`): patients with an appointment (booked or pending) whose start
is in ``[start, start + days]`` (``start`` defaults to now, ``days`` to the settings'
``default_days``) and whose chart has a problem: open deficiencies, no consent on file, insurance
missing / without policy number / expired / without subscriber, or an unresolved identity item.

The settings are ``app.state.chart_prep_settings`` when set, else ``rules/chart_prep.yaml`` (the
defaults without it). Every request is audited (a view of the worklist, with its window) and runs
in a rolled-back read-only transaction. Authentication is added by whoever includes the router.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from interface.desk import chart_prep
from interface.rules.chart_prep import ChartPrepSettings, settings_or_default
from interface.web import auth
from interface.web.reading import reading as _reading

router = APIRouter()


class Provider(BaseModel):
    id: str | None = None
    family: str | None = None
    given: str | None = None
    authority: str | None = None


class PrepAppointment(BaseModel):
    id: int
    filler_id: str | None = None
    placer_id: str | None = None
    start_at: str | None = None
    end_at: str | None = None
    duration: str | None = None
    duration_units: str | None = None
    location: str | None = None
    provider: Provider
    status: str
    status_label: str
    reason: str | None = None
    type: str | None = None


class PrepPatient(BaseModel):
    mrn: str
    known: bool
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    sex: str | None = None


class Problem(BaseModel):
    kind: str  # deficiency | consent | insurance | identity
    label: str
    text: str


class PrepItem(BaseModel):
    appointment: PrepAppointment
    patient: PrepPatient
    problems: list[Problem]


class ChartPrep(BaseModel):
    from_: str = Field(alias="from", description="the window's start (ISO, UTC)")
    to: str
    days: int
    appointments: int = Field(description="appointments in the window with a status to prepare")
    items: list[PrepItem]

    model_config = {"populate_by_name": True}


def settings(request: Request) -> ChartPrepSettings:
    found = getattr(request.app.state, "chart_prep_settings", None)
    if found is None:
        found = request.app.state.chart_prep_settings = settings_or_default()
    return found


def window_start(request: Request, start: date | None) -> tuple[datetime, datetime | None]:
    now = auth.clock(request)
    begin = datetime(start.year, start.month, start.day, tzinfo=timezone.utc) if start is not None else None
    return now, begin


@router.get("/api/chart-prep", response_model=ChartPrep, response_model_by_alias=True)
def get_chart_prep(
    request: Request,
    days: int | None = Query(None, ge=0, le=chart_prep.MAX_DAYS, description="the window in days"),
    start: date | None = Query(None, description="the window's first day (default: now)"),
):
    """Patients with an appointment in the window whose chart needs preparing, soonest first."""
    now, begin = window_start(request, start)
    with _reading(request) as conn:
        result = chart_prep.worklist(conn, now=now, days=days, start=begin, settings=settings(request))
    auth.audit_listed(  # one entry per patient the worklist listed
        request,
        [item["patient"]["mrn"] for item in result["items"]],
        action="view",
        target_type="chart_prep",
        detail={"from": result["from"], "days": result["days"], "items": len(result["items"])},
    )
    return result
