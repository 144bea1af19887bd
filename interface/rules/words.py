"""Words for codes: what a clerk reads instead of an HL7 table value or an engine code.

Pure data and two lookups, no I/O. The console (the ``word`` and ``reason_text`` template
filters), the API (``reason_text``, ``status_text`` fields) and the CLI use these one tables, so a
code reads the same everywhere. The HL7 tables are the v2.5.1 standard's user/HL7 tables of
``interface.rules.hl7_tables`` (0001 administrative sex, 0004 patient class, 0270 document type,
0271 completion status, 0272 confidentiality, 0273 availability, and the others the message
viewer explains);

plus the engine's own: work item statuses, message statuses, the audit trail's actions, channels
(``via``) and target types (the auditor's pages and CSV), and error-queue reasons
(``interface.hl7.errors.REASONS``, with any reason another part of the engine uses before it is
listed there). An unknown code is shown as it is, never hidden: ``word("0001", "Q")`` is ``Q``.
"""

from __future__ import annotations

from interface.hl7.errors import REASONS
from interface.rules import hl7_tables

TABLES: dict[str, dict[str, str]] = {
    # the HL7 tables (interface.rules.hl7_tables: one copy for the viewer and for these words)
    **hl7_tables.TABLES,
    # the engine's work item statuses (interface.store.workqueue)
    "item_status": {
        "pending": "Waiting to be processed",
        "held": "Held: waiting for the patient to be registered",
        "error": "Failed: needs a clerk",
        "done": "Done",
        "discarded": "Discarded",
    },
    # stored message statuses (interface.store.schema.messages)
    "message_status": {
        "accepted": "Accepted",
        "processed": "Processed",
        "error": "Failed",
        "rejected": "Rejected at receipt",
        "quarantined": "Quarantined (duplicate control id)",
        "discarded": "Discarded",
        "resubmitted": "Replaced by an edited copy",
    },
    # the audit trail's actions (interface.store.audit; docs/audit.md): what the user did
    "audit_action": {
        "view": "Viewed",
        "view_content": "Opened the content",
        "search": "Searched",
        "listed": "Listed in a search result",
        "candidates": "Listed as a candidate chart",
        "reveal": "Revealed masked data",
        "break_glass": "Opened a sensitive record (break the glass)",
        "access_report": "Read the audit trail",
        "retry": "Retried an error item",
        "reprocess": "Reprocessed",
        "discard": "Discarded an error item",
        "resubmit": "Resubmitted an edited message",
        "file_anyway": "Filed despite an identity mismatch",
        "file_to": "Filed to another chart",
        "send_back": "Sent back to the sender",
        "waive_deficiency": "Waived a deficiency",
        "login": "Signed in",
        "login_failed": "Sign-in failed",
        "login_limited": "Sign-in refused: too many attempts",
        "logout": "Signed out",
        "user_add": "Added a user",
        "user_role": "Changed a user's role",
        "user_passwd": "Changed a user's password",
        "user_disable": "Disabled a user",
        "user_enable": "Enabled a user",
        "token_create": "Created an API token",
        "token_revoke": "Revoked an API token",
        "scan_upload": "Uploaded scanned pages",
        "scan_index": "Indexed a scanned document",
        "scan_rotate": "Rotated scanned pages",
        "scan_delete_pages": "Deleted scanned pages",
        "scan_split": "Split a scanned document",
        "scan_merge": "Merged scanned documents",
        "scan_delete": "Deleted a scanned document",
        "export": "Exported messages",
        "reload": "Reloaded the configuration",
        "pause_intake": "Paused a channel's intake",
        "resume_intake": "Resumed a channel's intake",
        "pause_destination": "Paused a destination's queue",
        "resume_destination": "Resumed a destination's queue",
        "retry_destination": "Retried a destination's failed messages",
        # the release-of-information desk (docs/release-of-information.md)
        "roi_list": "Listed release-of-information requests",
        "roi_patient_search": "Searched for the patient of a request",
        "roi_patient_pick": "Chose the patient of a request",
        "roi_new": "Logged a release-of-information request",
        "roi_view": "Viewed a release-of-information request",
        "roi_show": "Viewed a release-of-information request",
        "roi_verify": "Recorded the requester's identity check",
        "roi_status": "Changed a request's status",
        "roi_deny": "Denied a request",
        "roi_extend": "Extended a request's due date",
        "roi_authorize": "Recorded the authorization checklist",
        "roi_revoke": "Recorded the revocation of an authorization",
        "roi_view_form": "Viewed the signed authorization form",
        "roi_documents": "Listed what a release would send",
        "roi_preview": "Previewed a release packet (nothing released)",
        "roi_release": "Released records (a packet and its disclosure)",
        "roi_packet_download": "Downloaded a release packet",
        "roi_disclosures": "Viewed the disclosure log",
        "roi_log_disclosure": "Entered a disclosure made outside the engine",
        "roi_accounting": "Produced an accounting of disclosures",
        "roi_delivery": "Viewed a request's download links and e-mails",
        "roi_outbox": "Viewed the e-mail outbox",
        "roi_link": "Made a download link for the recipient",
        "roi_link_revoke": "Revoked a download link",
        "roi_link_download": "The recipient downloaded the released records",
        "roi_email_send": "Sent the recipient's e-mail again",
    },
    # how an audit entry came in (``via``); no value: the engine itself
    "audit_via": {
        "console": "Console",
        "api": "REST API",
        "fhir": "FHIR",
        "cli": "Command line",
        "download": "Recipient's download link",
    },
    # what an audit entry is about (``target_type``)
    "audit_target": {
        "patient": "Patient",
        "document": "Document",
        "deficiency": "Deficiency",
        "message": "Message",
        "messages": "Message list",
        "work_item": "Error item",
        "work_items": "Error queue",
        "chart_prep": "Chart-prep worklist",
        "scan_document": "Scanned document",
        "scan_page": "Scanned page",
        "scan_batch": "Scan batch",
        "user": "User",
        "audit": "Audit trail",
        "roi_request": "Release-of-information request",
    },
}

# Reasons some part of the engine uses that are not (yet) in ``REASONS``: the table there wins.
_MORE_REASONS = {
    "undeliverable": "Application ACK could not be delivered",
}

TABLES["reason"] = {**_MORE_REASONS, **REASONS}

# Names a caller may use instead of the table number.
ALIASES = {
    "sex": "0001",
    "patient_class": "0004",
    "document_type": "0270",
    "completion_status": "0271",
    "document_status": "0271",
    "confidentiality": "0272",
    "availability": "0273",
    "status": "item_status",
    "action": "audit_action",
    "via": "audit_via",
    "target_type": "audit_target",
}


def word(table: str, code: str | None) -> str:
    """The word for ``code`` in ``table`` (a number such as ``"0001"`` or a name from
    ``ALIASES``); the code itself when the table does not know it, "" for no code."""
    if code is None or code == "":
        return ""
    values = TABLES.get(ALIASES.get(table, table), {})
    text = str(code)
    return values.get(text) or values.get(text.upper()) or text


def reason_text(reason: str | None) -> str:
    """The error-queue reason in words; an unknown reason code made readable."""
    if not reason:
        return ""
    known = TABLES["reason"].get(reason)
    if known:
        return known
    return reason.replace("_", " ").capitalize()


def with_code(table: str, code: str | None) -> str:
    """``Female (F)``: the word and the code, for pages that show both; the code alone when
    there is no word for it."""
    w = word(table, code)
    if not w or w == str(code):
        return w
    return f"{w} ({code})"


def via_text(via: str | None) -> str:
    """How an audit entry came in, in words; no channel is the engine itself."""
    return word("audit_via", via) if via else "Engine"
