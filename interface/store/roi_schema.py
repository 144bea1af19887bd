"""Tables of the release-of-information desk (interface.desk.roi).

* ``roi_requests`` – one request for a patient's information: the patient (MRN as found), the
  requester (type, name, organisation, address, e-mail) and the checklist of how their identity
  was verified (JSON), what is asked (``scope``: JSON with a date range, encounters, document
  types, or the designated record set), purpose, delivery, the day received, the due date (and
  extensions with their reason), the legal basis or the authorization it is disclosed under,
  status, denial reason, fee.
* ``roi_events`` – every status change and action on a request (who, when, from, to, note):
  append-only.
* ``roi_authorizations`` – the 45 CFR 164.508(c) checklist of an authorization (JSON), the
  categories of sensitive records it names, revocation, and the signed form's SHA-256 in the
  content store (``interface.store.content``).
* ``roi_packets`` – a built release packet: its SHA-256 in the content store, page count,
  manifest (JSON), fee. Never updated: releasing again makes a new row.
* ``roi_disclosures`` – the disclosure log: one row per disclosure (made by a release, or one made
  outside the engine entered by hand, ``packet_id`` NULL), with recipient, basis, what
  (manifest/description), who, when.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Index, Integer, String, Table, Text

from interface.store.schema import TS, Id, metadata

_S = String(250)

roi_requests = Table(
    "roi_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("mrn", String(128), nullable=False),
    Column("requester_type", String(32), nullable=False),
    Column("requester_name", _S, nullable=False),
    Column("requester_organization", _S),
    Column("requester_address", Text),
    Column("requester_email", _S),
    Column("requester_phone", String(64)),
    Column("identity_checks", Text, nullable=False, default="{}"),  # JSON {check: true/false}
    Column("identity_verified_by", String(128)),
    Column("identity_verified_at", TS),
    Column(
        "scope", Text, nullable=False
    ),  # JSON {designated_record_set, from, to, encounters, document_types}
    Column("purpose", String(32), nullable=False),
    Column("purpose_text", Text),
    Column("delivery", String(32), nullable=False),
    Column("state", String(8)),  # the state whose rules apply (due dates)
    Column("received_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("extensions", Integer, nullable=False, default=0),
    Column("extension_reason", Text),
    Column("basis", String(32), nullable=False),  # legal basis, or "authorization"
    Column("authorization_id", Id),
    Column("status", String(16), nullable=False),
    Column("denial_reason", Text),
    Column("review_right", Text),  # the patient's right to have a denial reviewed, when it applies
    Column("summary_page", Integer, nullable=False, default=0),  # a chart summary page in the packet
    Column("created_by", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)
Index("ix_roi_requests_mrn", roi_requests.c.mrn)
Index("ix_roi_requests_status_due", roi_requests.c.status, roi_requests.c.due_on)

roi_events = Table(
    "roi_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Id, ForeignKey("roi_requests.id"), nullable=False),
    Column("at", TS, nullable=False),
    Column("user", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16)),
    Column("note", Text),
)
Index("ix_roi_events_request", roi_events.c.request_id, roi_events.c.id)

roi_authorizations = Table(
    "roi_authorizations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("mrn", String(128), nullable=False),
    Column("request_id", Id, ForeignKey("roi_requests.id")),
    Column("checklist", Text, nullable=False),  # JSON: the 164.508(c) elements as the clerk recorded them
    Column("categories", Text, nullable=False, default="[]"),  # JSON: sensitive categories it names
    Column("expires_on", Date),
    Column("form_sha256", String(64)),
    Column("form_media_type", String(127)),
    Column("form_name", _S),
    Column("revoked_on", Date),
    Column("revoked_reason", Text),
    Column("recorded_by", String(128), nullable=False),
    Column("recorded_at", TS, nullable=False),
)
Index("ix_roi_authorizations_mrn", roi_authorizations.c.mrn)

roi_packets = Table(
    "roi_packets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Id, ForeignKey("roi_requests.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("page_count", Integer, nullable=False),
    Column("manifest", Text, nullable=False),  # JSON: documents, versions, SHA-256, pages, exclusions
    Column("fee_cents", Integer, nullable=False, default=0),
    Column("built_by", String(128), nullable=False),
    Column("built_at", TS, nullable=False),
)
Index("ix_roi_packets_request", roi_packets.c.request_id)

roi_disclosures = Table(
    "roi_disclosures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("mrn", String(128), nullable=False),
    Column("request_id", Id, ForeignKey("roi_requests.id")),
    Column("packet_id", Id, ForeignKey("roi_packets.id")),
    Column("disclosed_on", Date, nullable=False),
    Column("recipient_name", _S, nullable=False),
    Column("recipient_address", Text),
    Column("recipient_type", String(32), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("basis", String(32), nullable=False),
    Column("authorization_id", Id),
    Column("description", Text, nullable=False),  # what was disclosed, in words
    Column("manifest", Text),  # JSON (from the packet), or NULL for one entered by hand
    Column("packet_sha256", String(64)),
    Column("source", String(16), nullable=False),  # release | manual | accounting
    Column("recorded_by", String(128), nullable=False),
    Column("recorded_at", TS, nullable=False),
)
Index("ix_roi_disclosures_mrn_on", roi_disclosures.c.mrn, roi_disclosures.c.disclosed_on)

# -- delivery (interface.desk.roi_delivery; migration 0019) -------------------------------------
# ``roi_links`` – an expiring download link to one packet for the request's recipient. Only the
# SHA-256 of its random token is kept (the token itself is shown once, or goes out in an e-mail);
# revoked by a clerk with a reason; each download counted (and audited against the patient).
# ``roi_outbox`` – the e-mails carrying a link to the recipient: pending, sending, sent, failed
# (with the last error and when it is tried again) or cancelled; never deleted.

roi_links = Table(
    "roi_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Id, ForeignKey("roi_requests.id"), nullable=False),
    Column("packet_id", Id, ForeignKey("roi_packets.id"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("revoked_at", TS),
    Column("revoked_by", String(128)),
    Column("revoked_reason", Text),
    Column("downloads", Integer, nullable=False, default=0),
    Column("last_download_at", TS),
)
Index("ix_roi_links_request", roi_links.c.request_id)

roi_outbox = Table(
    "roi_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Id, ForeignKey("roi_requests.id"), nullable=False),
    Column("link_id", Id, ForeignKey("roi_links.id"), nullable=False),
    Column("to_address", _S, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sending | sent | failed | cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_by", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_attempt_at", TS),
    Column("next_attempt_at", TS),
    Column("sent_at", TS),
)
Index("ix_roi_outbox_status", roi_outbox.c.status, roi_outbox.c.next_attempt_at)
Index("ix_roi_outbox_request", roi_outbox.c.request_id)
