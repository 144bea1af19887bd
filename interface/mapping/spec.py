"""The mapping file's schema: typed models that drive loading, `interface check`
and the JSON Schema for editors.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator

from interface.config.yamlfile import Strict

NULL = '""'  # the HL7 null: "clear the stored value"

# ---------------------------------------------------------------------------------------------
# the schema (one spec: loading, linting, docs and the JSON Schema for editors)


_FLOAT_HINT = 'write relative paths in quotes, e.g. ".1": YAML reads an unquoted .1 as the number 0.1'


def _no_numbers(v: Any) -> Any:
    """Relative paths like ``.1`` must be quoted; catch the number YAML made of them, loudly."""
    items = v if isinstance(v, list) else [v]
    if any(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        raise ValueError(_FLOAT_HINT)
    return v


class When(Strict):
    """A condition on one value. ``""`` (the HL7 null) and an empty field are both "not present"."""

    field: str
    present: bool | None = None
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None

    _field_text = field_validator("field", mode="before")(lambda cls, v: _no_numbers(v))


TransformStep = Union[str, dict[str, str]]


class FieldSpec(Strict):
    """One entry of ``fields:``: a scalar value, or a block (``each`` / ``select``) with ``fields``."""

    to: str
    # scalar sources (exactly one of from / value / mrn / concat, or a block below)
    from_: str | list[str] | None = Field(default=None, alias="from")
    value: str | None = None
    mrn: str | None = None
    lenient: bool = False
    concat: list[str] | None = None
    separator: str = " "
    keep_empty: bool = False
    transform: TransformStep | list[TransformStep] | None = None
    default: str | None = None
    required: bool = False
    trim: bool | None = None
    when: When | list[When] | None = None
    # blocks
    each: str | list[str] | None = None
    group: list[str] | None = None
    skip: str | None = None
    append: bool = False
    select: str | list[str] | None = None
    fields: list["FieldSpec"] | None = None
    nonstandard: bool = False  # its paths read past the standard on purpose (a known sender habit)

    _paths_text = field_validator("from_", "concat", "each", "select", "mrn", mode="before")(
        lambda cls, v: _no_numbers(v)
    )


class RecordsSpec(Strict):
    each: str


class ExpectError(Strict):
    code: str | None = None
    location: str | None = None
    reason: str | None = None
    text: str | None = None


class CaseSpec(Strict):
    name: str
    message: str
    params: dict[str, Any] = {}
    expect: dict[str, Any] | list[dict[str, Any]] | None = None
    expect_error: ExpectError | None = None


def _version_str(v: Any) -> Any:
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class MappingSpec(Strict):
    name: str
    root: Literal["chart", "document", "appointment"]
    version: str | list[str] = Field(
        "2.5.1",
        description="the HL7 version(s) whose segment and "
        "data-type definitions judge the paths (interface.mapping.hl7paths)",
    )
    description: str = ""
    messages: list[str] = []
    params: dict[str, Any] = {}
    trim: bool = True
    records: RecordsSpec | None = None
    fields: list[FieldSpec]
    tests: list[CaseSpec] = []

    _version_text = field_validator("version", mode="before")(  # YAML reads 2.5 as a number
        lambda cls, v: [_version_str(x) for x in v] if isinstance(v, list) else _version_str(v)
    )


FieldSpec.model_rebuild()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a mapping file, for editors (``interface schema``)."""
    return MappingSpec.model_json_schema(by_alias=True)


# ---------------------------------------------------------------------------------------------
# paths
