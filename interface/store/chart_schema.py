"""Chart tables: patients and what hangs off them (identifiers, names, addresses, phones, next of
kin, insurance, visits, allergies, diagnoses) plus ``chart_history``, the field-by-field record of
what each message changed (a row a message creates: one ``initial`` entry with its first values).

Every row carries ``message_id`` (the journal row of the message that last changed it) and
``updated_at``. Timestamps that come from messages (birth date, admit/discharge times, the sender's
``recorded_at``) are kept as the ISO text the mapping produced, because senders give them at
different precisions and the chart shows them as given. ``message_id`` has no foreign key on
purpose: ``interface test --channel`` applies updates for a message that is never journaled.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text, UniqueConstraint, func

from interface.store.schema import TS, Id, metadata

_S = String(250)  # a name part, a code, a coded value
_ISO = String(40)  # an ISO date or timestamp as text


def _stamp() -> list[Column]:
    """Who changed the row last: the message and when."""
    return [Column("message_id", Id, index=True), Column("updated_at", TS, nullable=False)]


def _name(prefix: str = "") -> list[Column]:
    return [Column(prefix + part, _S) for part in ("family", "given", "middle", "prefix", "suffix", "degree")]


def _address(prefix: str = "") -> list[Column]:
    return [
        Column(prefix + part, _S) for part in ("street", "other", "city", "state", "postal_code", "country")
    ]


def _person(prefix: str) -> list[Column]:
    return [Column(prefix + part, _S) for part in ("id", "family", "given", "authority")]


def _child(name: str, *columns: Column) -> Table:
    """A list that belongs to a patient, kept in message order (``seq``)."""
    return Table(
        name,
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("patient_id", Id, ForeignKey("patients.id"), nullable=False, index=True),
        Column("seq", Id, nullable=False),
        *columns,
        *_stamp(),
    )


patients = Table(
    "patients",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("mrn", String(128), nullable=False, unique=True),
    # Set when this MRN was merged away (A40/A34/A39) or renamed (A47): the MRN it now lives under.
    Column("merged_into", String(128), index=True),
    Column("merged_at", TS),
    *_name(),
    Column("name_type", _S),
    Column("mother_maiden_name", _S),
    Column("birth_date", _ISO),
    Column("sex", _S),
    Column("race", _S),
    Column("ethnicity", _S),
    Column("marital_status", _S),
    Column("language", _S),
    Column("religion", _S),
    Column("ssn", _S),
    Column("death_at", _ISO),
    Column("deceased", _S),
    Column("recorded_at", _ISO),  # MSH-7 of the newest message whose demographics were applied
    Column("last_event", String(8)),
    # Digests of the addresses, phones, next of kin, insurance and allergies last written
    # (``addresses=<hex>;phones=<hex>...``): lets the chart store skip re-reading a list a
    # message resends unchanged. A hint only: NULL or unreadable means "read the rows"
    # (see ``chart._replace_patient_lists``).
    Column("lists_digest", String(400)),
    Column("created_at", TS, nullable=False),
    *_stamp(),
)
Index("ix_patients_family_lower", func.lower(patients.c.family))
Index("ix_patients_given_lower", func.lower(patients.c.given))
Index("ix_patients_birth_date", patients.c.birth_date)
Index("ix_patients_name_order", patients.c.family, patients.c.given, patients.c.mrn)  # FHIR paging

# Identifiers merge by (authority, type, value); '' rather than NULL so the unique key holds.
patient_identifiers = Table(
    "patient_identifiers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("patient_id", Id, ForeignKey("patients.id"), nullable=False, index=True),
    Column("value", String(250), nullable=False),
    Column("authority", String(250), nullable=False, default=""),
    Column("type", String(64), nullable=False, default=""),
    Column("facility", _S),
    *_stamp(),
    UniqueConstraint("patient_id", "authority", "type", "value", name="uq_patient_identifiers_key"),
)
Index("ix_patient_identifiers_value", patient_identifiers.c.value)

patient_names = _child("patient_names", *_name(), Column("type", _S))

patient_addresses = _child("patient_addresses", *_address(), Column("type", _S))

# ``source``: the record list the row came from (``phones`` PID-13, ``business_phones`` PID-14,
# ``telecom`` PID-40): each is replaced on its own, so ``""`` in PID-13 leaves PID-14's numbers.
patient_phones = _child(
    "patient_phones",
    Column("number", _S),
    Column("use", _S),
    Column("equipment", _S),
    Column("email", _S),
    Column("source", String(32)),
)

next_of_kin = _child(
    "next_of_kin",
    *_name(),
    Column("relationship", _S),
    Column("phone", _S),
    *_address("address_"),
    Column("contact_role", _S),
)

insurance = _child(
    "insurance",
    Column("plan", _S),
    Column("company_id", _S),
    Column("company", _S),
    Column("group_number", _S),
    Column("group_name", _S),
    Column("effective", _ISO),
    Column("expiration", _ISO),
    Column("member_id", _S),
    *_name("insured_"),
    Column("relationship", _S),
    Column("priority", _S),
)

allergies = _child(
    "allergies",
    Column("code", _S),
    Column("description", Text),
    Column("type", _S),
    Column("severity", _S),
    Column("reaction", Text),
    Column("identified", _ISO),
)

visits = Table(
    "visits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("patient_id", Id, ForeignKey("patients.id"), nullable=False, index=True),
    Column("visit_number", String(250), index=True),  # PV1-19; NULL when the sender sends none
    Column("visit_authority", _S),
    Column("class", _S),
    Column("status", String(16), nullable=False),  # preadmit|admitted|registered|discharged|cancelled
    Column("location", _S),
    Column("prior_location", _S),
    *_person("attending_"),
    *_person("referring_"),
    Column("hospital_service", _S),
    Column("admit_source", _S),
    Column("admission_type", _S),
    Column("discharge_disposition", _S),
    Column("admitted_at", _ISO),
    Column("discharged_at", _ISO),
    Column("expected_admit_at", _ISO),
    Column("recorded_at", _ISO),
    Column("last_event", String(8)),
    Column("created_at", TS, nullable=False),
    *_stamp(),
)

diagnoses = _child(
    "diagnoses",
    Column("visit_id", Id, ForeignKey("visits.id"), index=True),
    Column("code", _S),
    Column("description", Text),
    Column("coding_system", _S),
    Column("type", _S),
    Column("at", _ISO),
)

# Where the patient was during a visit: one row per location (PV1-3), opened by the message that
# put the patient there (``from_at``: PV1-44 for the first, else the event time EVN-6/EVN-2/MSH-7)
# and closed (``to_at``) by the next transfer or the discharge. A12 marks the cancelled transfer's
# row (``cancelled_at``) and reopens the one before it. Rows follow their visit through merges.
visit_locations = Table(
    "visit_locations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("visit_id", Id, ForeignKey("visits.id"), nullable=False, index=True),
    Column("location", _S, nullable=False),
    Column("from_at", _ISO),
    Column("to_at", _ISO),
    Column("event", String(8)),
    Column("cancelled_at", _ISO),
    *_stamp(),
)

# One row per field a message changed (or a list it replaced, a merge, an ignored stale update).
chart_history = Table(
    "chart_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("patient_id", Id, index=True),  # follows merges: history moves to the survivor
    Column("mrn", String(128)),  # the MRN the change was made under
    Column("table_name", String(64), nullable=False),
    Column("row_id", Id),
    Column("field", String(64)),
    Column("action", String(32), nullable=False),  # create|set|clear|add|replace|merge|rename|...
    Column("old_value", Text),
    Column("new_value", Text),
    Column("message_id", Id, index=True),
    Column("event", String(8)),
    Column("at", TS, nullable=False),
)

CHILD_TABLES = (
    patient_identifiers,
    patient_names,
    patient_addresses,
    patient_phones,
    next_of_kin,
    insurance,
    allergies,
    diagnoses,
    visits,
)
