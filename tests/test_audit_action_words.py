"""Every audit action the engine writes reads in words (#17): the actions are found in the code
itself, not listed by hand, so a new one without words fails here.

The scan: an audit row is written by ``interface.store.audit.record``/``record_listed`` (the
``action`` argument), ``record_many`` (the ``"action"`` of the entries built beside it) or an
``insert(audit).values(action=...)``. A function is an audit writer too when it hands its own
``action`` parameter on to one (``web.auth.record_audit``, ``audit_now``, ``audit_listed``, the ROI
desk's ``_audit``/``on_request``/``_act``, the CLI's ``cli_read``, ...). Every call of a writer
gives its action as a string, a choice of strings, a module constant or a local variable given
strings; the few built at run time are listed in ``DYNAMIC`` with the values they can take. Each
action must have words in ``interface.rules.words``: the audit log, the access report and their
CSV show them."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from interface.rules import words

PKG = Path(__file__).resolve().parent.parent / "interface"
ROOTS = {"record", "record_listed"}  # of interface.store.audit (as ``store_audit.<name>``)
# actions built at run time from a choice made elsewhere: the values they can take
DYNAMIC = {
    "interface/ops/scan_cli.py": {  # "scan_" + `interface scan <edit>`
        "scan_index",
        "scan_rotate",
        "scan_delete_pages",
        "scan_split",
        "scan_merge",
        "scan_delete",
    },  # fmt: skip
    "interface/desk/channel_actions.py": {  # f"{pause|resume}_{intake|destination}"
        "pause_intake",
        "pause_destination",
        "resume_intake",
        "resume_destination",
    },  # fmt: skip
    "interface/ops/roi_cli.py": {  # f"roi_{act}" of `interface roi <act>`
        "roi_show",
        "roi_verify",
        "roi_status",
        "roi_deny",
        "roi_extend",
        "roi_authorize",
        "roi_revoke",
        "roi_release",
    },  # fmt: skip
}
NOWHERE = 10**6  # the position of a keyword-only parameter


@dataclass
class Module:
    path: str
    tree: ast.Module
    constants: dict[str, str] = field(default_factory=dict)


def _modules() -> list[Module]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        if "versions" in p.parts:
            continue
        m = Module(str(p.relative_to(PKG.parent)), ast.parse(p.read_text()))
        for node in m.tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for t in node.targets:
                    if isinstance(t, ast.Name) and isinstance(node.value.value, str):
                        m.constants[t.id] = node.value.value
        out.append(m)
    return out


def _functions(m: Module):
    for node in ast.walk(m.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _params(fn) -> list[str]:
    return [a.arg for a in fn.args.args + fn.args.kwonlyargs]


def _index(fn) -> int:
    """Where ``action`` is among the positional parameters."""
    params = [a.arg for a in fn.args.args]
    return params.index("action") if "action" in params else NOWHERE


def _action_arg(call: ast.Call, index: int) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == "action":
            return k.value
    return call.args[index] if index < len(call.args) else None


def _is_audit_insert(call: ast.Call) -> bool:
    """``insert(audit).values(...)``: a row written past ``record`` (no words check skipped)."""
    f = call.func
    return (
        isinstance(f, ast.Attribute)
        and f.attr == "values"
        and isinstance(f.value, ast.Call)
        and getattr(f.value.func, "id", "") == "insert"
        and [getattr(a, "id", "") for a in f.value.args] == ["audit"]
    )


def _is_record_many(m: Module, call: ast.Call) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute):
        return f.attr == "record_many" and getattr(f.value, "id", "") == "store_audit"
    return m.path == "interface/store/audit.py" and getattr(f, "id", "") == "record_many"


def _handed_on(arg: ast.expr | None, fn) -> str | None:
    """The prefix when ``arg`` is the function's own ``action`` parameter (``action``,
    ``f"scan_{action}"``, ``"scan_" + action``), else None."""
    if "action" not in _params(fn):
        return None
    if isinstance(arg, ast.Name) and arg.id == "action":
        return ""
    parts = arg.values if isinstance(arg, ast.JoinedStr) else None
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
        parts = [arg.left, arg.right]
    if parts and len(parts) == 2 and isinstance(parts[0], ast.Constant):
        last = parts[1].value if isinstance(parts[1], ast.FormattedValue) else parts[1]
        if isinstance(last, ast.Name) and last.id == "action":
            return str(parts[0].value)
    return None


class Writers:
    """The audit writers, by module (a module's own helper such as ``_audit`` wins over another
    module's of the same name) and by name (a helper called from another module): the position
    of the ``action`` parameter and what the writer puts before it (``scan_``)."""

    def __init__(self, mods: list[Module]):
        self.local: dict[tuple[str, str], tuple[int, str]] = {}
        self.named: dict[str, tuple[int, str]] = {}
        self.defined = {(m.path, fn.name) for m in mods for fn in _functions(m)}
        changed = True
        while changed:
            changed = False
            for m in mods:
                for fn in _functions(m):
                    if (m.path, fn.name) in self.local:
                        continue
                    if fn.args.kwarg is not None and self._hands_kwargs_on(m, fn):
                        self.local[(m.path, fn.name)] = (NOWHERE, "")  # audit_now(request, **kw)
                        self.named.setdefault(fn.name, (NOWHERE, ""))
                        changed = True
                        continue
                    if "action" not in _params(fn):
                        continue
                    for arg, _line, prefix in self.sites(m, fn):
                        own = _handed_on(arg, fn)
                        if own is not None:
                            self.local[(m.path, fn.name)] = (_index(fn), prefix + own)
                            self.named.setdefault(fn.name, (_index(fn), prefix + own))
                            changed = True
                            break

    def _hands_kwargs_on(self, m: Module, fn) -> bool:
        """``fn(..., **kw)`` calling a writer with ``**kw`` (the action among them)."""
        name = fn.args.kwarg.arg
        return any(
            isinstance(c, ast.Call)
            and self.target(m, c) is not None
            and any(k.arg is None and getattr(k.value, "id", "") == name for k in c.keywords)
            for c in ast.walk(fn)
        )

    def target(self, m: Module, call: ast.Call) -> tuple[int, str] | None:
        """(position of the action argument, prefix) when ``call`` calls an audit writer."""
        f = call.func
        if isinstance(f, ast.Attribute):
            if f.attr in ROOTS and getattr(f.value, "id", "") == "store_audit":
                return NOWHERE, ""
            if f.attr in ROOTS or f.attr == "values":  # other modules' record(): not the audit's
                return (NOWHERE, "") if _is_audit_insert(call) else None
            return self.named.get(f.attr)
        name = getattr(f, "id", None)
        if m.path == "interface/store/audit.py" and name in ROOTS:
            return NOWHERE, ""
        if (m.path, name) in self.defined:
            return self.local.get((m.path, name))  # type: ignore[arg-type]
        return self.named.get(name)  # type: ignore[arg-type]

    def sites(self, m: Module, scope):
        """(action expression, line, the writer's prefix) of each audit write in ``scope``."""
        many = any(isinstance(c, ast.Call) and _is_record_many(m, c) for c in ast.walk(scope))
        for node in ast.walk(scope):
            if isinstance(node, ast.Call) and (found := self.target(m, node)) is not None:
                arg = _action_arg(node, found[0])
                if arg is not None:
                    yield arg, node.lineno, found[1]
            elif many and isinstance(node, ast.Dict):  # the entries handed to record_many
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "action":
                        yield v, node.lineno, ""

    def is_writer(self, m: Module, fn) -> bool:
        return (m.path, fn.name) in self.local


def _assigned(fn, name: str) -> list[ast.expr] | None:
    """What a local variable is given in ``fn`` (tuple assignments matched by position)."""
    out: list[ast.expr] = []
    for node in ast.walk(fn):
        if not isinstance(node, ast.Assign):
            continue
        for t in node.targets:
            if isinstance(t, ast.Name) and t.id == name:
                out.append(node.value)
            elif isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                out += [
                    v for e, v in zip(t.elts, node.value.elts) if isinstance(e, ast.Name) and e.id == name
                ]
    return out or None


def _strings(node: ast.expr | None, m: Module, fn=None) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        a, b = _strings(node.body, m, fn), _strings(node.orelse, m, fn)
        return a + b if a is not None and b is not None else None
    if isinstance(node, ast.Name):
        given = _assigned(fn, node.id) if fn is not None and node.id not in _params(fn) else None
        if given:
            got = [_strings(v, m) for v in given]
            return None if any(g is None for g in got) else [s for g in got for s in g or []]
        if node.id in m.constants:
            return [m.constants[node.id]]
    return None


def written_actions() -> tuple[dict[str, set[str]], list[str]]:
    """(action -> the modules writing it, the writes whose action the scan cannot read)."""
    mods = _modules()
    writers = Writers(mods)
    found: dict[str, set[str]] = {}
    unread: list[str] = []

    def add(strings, where):
        for s in strings:
            found.setdefault(s, set()).add(where)

    for m in mods:
        scopes = [fn for fn in _functions(m)] or []
        seen: set[int] = set()
        for fn in scopes:
            if writers.is_writer(m, fn):  # a writer's default action (download_packet's)
                params = fn.args.args + fn.args.kwonlyargs
                pos = [None] * (len(fn.args.args) - len(fn.args.defaults)) + list(fn.args.defaults)
                for p, d in zip(params, pos + list(fn.args.kw_defaults), strict=True):
                    if p.arg == "action" and d is not None:
                        prefix = writers.local[(m.path, fn.name)][1]
                        add([prefix + g for g in _strings(d, m) or []], m.path)
        for fn in sorted(scopes, key=lambda f: -f.lineno):  # innermost first: its own locals
            for arg, line, prefix in writers.sites(m, fn):
                if id(arg) in seen:
                    continue
                seen.add(id(arg))
                if _handed_on(arg, fn) is not None:
                    continue  # a writer handing its own action on
                got = _strings(arg, m, fn)
                if got is None and m.path in DYNAMIC:
                    got = sorted(DYNAMIC[m.path])
                if got is None:
                    unread.append(f"{m.path}:{line}: {ast.unparse(arg)}")
                else:
                    add([prefix + g for g in got], m.path)
    return found, unread


def test_the_scan_finds_the_writers_and_their_actions():
    found, _ = written_actions()
    for action in ("view", "search", "listed", "login", "break_glass", "reveal", "roi_list", "roi_view"):
        assert action in found, action
    assert "interface/desk/roi_release.py" in found["roi_packet_download"]  # a writer's default
    assert "interface/web/fhir/access.py" in found["listed"]  # the entries of record_many
    assert "interface/web/auth.py" in found["view"]  # a local variable (audit_access)
    assert "interface/web/api/scan.py" in found["scan_split"]  # act(..., "split"): f"scan_{action}"


def test_every_audit_action_written_has_words():
    found, unread = written_actions()
    assert unread == [], "an action the scan cannot read: give it as a string, or list it in DYNAMIC"
    missing = {a: sorted(where) for a, where in found.items() if words.word("audit_action", a) == a}
    assert missing == {}
