"""The exception tree. Every error knows where it happened and which HL7 error code it is.

Codes are HL7 table 0357 (message error condition codes); they go into ERR-3 of the ACK.
"""

from __future__ import annotations

from dataclasses import dataclass

# HL7 table 0357
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
VALUE_TOO_LONG = "104"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_RECORD_LOCKED = "206"
APPLICATION_INTERNAL_ERROR = "207"

CODE_TEXT = {
    "0": "Message accepted",
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    VALUE_TOO_LONG: "Value too long",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True)
class Location:
    """Where in a message: segment id, segment sequence (1-based), field, repetition, component, subcomponent."""

    segment: str = ""
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    def __str__(self) -> str:
        out = self.segment
        if self.field is not None:
            out += f"-{self.field}"
            if self.repetition and self.repetition > 1:
                out += f"[{self.repetition}]"
            if self.component is not None:
                out += f".{self.component}"
                if self.subcomponent is not None:
                    out += f".{self.subcomponent}"
        return out


class InterfaceError(Exception):
    """Base of every error the engine raises on purpose."""


class FramingError(InterfaceError):
    """The MLLP byte stream is broken (e.g. a frame larger than the channel allows)."""


class FrameTooLarge(FramingError):
    pass


class HL7Error(InterfaceError):
    """A problem with a message's content. Carries the table-0357 code and the location for ERR.

    ``reason`` groups the error for clerks in the error queue: one of REASONS below.
    """

    code = APPLICATION_INTERNAL_ERROR
    severity = "E"
    reason = "processing_error"

    def __init__(
        self, text: str, location: Location | None = None, code: str | None = None, reason: str | None = None
    ):
        super().__init__(text)
        self.text = text
        self.location = location
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        if self.location and self.location.segment:
            return f"{self.location}: {self.text}"
        return self.text


# Error-queue reasons, as clerks see them grouped.
REASONS = {
    "unparseable": "Message could not be read",
    "unsupported_event": "Unsupported message type or event",
    "missing_field": "Missing required field",
    "invalid_value": "Invalid value",
    "unknown_patient": "Unknown patient",
    "identity_mismatch": "Message names a different patient than the chart",
    "unknown_visit": "Unknown visit",
    "unknown_document": "Unknown document",
    "duplicate_document": "Document number already in use",
    "merge_conflict": "Merge conflict",
    "out_of_order": "Out-of-order event",
    "duplicate_conflict": "Same control id, different content",
    "downstream_refused": "Downstream system refused",
    "downstream_unavailable": "Downstream system unavailable",
    "undeliverable": "Application ACK could not be delivered",
    "content_too_large": "Content too large",
    "processing_error": "Processing error",
    "unsupported_processing_id": "Test or debug message (MSH-11)",
    "unsupported_version": "Unsupported HL7 version (MSH-12)",
    "batch_count": "Batch count disagrees with the messages received",
    "value_refused": "Value the database cannot store",
    "database_error": "Database refused the change",
    "unknown_appointment": "Unknown appointment",
    "duplicate_appointment": "Appointment already booked",
}


class ParseError(HL7Error):
    """The bytes are not an HL7 v2 message we can read (no MSH, bad encoding characters...)."""

    code = SEGMENT_SEQUENCE_ERROR


class UnsupportedMessageType(HL7Error):
    code = UNSUPPORTED_MESSAGE_TYPE
    reason = "unsupported_event"


class RequiredFieldMissing(HL7Error):
    code = REQUIRED_FIELD_MISSING
    reason = "missing_field"


class DataError(HL7Error):
    code = DATA_TYPE_ERROR
    reason = "invalid_value"


class PermanentError(HL7Error):
    """Processing can never succeed as the message stands: straight to the error queue."""


class TransientError(InterfaceError):
    """Processing may succeed later (database busy, downstream down): retry per policy."""

    reason = "downstream_unavailable"


class Hold(InterfaceError):
    """Not an error yet: park the item (it stops blocking its key) and try again later.

    Used for a document whose patient is not known yet: it is re-tried when ``release_key`` is
    touched or after ``recheck_seconds``, and becomes an error with ``reason`` once the channel's
    hold delay has passed.
    """

    def __init__(self, text: str, reason: str = "unknown_patient", recheck_seconds: float = 60.0):
        super().__init__(text)
        self.text = text
        self.reason = reason
        self.recheck_seconds = recheck_seconds


class ConfigError(InterfaceError):
    """One or more configuration problems, each already formatted as ``file:line: message``."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems
