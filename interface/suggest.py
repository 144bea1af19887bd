""""Did you mean ...?" for a near-miss key or name in a configuration file.

rapidfuzz when it is installed, else :func:`difflib.get_close_matches` (stdlib); both rank the
known words by similarity and keep the close ones. Case differences count as near misses
(``Mapping`` for ``mapping``)."""
from __future__ import annotations

import difflib
from typing import Iterable

CUTOFF = 0.6  # difflib's default; rapidfuzz scores are 0..100


def close_matches(word: str, known: Iterable[str], n: int = 1) -> list[str]:
    """The up to ``n`` known words closest to ``word`` (never ``word`` itself)."""
    pool = sorted({str(k) for k in known if str(k) != word})
    if not pool or not word:
        return []
    lowered = {k.lower(): k for k in pool}
    exact_case = lowered.get(word.lower())
    if exact_case is not None:
        return [exact_case]
    try:
        from rapidfuzz import fuzz, process
    except ImportError:
        hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=CUTOFF)
        return [lowered[h] for h in hits]
    found = process.extract(word.lower(), list(lowered), scorer=fuzz.ratio, limit=n,
                            score_cutoff=CUTOFF * 100)
    return [lowered[h[0]] for h in found]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or ``""``: appended to a problem message."""
    hits = close_matches(word, known)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


def _unwrap(tp) -> list:
    """The concrete types of an annotation: unions flattened, ``Annotated`` and None dropped."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [] if tp is type(None) else [tp]


def _items(tp) -> list:
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return []


def model_keys(model, loc: tuple) -> list[str]:
    """The keys the YAML may use where pydantic reported ``loc`` (its last element the bad key):
    the fields (by alias) of the model(s) found by walking ``loc`` from ``model``. Union tags in
    ``loc`` (``'When'``, ``'list[When]'``) are stepped over."""
    from pydantic import BaseModel

    def is_model(t) -> bool:
        return isinstance(t, type) and issubclass(t, BaseModel)

    def fields_of(t) -> dict:
        return {(f.alias or name): f for name, f in t.model_fields.items()} | \
               {name: f for name, f in t.model_fields.items()}

    current = [model]
    for step in loc[:-1]:
        if isinstance(step, int):
            current = [i for t in current for i in _items(t)]
            continue
        nxt = [a for t in current if is_model(t) and step in fields_of(t)
               for a in _unwrap(fields_of(t)[step].annotation)]
        if nxt:
            current = nxt
        elif any(not is_model(t) for t in current):  # a dict's key (params: {x: ...})
            current = [i for t in current for i in _items(t)] or current
    keys: list[str] = []
    for t in current:
        if is_model(t):
            keys.extend(f.alias or name for name, f in t.model_fields.items())
    return keys
