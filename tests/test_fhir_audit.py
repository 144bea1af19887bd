"""The audit trail as FHIR AuditEvents (/fhir/AuditEvent): every answer parsed back by the
fhir.resources R4B model; search by patient (merges resolved), agent, date prefixes, paging;
auditors and admins only (a clerk: 403 OperationOutcome); reading the trail is itself audited;
a stock client (fhirpy) reads it with an auditor's token."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhirpy import SyncFHIRClient
from sqlalchemy import select

from interface.desk import scopes, users
from interface.store import audit as store_audit
from interface.store.schema import audit
from interface.web.fhir import auditevent
from tests.test_fhir import FHIR, TestClient, ok, outcome, tokens  # noqa: F401  (fixture)
from tests.test_fhir_fhirpy import serve
from tests.test_pages import APP_NOW, app, seeded  # noqa: F401  (fixtures)

DAY1 = datetime(2026, 10, 1, 10, 0, tzinfo=timezone.utc)


def _write(db, **entry):
    at = entry.pop("at", DAY1)
    with db.begin() as conn:
        store_audit.record(conn, now=at, **entry)
        return conn.execute(select(audit.c.id).order_by(audit.c.id.desc()).limit(1)).scalar_one()


@pytest.fixture
def trail(seeded):  # noqa: F811
    """Known entries at known times (the app's clock is fixed at APP_NOW; these are earlier)."""
    db = seeded.db
    ids = {
        "view": _write(
            db,
            user="carl",
            action="view",
            target_type="document",
            target_id="DOC-3001",
            patient="100001",
            via="fhir",
            detail="/fhir/DocumentReference/DOC-3001",
        ),
        "search": _write(
            db,
            user="carl",
            action="search",
            target_type="patient",
            via="fhir",
            detail={"family": "riv"},
            at=DAY1 + timedelta(days=1),
        ),
        "listed": _write(
            db,
            user="carl",
            action="listed",
            target_type="patient",
            patient="100001",
            via="fhir",
            at=DAY1 + timedelta(days=1),
        ),
        "merged": _write(
            db,
            user="clara",
            action="view",
            target_type="patient",
            target_id="100003",
            patient="100003",
            via="console",
            at=DAY1 + timedelta(days=2),
        ),
        "waive": _write(
            db,
            user="clara",
            action="waive_deficiency",
            target_type="document",
            target_id="DOC-3001",
            patient="100001",
            via="api",
            reason="signed on paper",
            at=DAY1 + timedelta(days=3),
        ),
        "pause": _write(
            db,
            user="ops",
            action="pause",
            target_type="channel",
            target_id="adt",
            via="cli",
            at=DAY1 + timedelta(days=4),
        ),
    }
    return ids


@pytest.fixture
def auditor(app, tokens):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["authorization"] = f"Bearer {tokens['aud']}"
        c.headers["accept"] = FHIR
        yield c


def events(r) -> list[AuditEvent]:
    b = ok(r, Bundle)
    return [
        AuditEvent.model_validate(e.resource.model_dump(mode="json", exclude_none=True))
        for e in b.entry or []
    ]


def test_read_maps_the_entry_field_by_field(auditor, trail):
    e = ok(auditor.get(f"/fhir/AuditEvent/{trail['view']}"), AuditEvent)
    assert (e.type.system, e.type.code, e.type.display) == (auditevent.DICOM, "110110", "Patient Record")
    assert [(s.system, s.code) for s in e.subtype] == [(auditevent.REST, "read")]
    assert e.action == "R" and e.outcome == "0" and e.recorded.isoformat().startswith("2026-10-01T10:00:00")
    (agent,) = e.agent
    assert (agent.who.identifier.value, agent.name, agent.requestor) == ("carl", "carl", True)
    assert e.source.observer.display == auditevent.OBSERVER
    assert {(t.system, t.code) for t in e.source.type} >= {(auditevent.VIA_SYSTEM, "fhir")}
    patient, target, record = e.entity
    assert (patient.what.reference, patient.role.code, patient.role.display) == (
        "Patient/100001",
        "1",
        "Patient",
    )
    assert target.what.reference == "DocumentReference/DOC-3001"
    details = {d.type: d.valueString for d in record.detail}
    with auditor.app.state.engine.connect() as conn:
        stored = conn.execute(
            select(audit.c.entry_hash, audit.c.seq).where(audit.c.id == trail["view"])
        ).one()
    assert details["entry_hash"] == stored.entry_hash and record.what.identifier.value == str(stored.seq)
    assert details["detail"] == "/fhir/DocumentReference/DOC-3001"

    s = ok(auditor.get(f"/fhir/AuditEvent/{trail['search']}"), AuditEvent)
    assert (s.type.code, s.action, [x.code for x in s.subtype]) == ("110112", "E", ["search-type"])
    w = ok(auditor.get(f"/fhir/AuditEvent/{trail['waive']}"), AuditEvent)
    assert (w.type.system, w.type.code, w.action) == (auditevent.ACTION_SYSTEM, "waive_deficiency", "U")
    assert w.type.display == "waive a document deficiency"
    assert [p.text for p in w.purposeOfEvent] == ["signed on paper"]
    p = ok(auditor.get(f"/fhir/AuditEvent/{trail['pause']}"), AuditEvent)
    (thing, _record) = p.entity
    assert (thing.what.identifier.system, thing.what.identifier.value) == (
        auditevent.TARGET_SYSTEM + "/channel",
        "adt",
    )
    assert {t.code for t in p.source.type} == {"4", "cli"}
    outcome(auditor.get("/fhir/AuditEvent/999999"), 404)
    outcome(auditor.get("/fhir/AuditEvent/abc"), 404)


def test_search_by_patient_resolves_merges_and_by_agent(auditor, seeded, trail):  # noqa: F811
    from interface.mapping.records import Merge
    from tests.test_chart import adt, apply

    got = events(auditor.get("/fhir/AuditEvent", params={"patient": "Patient/100001"}))
    assert [e.id for e in got] == [str(trail["waive"]), str(trail["listed"]), str(trail["view"])]
    apply(seeded.db, adt("A40", "100001", merge=Merge(prior_mrn="100003")))  # 100003 merged into 100001
    both = [str(trail[k]) for k in ("waive", "merged", "listed", "view")]
    got = events(auditor.get("/fhir/AuditEvent", params={"patient": "100001", "date": "2026-10"}))
    assert [e.id for e in got] == both
    got = events(auditor.get("/fhir/AuditEvent", params={"patient": "100003", "date": "2026-10"}))
    assert [e.id for e in got] == both  # the merged-away MRN finds the survivor's entries too
    by_clara = events(auditor.get("/fhir/AuditEvent", params={"agent": "clara"}))
    assert [e.id for e in by_clara] == [str(trail["waive"]), str(trail["merged"])]
    assert events(auditor.get("/fhir/AuditEvent", params={"agent": "nobody"})) == []


def test_date_prefixes_and_paging(auditor, trail):
    def ids(*dates, **more):
        q = [("date", d) for d in dates] + list(more.items())
        return [int(e.id) for e in events(auditor.get("/fhir/AuditEvent", params=q))]

    assert ids("2026-10-02") == [trail["listed"], trail["search"]]
    assert ids("ge2026-10-03", "lt2026-10-05") == [trail["waive"], trail["merged"]]
    assert ids("gt2026-10-04", "le2026-10-05", agent="ops") == [trail["pause"]]
    assert ids("eb2026-10-02") == [trail["view"]]
    assert ids("2026-10-01T10:00:00Z") == [trail["view"]]
    assert ids("sa2026-10-05T10:00Z", "lt2026-11") == []  # the pause was at 10:00 exactly
    assert ids("2026-10", _lastUpdated="ge2026-10-04") == [trail["pause"], trail["waive"]]
    outcome(auditor.get("/fhir/AuditEvent", params={"date": "ne2026-10-01"}), 400)
    outcome(auditor.get("/fhir/AuditEvent", params={"date": "yesterday"}), 400)
    outcome(auditor.get("/fhir/AuditEvent", params={"action": "view"}), 400)

    first = ok(auditor.get("/fhir/AuditEvent", params={"date": "2026-10", "_count": 2}), Bundle)
    assert first.total == 6 and len(first.entry) == 2
    seen = [e.resource.id for e in first.entry]
    nxt = next(ln.url for ln in first.link if ln.relation == "next")
    while nxt:
        page = ok(auditor.get(nxt.replace("http://testserver", "")), Bundle)
        seen += [e.resource.id for e in page.entry]
        nxt = next((ln.url for ln in page.link if ln.relation == "next"), None)
    assert [int(x) for x in seen] == sorted(trail.values(), reverse=True)


def test_only_auditors_and_admins_read_it_and_reading_is_audited(app, tokens, seeded, trail):  # noqa: F811
    with TestClient(app, base_url="http://testserver") as c:
        for name in ("carl", "ann"):  # clerk, analyst
            oo = outcome(c.get("/fhir/AuditEvent", headers={"authorization": f"Bearer {tokens[name]}"}), 403)
            assert oo.issue[0].code == "forbidden"
            outcome(
                c.get(
                    f"/fhir/AuditEvent/{trail['view']}", headers={"authorization": f"Bearer {tokens[name]}"}
                ),
                403,
            )
        ok(c.get("/fhir/AuditEvent", headers={"authorization": f"Bearer {tokens['ada']}"}), Bundle)  # admin
        outcome(c.get("/fhir/Patient/100001", headers={"authorization": f"Bearer {tokens['aud']}"}), 403)
        with seeded.db.begin() as conn:
            chart_only = users.new_token(conn, "aud", now=APP_NOW, scopes="user/Patient.read")
            narrow = users.new_token(conn, "aud", now=APP_NOW, scopes="user/AuditEvent.read")
            unscoped = users.new_token(conn, "aud", now=APP_NOW)
        outcome(c.get("/fhir/AuditEvent", headers={"authorization": f"Bearer {chart_only}"}), 403)
        outcome(c.get("/fhir/AuditEvent", headers={"authorization": f"Bearer {unscoped}"}), 403)
        r = c.get(
            "/fhir/AuditEvent", params={"patient": "100001"}, headers={"authorization": f"Bearer {narrow}"}
        )
        ok(r, Bundle)
        ok(
            c.get(f"/fhir/AuditEvent/{trail['view']}", headers={"authorization": f"Bearer {narrow}"}),
            AuditEvent,
        )
    with seeded.db.connect() as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(2)).all()
    read, search = rows
    assert (read.action, read.user, read.via, read.target_type, read.target_id, read.patient) == (
        "access_report",
        "aud",
        "fhir",
        "audit",
        str(trail["view"]),
        "100001",
    )
    assert (search.action, search.patient, search.user) == ("access_report", "100001", "aud")
    # a patient-bound token never reads the trail, whatever its role
    assert not scopes.grant("admin", ["patient/*.read"], "100001").reads("AuditEvent")
    assert scopes.grant("auditor", ["user/*.read"], None).types == {"AuditEvent"}
    assert not scopes.grant("clerk", ["user/*.read"], None).reads("AuditEvent")


def test_capability_statement_lists_what_works(auditor):
    caps = ok(auditor.get("/fhir/metadata"), CapabilityStatement)
    (res,) = [r for r in caps.rest[0].resource if r.type == "AuditEvent"]
    assert [i.code for i in res.interaction] == ["read", "search-type"]
    params = {p.name for p in res.searchParam}
    assert (
        params == {"_id", "patient", "agent", "date", "_lastUpdated"} == auditevent.SEARCH | {"_lastUpdated"}
    )


def test_fhirpy_reads_the_trail_with_an_auditor_token(app, tokens, trail):  # noqa: F811
    web, base = serve(app)
    try:
        client = SyncFHIRClient(base, authorization=f"Bearer {tokens['aud']}")
        found = client.resources("AuditEvent").search(patient="Patient/100001").fetch_all()
        assert [x.id for x in found] == [str(trail["waive"]), str(trail["listed"]), str(trail["view"])]
        for x in found:
            AuditEvent.model_validate(x.serialize())
        one = client.reference("AuditEvent", str(trail["view"])).to_resource()
        assert one["entity"][0]["what"]["reference"] == "Patient/100001"
        assert client.resources("AuditEvent").search(agent="clara").count() == 2
        paged = client.resources("AuditEvent").search(date="2026-10").limit(2).fetch_all()  # follows next
        assert sorted(int(x.id) for x in paged) == sorted(trail.values())
    finally:
        web.stop()
