""" "Did you mean ...?" for a near-miss key or name in a configuration file.

:mod:`difflib`'s similarity ratio (the measure behind ``difflib.get_close_matches``), with a
small preference for a shared start and swapped letters; case differences count as near misses
(``Mapping`` for ``mapping``)."""

from __future__ import annotations

import difflib
import os
from typing import Any, Iterable

CUTOFF = 0.6  # difflib.get_close_matches' default


def _score(word: str, candidate: str) -> float:
    """difflib's ratio, plus a little for a shared start and for the same letters swapped
    (``PDI`` is closer to ``PID`` than to ``QPD``; ``2.5.2`` to ``2.5.1`` than to ``2.8.2``)."""
    a, b = word.lower(), candidate.lower()
    score = difflib.SequenceMatcher(None, a, b).ratio()
    prefix = len(os.path.commonprefix([a, b]))
    score += 0.1 * prefix / max(len(a), 1)
    if sorted(a) == sorted(b):
        score += 0.2
    return score


def close_matches(word: str, known: Iterable[str], n: int = 1) -> list[str]:
    """The up to ``n`` known words closest to ``word`` (never ``word`` itself), best first.

    difflib (stdlib) only, so that the suggestion is the same wherever it runs; the pools are
    small (keys of one block, segment ids, names in a configuration)."""
    pool = sorted({str(k) for k in known if str(k) != word})
    if not pool or not word:
        return []
    for k in pool:
        if k.lower() == word.lower():
            return [k]
    scored = [(_score(word, k), k) for k in pool]
    scored = [(sc, k) for sc, k in scored if sc >= CUTOFF]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [k for _sc, k in scored[:n]]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or ``""``: appended to a problem message."""
    hits = close_matches(word, known)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types of an annotation: unions flattened, ``Annotated`` and None dropped."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [] if tp is type(None) else [tp]


def _items(tp: Any) -> list[Any]:
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return []


def model_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys the YAML may use where pydantic reported ``loc`` (its last element the bad key):
    the fields (by alias) of the model(s) found by walking ``loc`` from ``model``. Union tags in
    ``loc`` (``'When'``, ``'list[When]'``) are stepped over."""
    from pydantic import BaseModel

    def is_model(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, BaseModel)

    def fields_of(t: Any) -> dict[str, Any]:
        return {(f.alias or name): f for name, f in t.model_fields.items()} | {
            name: f for name, f in t.model_fields.items()
        }

    current = [model]
    for step in loc[:-1]:
        if isinstance(step, int):
            current = [i for t in current for i in _items(t)]
            continue
        nxt = [
            a
            for t in current
            if is_model(t) and step in fields_of(t)
            for a in _unwrap(fields_of(t)[step].annotation)
        ]
        if nxt:
            current = nxt
        elif any(not is_model(t) for t in current):  # a dict's key (params: {x: ...})
            current = [i for t in current for i in _items(t)] or current
    keys: list[str] = []
    for t in current:
        if is_model(t):
            keys.extend(f.alias or name for name, f in t.model_fields.items())
    return keys
