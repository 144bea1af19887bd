"""An HL7 v2 interface engine: MLLP in, durable journal, chart records and a document index out."""

__version__ = "0.1.0"
