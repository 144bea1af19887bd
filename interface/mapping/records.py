"""Plain records: what a mapping produces and what the stores apply. No I/O, no HL7 syntax.

Three states for every scalar, because HL7 says so:

* ``None``   – the field was empty in the message: **no change** to what the chart holds;
* ``CLEAR``  – the field was ``""`` (the HL7 null): **clear** the stored value;
* a value    – set it.

Lists (identifiers, addresses, insurance...) follow the same rule as a whole: ``None`` means the
message said nothing about them; a list (possibly empty after ``CLEAR``) replaces or merges as the
store documents for each kind.

Mapping targets are dotted paths into these dataclasses (``patient.name.family``,
``visit.admitted_at``, ``insurance[].member_id``); the mapping loader checks every target against
the fields here, so a typo is a ``file:line:`` error at load time, not a blank at 3 a.m.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, cast


class _Clear:
    """The HL7 null (``""``): delete the stored value."""

    _instance: _Clear | None = None

    def __new__(cls) -> _Clear:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "CLEAR"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> tuple[type[_Clear], tuple[()]]:
        return (_Clear, ())


CLEAR: Any = _Clear()


def is_clear(value: Any) -> bool:
    return value is CLEAR


@dataclass
class Identifier:
    value: str | None = None
    authority: str | None = None  # CX-4 (namespace id of the HD)
    type: str | None = None  # CX-5 identifier type code (MR, PI, AN, SS, ...)
    facility: str | None = None  # CX-6


@dataclass
class Name:
    family: str | None = None
    given: str | None = None
    middle: str | None = None
    suffix: str | None = None
    prefix: str | None = None
    degree: str | None = None
    type: str | None = None  # XPN-7 (L legal, A alias, M maiden, ...)


@dataclass
class Address:
    street: str | None = None
    other: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    type: str | None = None  # XAD-7 (H home, M mailing, ...)


@dataclass
class Phone:
    number: str | None = None
    use: str | None = None  # XTN-2 (PRN, WPN, ...)
    equipment: str | None = None  # XTN-3 (PH, CP, FX, Internet)
    email: str | None = None


@dataclass
class Person:
    """A clinician: attending, author, authenticator (XCN)."""

    id: str | None = None
    family: str | None = None
    given: str | None = None
    authority: str | None = None


@dataclass
class NextOfKin:
    name: Name = field(default_factory=Name)
    relationship: str | None = None
    phone: str | None = None
    address: Address = field(default_factory=Address)
    contact_role: str | None = None


@dataclass
class Insurance:
    plan: str | None = None  # IN1-2
    company_id: str | None = None  # IN1-3
    company: str | None = None  # IN1-4
    group: str | None = None  # IN1-8
    group_name: str | None = None  # IN1-9
    effective: str | None = None  # IN1-12 (ISO date)
    expiration: str | None = None  # IN1-13
    member_id: str | None = None  # IN1-36 (or IN2 / IN1-49 by mapping)
    insured_name: Name = field(default_factory=Name)  # IN1-16
    relationship: str | None = None  # IN1-17
    priority: str | None = None  # IN1-1 set id / coordination of benefits


@dataclass
class Allergy:
    code: str | None = None
    description: str | None = None
    type: str | None = None
    severity: str | None = None
    reaction: str | None = None
    identified: str | None = None


@dataclass
class Diagnosis:
    code: str | None = None
    description: str | None = None
    coding_system: str | None = None
    type: str | None = None  # DG1-6 (A admitting, W working, F final)
    at: str | None = None


@dataclass
class Visit:
    visit_number: str | None = None  # PV1-19 (CX-1)
    visit_authority: str | None = None
    class_: str | None = None  # PV1-2 via code table (inpatient, outpatient, emergency, ...)
    location: str | None = None  # PV1-3 rendered (point^room^bed^facility)
    prior_location: str | None = None  # PV1-6
    attending: Person = field(default_factory=Person)  # PV1-7
    referring: Person = field(default_factory=Person)  # PV1-8
    hospital_service: str | None = None  # PV1-10
    admit_source: str | None = None  # PV1-14
    admission_type: str | None = None  # PV1-4
    discharge_disposition: str | None = None  # PV1-36
    admitted_at: str | None = None  # PV1-44 (ISO timestamp)
    discharged_at: str | None = None  # PV1-45
    expected_admit_at: str | None = None  # PV2-8 (pre-admits)


@dataclass
class Patient:
    identifiers: list[Identifier] | None = None  # PID-3 (every repetition)
    name: Name = field(default_factory=Name)  # the legal name (PID-5, XPN-7 = L or first)
    other_names: list[Name] | None = None  # PID-5 other repetitions, PID-9 alias
    mother_maiden_name: str | None = None
    birth_date: str | None = None  # ISO date (or timestamp if the sender gave a time)
    sex: str | None = None  # administrative sex via code table
    race: str | None = None
    ethnicity: str | None = None
    marital_status: str | None = None
    language: str | None = None
    religion: str | None = None
    addresses: list[Address] | None = None
    # Three lists, each replaced on its own (``""`` in PID-13 must not delete PID-14's numbers):
    phones: list[Phone] | None = None  # PID-13 (home; every number for mappings that append)
    business_phones: list[Phone] | None = None  # PID-14
    telecom: list[Phone] | None = None  # PID-40 (v2.7+: PID-13/14 withdrawn, XTN-2/XTN-3 say which)
    ssn: str | None = None
    death_at: str | None = None
    deceased: str | None = None  # PID-30 Y/N


@dataclass
class Merge:
    """MRG: what is being merged away or changed (A40, A34, A39, A47...)."""

    prior_identifiers: list[Identifier] | None = None  # MRG-1
    prior_mrn: str | None = None  # resolved by the mapping to the channel's authority
    prior_visit_number: str | None = None  # MRG-5
    prior_name: Name = field(default_factory=Name)  # MRG-7


@dataclass
class ChartUpdate:
    """Everything one ADT message says about one patient (A17 swaps give two)."""

    event: str  # trigger event code (A01, A08, A40...)
    mrn: str | None = None  # the identifier of the channel's assigning authority
    event_at: str | None = None  # EVN-6 or EVN-2 or MSH-7, ISO
    recorded_at: str | None = None  # MSH-7 ISO (for "older than what it would overwrite")
    patient: Patient = field(default_factory=Patient)
    visit: Visit | None = None
    next_of_kin: list[NextOfKin] | None = None
    insurance: list[Insurance] | None = None
    allergies: list[Allergy] | None = None
    diagnoses: list[Diagnosis] | None = None
    merge: Merge | None = None


@dataclass
class DocumentContent:
    """One piece of content from OBX-5: text (TX/FT/ST joined), decoded ED bytes, or an RP pointer."""

    kind: str = "text"  # text | binary | reference
    media_type: str | None = None  # text/plain, application/pdf, text/rtf, text/html...
    text: str | None = None
    data: bytes | None = None
    reference: str | None = None
    raw_text: str | None = None  # text as sent (FT escapes kept) when it differs from ``text``


@dataclass
class Document:
    """What one MDM message says about one document (TXA + OBX content)."""

    event: str  # T01..T11
    mrn: str | None = None
    visit_number: str | None = None  # PV1-19 / TXA-8? (mapping decides)
    document_number: str | None = None  # TXA-12.1 (EI entity identifier)
    document_namespace: str | None = None  # TXA-12.2 (EI namespace ID)
    document_universal_id: str | None = None  # TXA-12.3
    document_universal_id_type: str | None = None  # TXA-12.4
    parent_document_number: str | None = None  # TXA-13.1
    parent_namespace: str | None = None  # TXA-13.2
    parent_universal_id: str | None = None  # TXA-13.3
    type: str | None = None  # TXA-2
    presentation: str | None = None  # TXA-3 (content presentation / MIME type)
    activity_at: str | None = None  # TXA-4
    primary_activity_by: Person = field(default_factory=Person)  # TXA-5
    origination_at: str | None = None  # TXA-6
    transcribed_at: str | None = None  # TXA-7
    edited_at: str | None = None  # TXA-8
    author: Person = field(default_factory=Person)  # TXA-9 (originator)
    transcriptionist: Person = field(default_factory=Person)  # TXA-11
    unique_document_file_name: str | None = None  # TXA-16
    status: str | None = None  # TXA-17 completion status (DI, DO, IP, IN, PA, AU, LA...)
    confidentiality: str | None = None  # TXA-18
    availability: str | None = None  # TXA-19
    storage_status: str | None = None  # TXA-20
    change_reason: str | None = None  # TXA-21
    authenticated_by: Person = field(default_factory=Person)  # TXA-22 (XCN)
    authenticated_at: str | None = None  # TXA-22 component 15 (authentication time) or TXA-22 DTM
    placer_order: str | None = None  # TXA-14
    filler_order: str | None = None  # TXA-15
    content: list[DocumentContent] | None = None


@dataclass
class Appointment:
    """What one SIU message says about one appointment (HL7 v2.5.1 chapter 10: SCH and the
    resource groups AIS / AIL / AIP)."""

    event: str  # S12..S17, S26
    mrn: str | None = None
    placer_id: str | None = None  # SCH-1.1 (EI entity identifier)
    placer_namespace: str | None = None  # SCH-1.2
    filler_id: str | None = None  # SCH-2.1
    filler_namespace: str | None = None  # SCH-2.2
    start_at: str | None = None  # SCH-11.4 (TQ start), TQ1-7, AIS-4, AIL-6 or AIP-6 (ISO)
    end_at: str | None = None  # SCH-11.5 (TQ end) or TQ1-8
    duration: str | None = None  # SCH-9, AIS-7, AIL-9 or AIP-9 (NM)
    duration_units: str | None = None  # SCH-10, AIS-8, AIL-10 or AIP-10 (CE identifier)
    location: str | None = None  # AIL-3 (PL: point^room^bed^facility)
    provider: Person = field(default_factory=Person)  # AIP-3 (XCN)
    status: str | None = None  # SCH-25 filler status code (table 0278)
    reason: str | None = None  # SCH-7 appointment reason (text, else code)
    type: str | None = None  # SCH-8 appointment type
    event_reason: str | None = None  # SCH-6 (why this event: cancel reason...)
    recorded_at: str | None = None  # MSH-7


RECORD_ROOTS: dict[str, type] = {"chart": ChartUpdate, "document": Document, "appointment": Appointment}


def target_type(root: type, path: str) -> type:
    """The type a dotted target path ends on, or KeyError naming the bad part.

    ``insurance[].member_id`` walks into the list's item type; ``visit.attending.id`` into nested
    dataclasses. Used by the mapping loader to reject unknown targets at load time.
    """
    current: Any = root
    for part in path.split("."):
        name = part[:-2] if part.endswith("[]") else part
        if name == "class":
            name = "class_"
        if not dataclasses.is_dataclass(current):
            raise KeyError(part)
        hints = typing.get_type_hints(current)
        if name not in hints:
            raise KeyError(part)
        current = _strip_optional(hints[name])
        if part.endswith("[]"):
            origin = typing.get_origin(current)
            if origin is not list:
                raise KeyError(part)
            current = typing.get_args(current)[0]
    return cast(type, current)


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def to_jsonable(obj: Any) -> Any:
    """Records as JSON-ready data (``CLEAR`` becomes the string ``'""'``; bytes become a size)."""
    if obj is CLEAR:
        return '""'
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None:
                continue
            key = "class" if f.name == "class_" else f.name
            j = to_jsonable(v)
            if j == {} or j is None:
                continue
            out[key] = j
        return out
    if isinstance(obj, list):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return {"bytes": len(obj)}
    return obj
