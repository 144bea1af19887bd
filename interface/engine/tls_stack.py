"""Twisted's TLS stack only in a process that uses TLS.

Twisted's reactor imports its TLS modules when it is installed (``twisted.internet.posixbase``
and ``tcp`` import ``twisted.protocols.tls`` and ``twisted.internet.ssl`` for ``listenSSL``,
``connectSSL`` and ``startTLS``), and with them pyOpenSSL, cryptography and service_identity:
~12 MB of every engine process, most of them for a plain MLLP channel that never speaks TLS.
:func:`install_reactor` installs the default reactor with those modules hidden, so it comes up
without them; :func:`enable` imports them when a channel's ``tls:`` block or an ``ssl:``
endpoint needs them (:mod:`interface.engine.transport`, :mod:`interface.ops.endpoints`) and
gives the reactor back ``listenSSL``/``connectSSL``. Our TLS listeners wrap their factory in
``TLSMemoryBIOFactory`` and need nothing more of the reactor; the one thing such a process
lacks is ``startTLS`` on a plain TCP connection, which the engine never calls (its own TLS
clients use the standard library's ``ssl``). The console's https (uvicorn) uses the standard
library's ``ssl`` too.
"""

from __future__ import annotations

import sys

_HIDDEN = ("twisted.protocols.tls", "twisted.internet.ssl")


def install_reactor() -> None:
    """Install the default reactor without Twisted's TLS modules (nothing if a reactor or those
    modules are imported already: a test process, an embedding program)."""
    if "twisted.internet.reactor" in sys.modules or any(m in sys.modules for m in _HIDDEN):
        return
    for name in _HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # "import fails": Twisted's own fallback
    try:
        from twisted.internet import reactor  # noqa: F401  (installs it)
    finally:
        for name in _HIDDEN:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def enable() -> None:
    """Import Twisted's TLS stack and, if the reactor came up without it, give it back
    ``listenSSL``/``connectSSL`` (the ``ssl:`` endpoints use them)."""
    from twisted.internet import ssl
    from twisted.protocols import tls

    posixbase = sys.modules.get("twisted.internet.posixbase")
    if posixbase is not None and posixbase.tls is None and posixbase.ssl is None:
        from twisted.internet.interfaces import IReactorSSL
        from zope.interface import classImplements

        posixbase.tls, posixbase.ssl = tls, ssl
        classImplements(posixbase.PosixReactorBase, IReactorSSL)
