"""YAML with line numbers, validated by typed models, every problem reported at once.

One spec, many uses: the pydantic models in ``channels`` and ``mapping`` are the schema. They
drive loading, ``interface check`` (``file:line: message`` for every problem, unknown keys
included) and the JSON Schema published for editors (``interface schema``).

YAML is loaded with ``yaml.SafeLoader`` only (no tags that construct objects). We compose the node
tree ourselves so that every value keeps its line: :class:`Located` maps a path such as
``("fields", 3, "from")`` to the line where it was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from interface.hl7.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """Parsed YAML data plus the line of every node, keyed by its path from the root."""

    data: Any
    file: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # kept for validate() (load_yaml keep_going)

    def line(self, path: Iterable[Any]) -> int:
        """The line of the deepest node on ``path`` that exists (1-based)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def where(self, path: Iterable[Any] = ()) -> str:
        return f"{self.file}:{self.line(path)}"


def _construct(
    node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str, problems: list[str]
) -> Any:
    lines[path] = node.start_mark.line + 1
    plain = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}
    if type(node) in plain and node.tag != plain[type(node)]:
        problems.append(f"{file}:{node.start_mark.line + 1}: unsupported YAML tag {node.tag!r}")
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    f"{file}:{key_node.start_mark.line + 1}: YAML merge keys (<<) are not supported"
                )
                continue
            key = _construct(key_node, path + ("<key>",), {}, file, problems)
            if not isinstance(key, (str, int)):
                problems.append(f"{file}:{key_node.start_mark.line + 1}: keys must be plain text")
                continue
            if key in out:
                problems.append(f"{file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            key_line = key_node.start_mark.line + 1
            out[key] = _construct(value_node, path + (key,), lines, file, problems)
            lines[path + (key,)] = key_line
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(n, path + (i,), lines, file, problems) for i, n in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # a tag SafeLoader does not know (!!python/..., !custom)
        problems.append(f"{file}:{node.start_mark.line + 1}: {getattr(exc, 'problem', None) or exc}")
        return None
    finally:
        loader.dispose()


def load_yaml_text(text: str, file: str, keep_going: bool = False) -> Located:
    """Parse YAML text, keeping lines. Raises ConfigError with ``file:line:`` on syntax errors.

    Duplicate keys, merge keys and non-text keys raise too, unless ``keep_going``: then they are
    kept in ``Located.problems`` and :func:`validate` reports them with every schema problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line, hint = yaml_hint(exc, text)
        raise ConfigError([f"{file}:{line}: YAML syntax error: {exc.problem or exc}{hint}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{file}:1: YAML error: {exc}"]) from None
    lines: dict[PathKey, int] = {}
    problems: list[str] = []
    data = None if node is None else _construct(node, (), lines, file, problems)
    if problems and not keep_going:
        raise ConfigError(problems)
    return Located(data, file, lines, problems)


def yaml_hint(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    """(line, `` (likely cause: ...)``) for a YAML syntax error: the line the analyst must fix
    (where an unclosed bracket or quote opened, not where the file ended) and what usually
    causes the message PyYAML gives."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    opened = exc.context_mark.line + 1 if exc.context_mark else line
    problem, context = str(exc.problem or ""), str(exc.context or "")
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    hint = ""
    if "'\\t'" in problem or "\t" in problem:
        hint = "a tab character; YAML indents with spaces only"
    elif "cannot start any token" in problem:
        hint = "a value starting with a reserved character (@ ` %); put the value in quotes"
    elif "mapping values are not allowed" in problem:
        _key, _, value = here.partition(": ")
        if ": " in value or value.rstrip().endswith(":"):
            hint = "an unquoted ': ' inside a value; put the value in quotes"
        else:
            hint = "indentation: this line is indented deeper than the key above it"
    elif "expected <block end>" in problem:
        hint = f"indentation: this line does not line up with the block that starts on line {opened}"
    elif "could not find expected ':'" in problem:
        line = opened
        hint = "a line without 'key: value' (a ':' missing after the key?)"
    elif "flow sequence" in context or "flow mapping" in context:
        bracket = "[" if "sequence" in context else "{"
        hint = f"an unclosed '{bracket}' opened on line {opened}"
        line = opened
    elif "quoted scalar" in context:
        hint = f"an unclosed quote opened on line {opened}"
        line = opened
    elif "undefined alias" in problem:
        hint = "an alias (*name) used before its anchor (&name) is defined"
    return line, f" (likely cause: {hint})" if hint else ""


def load_yaml(path: str | Path, keep_going: bool = False) -> Located:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}:1: cannot read: {exc}"]) from None
    return load_yaml_text(text, str(p), keep_going)


def _loc_to_path(loc: tuple[Any, ...]) -> PathKey:
    """pydantic error locations include union/tag names; keep only the keys that are in the YAML."""
    return tuple(
        p
        for p in loc
        if isinstance(p, int) or (isinstance(p, str) and "[" not in p and not p.startswith("function-"))
    )


def format_validation_error(
    exc: ValidationError, doc: Located, prefix: PathKey = (), model: type[BaseModel] | None = None
) -> list[str]:
    from interface.config.suggest import did_you_mean, model_keys

    out = []
    for err in exc.errors():
        path = prefix + _loc_to_path(err["loc"])
        dotted = ".".join(str(p) for p in path) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = f"unknown key {path[-1]!r}" if path else "unknown key"
            if path and model is not None:
                msg += did_you_mean(str(path[-1]), model_keys(model, tuple(err["loc"])))
        elif kind == "missing":
            msg = f"{dotted}: required key missing"
        else:
            text = err["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, ") :]
            msg = f"{dotted}: {text}"
        out.append(f"{doc.file}:{doc.line(path)}: {msg}")
    return out


def validate(model: type[M], doc: Located, data: Any = None, prefix: PathKey = ()) -> M:
    """Validate ``doc.data`` (or ``data`` found at ``prefix``) against a model; ConfigError lists all."""
    payload = doc.data if data is None else data
    if payload is None:
        payload = {}
    try:
        result = model.model_validate(payload)
    except ValidationError as exc:
        found = format_validation_error(exc, doc, prefix, model)
        raise ConfigError(_by_line(list(doc.problems) + found)) from None
    if doc.problems:
        raise ConfigError(_by_line(list(doc.problems)))
    return result


def _by_line(problems: list[str]) -> list[str]:
    """``file:line: message`` problems in file order, then line order (stable for equal lines)."""

    def key(p: str) -> tuple[str, int]:
        file, _, rest = p.partition(":")
        line = rest.split(":", 1)[0]
        return (file, int(line) if line.isdigit() else 0)

    return sorted(problems, key=key)


class Strict(BaseModel):
    """Base for config models: unknown keys are errors, values are not coerced silently."""

    model_config = {"extra": "forbid", "populate_by_name": True}
