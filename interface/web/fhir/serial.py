"""FHIR JSON of a built fhir.resources model, the library's serialisation made cheap.

fhir.resources serialises through a Python ``model_serializer`` (``fhir_core``'s
``FHIRAbstractModel._fhir_iter``) that, for every element of every nested model on every call,
looks up the class's element order and aliases afresh (``get_alias_mapping`` rebuilds a dict,
``has_resource_base`` walks the class's MRO): about 0.4 ms for one Patient, 7 ms for a page of
20, most of a search's time. :func:`dumps` walks the same elements in the same order with the
same rules (the element order of the specification, aliases, ``_field`` extension siblings,
``fhir_comments``, empty lists left out, primitives through the model's own
``_serialize_primitive_value``) from a plan computed once per class, and hands the result to
pydantic's JSON encoder as the library does (dates and instants come out identically).

It serialises, it does not build (:mod:`interface.web.fhir.model` builds). Whatever it does
not know (a value that is neither a model, a list nor a primitive element) falls back to the
library's ``model_dump_json``. tests/test_fhir_serial.py holds it equal to the library's output
for every resource the FHIR tests read.
"""

from __future__ import annotations

from typing import Any

from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME, FHIRAbstractModel
from fhir_core.utils import is_primitive_type
from pydantic_core import to_json

_PLAIN = (str, bool, int)
# class -> (resourceType or None, [(field key, JSON name, primitive?, field info, ext key, ext JSON name)])
_PLANS: dict[type, tuple[str | None, list[tuple[str, str, bool, Any, str | None, str | None]]]] = {}


class _Unknown(Exception):
    """A value this serialiser does not handle: the library's own serialiser is used."""


def _plan(cls: type) -> tuple[str | None, list]:
    plan = _PLANS.get(cls)
    if plan is None:
        aliases = cls.get_alias_mapping()  # type: ignore[attr-defined]
        fields = cls.model_fields  # type: ignore[attr-defined]
        elements = []
        for prop in cls.elements_sequence():  # type: ignore[attr-defined]
            key = aliases[prop]
            info = fields[key]
            primitive = is_primitive_type(info)
            ext = f"{key}__ext" if primitive and f"{key}__ext" in fields else None
            ext_name = (fields[ext].alias or ext) if ext else None
            elements.append((key, info.alias or key, primitive, info, ext, ext_name))
        kind = cls.__resource_type__ if cls.has_resource_base() else None  # type: ignore[attr-defined]
        plan = _PLANS[cls] = (kind, elements)
    return plan


def _primitive(model: FHIRAbstractModel, value: Any, info: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, list):
        return [_primitive(model, v, info) for v in value]
    return model._serialize_primitive_value(value, info)  # bytes, uuid, Decimal; dates as they are


def _complex(value: Any) -> Any:
    if isinstance(value, list):
        return [_complex(v) for v in value]
    if isinstance(value, FHIRAbstractModel):
        return _dict(value)
    raise _Unknown(type(value).__name__)


def _dict(model: FHIRAbstractModel) -> dict[str, Any]:
    """The element dict of ``model`` (primitives still Python values) in specification order."""
    if model.__fhir_serialization_summary_only__:  # never set here; the library knows how
        raise _Unknown("summary")
    kind, elements = _plan(type(model))
    data = model.__dict__
    out: dict[str, Any] = {"resourceType": kind} if kind else {}
    for key, name, primitive, info, ext, ext_name in elements:
        value = data.get(key)
        if value is not None:
            value = _primitive(model, value, info) if primitive else _complex(value)
            if not (isinstance(value, list) and not value):
                out[name] = value
        if ext is not None:
            ext_value = data.get(ext)
            if ext_value is not None:
                ext_value = _complex(ext_value)
                if ext_value:
                    out[ext_name] = ext_value  # type: ignore[index]
    comments = data.get(FHIR_COMMENTS_FIELD_NAME)
    if comments is not None and not model.__fhir_serialization_exclude_comment__:
        out[FHIR_COMMENTS_FIELD_NAME] = comments
    return out


def dumps(model: FHIRAbstractModel) -> bytes:
    """``model`` as compact FHIR JSON, as ``model.model_dump_json(exclude_none=True)`` writes it."""
    try:
        return to_json(_dict(model))
    except _Unknown:
        return model.model_dump_json(exclude_none=True).encode()
