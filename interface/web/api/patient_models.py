"""Response models of the patients API (``GET /api/patients/{mrn}``, ``/history``, search): the
chart record of ``chart.get_chart`` as documented types, so the OpenAPI document says what each
answer holds. ``documents`` entries are the document index's summaries (``documents.summaries_for``)
and keep whatever keys it gives."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class NameOut(_Out):
    family: str | None = None
    given: str | None = None
    middle: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    degree: str | None = None
    type: str | None = None  # XPN-7


class IdentifierOut(_Out):
    value: str  # masked (****1234) unless revealed, except the MRN
    authority: str | None = None
    type: str | None = None


class AddressOut(_Out):
    street: str | None = None
    other: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class PatientAddressOut(AddressOut):
    type: str | None = None  # XAD-7


class PhoneOut(_Out):
    number: str | None = None
    use: str | None = None  # XTN-2 (table 0201: PRN, WPN, NET, ...)
    equipment: str | None = None  # XTN-3 (table 0202: PH, CP, FX, Internet, ...)
    email: str | None = None
    source: str | None = Field(
        None, description="phones (PID-13), business_phones (PID-14), telecom (PID-40)"
    )


class InsuranceOut(_Out):
    plan: str | None = None
    company: str | None = None
    company_id: str | None = None
    member_id: str | None = None  # masked unless revealed
    group: str | None = None
    group_name: str | None = None
    effective: str | None = None
    expiration: str | None = None
    insured_name: NameOut
    relationship: str | None = None
    priority: str | None = None


class PersonOut(_Out):
    id: str | None = None
    family: str | None = None
    given: str | None = None
    authority: str | None = None


class LocationOut(_Out):
    location: str
    from_: str | None = Field(
        None, alias="from", description="when the patient got there (PV1-44 or the event time)"
    )
    to: str | None = Field(None, description="when they left (next transfer, discharge); null while there")
    event: str | None = None
    cancelled_at: str | None = Field(None, description="set when an A12 cancelled this transfer")


class VisitOut(_Out):
    visit_number: str | None = None
    visit_authority: str | None = None
    class_: str | None = Field(None, alias="class")
    status: str
    location: str | None = None
    prior_location: str | None = None
    attending: PersonOut | None = None
    referring: PersonOut | None = None
    hospital_service: str | None = None
    admit_source: str | None = None
    admission_type: str | None = None
    discharge_disposition: str | None = None
    admitted_at: str | None = None
    discharged_at: str | None = None
    expected_admit_at: str | None = None
    updated_at: str | None = None
    locations: list[LocationOut] = []


class NextOfKinOut(_Out):
    name: NameOut
    relationship: str | None = None
    phone: str | None = None
    address: AddressOut
    contact_role: str | None = None


class AllergyOut(_Out):
    code: str | None = None
    description: str | None = None
    type: str | None = None
    severity: str | None = None
    reaction: str | None = None
    identified: str | None = None


class DiagnosisOut(_Out):
    code: str | None = None
    description: str | None = None
    coding_system: str | None = None
    type: str | None = None
    at: str | None = None
    visit_number: str | None = None


class PatientChart(_Out):
    mrn: str
    requested_mrn: str
    merged_into: str | None = None
    merged_from: list[str]
    identifiers: list[IdentifierOut]
    name: NameOut
    other_names: list[NameOut]
    birth_date: str | None = None
    sex: str | None = None
    mother_maiden_name: str | None = None
    race: str | None = None
    ethnicity: str | None = None
    marital_status: str | None = None
    language: str | None = None
    religion: str | None = None
    ssn: str | None = None  # masked unless revealed
    death_at: str | None = None
    deceased: str | None = None
    addresses: list[PatientAddressOut]
    phones: list[PhoneOut]
    insurance: list[InsuranceOut]
    visits: list[VisitOut]
    documents: list[dict[str, Any]]
    next_of_kin: list[NextOfKinOut]
    allergies: list[AllergyOut]
    diagnoses: list[DiagnosisOut]
    updated_at: str | None = None
    last_event: str | None = None
    revealed: bool = False


class PatientSummary(_Out):
    mrn: str
    name: NameOut
    birth_date: str | None = None
    sex: str | None = None


class PatientSearchPage(_Out):
    patients: list[PatientSummary]
    limit: int
    offset: int


class HistoryEntry(_Out):
    id: int
    at: str
    message_id: int | None = None
    event: str | None = None
    mrn: str | None = None
    table: str
    row_id: int | None = None
    field: str | None = None
    action: str
    old: str | None = None  # masked (****) for identifying fields unless revealed
    new: str | None = None


class HistoryPage(_Out):
    mrn: str
    entries: list[HistoryEntry]
    next_before_id: int | None = None
    limit: int
    revealed: bool = False
