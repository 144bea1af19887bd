"""Building the fhir.resources models the server answers with, without validating them again.

Every resource is a fhir.resources R4 model (``Patient``, ``Bundle``, ...), made from the chart
by the builders in this package. Validating each one through its constructor costs ~0.3 ms a
Patient in ``fhir_core``'s Python validators (a search page of 20: ~6 ms, most of the search),
and at run time it can only turn a value the builders did not foresee into a 500 for the whole
page. So :func:`make` *constructs* the model (pydantic's ``model_construct``, nested elements
made the same way from the dicts the builders write), and the tests validate: every kind of
answer is parsed back through its R4 model, and tests/test_fhir_serial.py holds the bytes equal
to what the library writes for the validated model, with :data:`VALIDATE` on and off.

What a validated build would refuse and the chart can hold is dropped here, as the builders
drop absent values: an empty string (FHIR strings are never empty), an empty list and an
element with nothing in it.

``INTERFACE_FHIR_VALIDATE=1`` (or ``VALIDATE = True``) validates every build, as the
constructor does: for a site that would rather see a 500 than answer with a value the R4
definitions refuse, and for the tests that compare the two.
"""

from __future__ import annotations

import os
import typing
from typing import Any, TypeVar

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

VALIDATE = os.environ.get("INTERFACE_FHIR_VALIDATE") == "1"

M = TypeVar("M", bound=FHIRAbstractModel)
# class -> {JSON name or field key: (field key, model class of the element or None for a primitive)}
_PLANS: dict[type, dict[str, tuple[str, type | None]]] = {}
# class -> every field at its default (None), or None where pydantic's model_construct is needed
_BLANKS: dict[type, dict[str, Any] | None] = {}
_set = object.__setattr__


def _element_class(annotation: Any) -> type | None:
    """The model class an element's annotation names (``Optional[List[abc.HumanNameType]]`` ->
    HumanName), None for a primitive."""
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) in (list, typing.List):
            return _element_class(typing.get_args(arg)[0])
        klass = getattr(arg, "get_model_klass", None)
        if klass is not None:
            return klass()
    return None


def _plan(cls: type) -> dict[str, tuple[str, type | None]]:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = {}
        for key, info in cls.model_fields.items():  # type: ignore[attr-defined]
            entry = (key, _element_class(info.annotation))
            plan[key] = entry
            if info.alias:
                plan[info.alias] = entry
        _PLANS[cls] = plan
    return plan


def _value(klass: type | None, value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value or None
    if kind is list:
        items = [v for v in (_value(klass, v) for v in value) if v is not None]
        return items or None
    if kind is not dict or klass is None:
        return value  # a primitive, or a model already made
    if "resourceType" in value:  # a contained or entry resource given as a dict
        klass = get_fhir_model_class(value["resourceType"])
        value = {k: v for k, v in value.items() if k != "resourceType"}
    return _construct(klass, value, True)


def _blank(cls: type) -> dict[str, Any] | None:
    """Every optional field of ``cls`` at its default, when all are None and nothing runs after
    construction (so that :func:`_construct` can do what ``model_construct`` does, without its
    per-field default lookups: ~0.1 ms a model); None otherwise."""
    if cls not in _BLANKS:
        blank = {  # a required element has no default: absent unless given, as model_construct does
            k: f.get_default(call_default_factory=True)
            for k, f in cls.model_fields.items()  # type: ignore[attr-defined]
            if not f.is_required()
        }
        plain = (
            all(v is None for v in blank.values())
            and not cls.__pydantic_post_init__  # type: ignore[attr-defined]
            and not cls.__private_attributes__  # type: ignore[attr-defined]
            and cls.model_config.get("extra") != "allow"  # type: ignore[attr-defined]
        )
        _BLANKS[cls] = blank if plain else None
    return _BLANKS[cls]


def _construct(cls: type[M], data: dict[str, Any], element: bool = False) -> Any:
    """The model of ``data``; ``element``: None when nothing is left in it (an empty element
    is absent)."""
    plan = _PLANS.get(cls) or _plan(cls)
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        try:
            key, klass = plan[name]
        except KeyError:
            raise TypeError(f"{cls.__name__} has no element {name!r}") from None
        value = _value(klass, value)
        if value is not None:
            fields[key] = value
    if element and not fields:
        return None
    blank = _BLANKS[cls] if cls in _BLANKS else _blank(cls)
    if blank is None:
        return cls.model_construct(**fields)
    made = cls.__new__(cls)  # what model_construct does for such a class
    _set(made, "__dict__", {**blank, **fields})
    _set(made, "__pydantic_fields_set__", set(fields))
    _set(made, "__pydantic_extra__", None)
    _set(made, "__pydantic_private__", None)
    return made


def _clean(value: Any) -> Any:
    """``value`` with what :func:`_construct` drops dropped, for the validating constructor."""
    if isinstance(value, dict):
        out = {k: c for k, c in ((k, _clean(v)) for k, v in value.items()) if c is not None}
        return out or None
    if isinstance(value, list):
        return [c for c in (_clean(v) for v in value) if c is not None] or None
    return None if value == "" else value


def make(cls: type[M], **data: Any) -> M:
    """``cls(**data)`` as the builders write it (nested elements as dicts or models, absent
    values None), constructed without validation unless :data:`VALIDATE`."""
    if VALIDATE:
        return cls(**{k: c for k, c in ((k, _clean(v)) for k, v in data.items()) if c is not None})
    return _construct(cls, data)
