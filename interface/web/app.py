"""The web console and REST API: one FastAPI app, built by :func:`create_app`.

* ``create_app(db, channels=, runtime=, document_settings=, clock=, directory=, code_tables_file=, mail=)``: the app; routers for auth,
  channels, messages, errors, users, patients, documents and the HTML pages (the last two when their
  modules exist), ``/metrics``, ``/api/health`` (:mod:`interface.web.api.health`), OpenAPI at
  ``/api/openapi.json`` (Swagger UI at ``/api/docs``, vendored: :mod:`interface.web.api.docs`);
  security headers on every response (:mod:`interface.web.headers`).
* :class:`WebThread`: uvicorn in a thread of the engine process (``interface run``); port 0
  picks a free port, then ``.port`` is the bound one. ``tls=(cert, key)`` serves https (the
  session cookie is then ``Secure``: ``interface run --web-tls CERT KEY``, ``interface web
  --web-tls CERT KEY``).
* :func:`serve`: ``interface web``, the console as its own process against the same database
  (live listener figures then come from nowhere: ``/api/channels`` says ``runtime: false``).

API answers are JSON with a ``detail`` for every 4xx; an unexpected error is a 500 JSON without
internals. Console pages answer an HTTP error (403, 404, 422...) with the HTML error page instead,
by :func:`wants_html_error`: any path but ``/api/...`` and ``/metrics``, from a client that
accepts ``text/html``. Uvicorn's access log is off: URLs carry MRNs (``?mrn=``).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from interface.rules.code_tables import DEFAULT_FILE as CODE_TABLES
from interface.store import audit as store_audit
from interface.store.db import read_only_engine
from interface.web import auth, http_protocol

log = logging.getLogger("interface.web.app")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _optional_router(module: str):
    import importlib

    try:
        return importlib.import_module(module).router
    except ImportError as exc:
        if exc.name != module:  # the module exists but something it imports is missing: say so
            raise
        return None


def _accepts_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits ``text/html`` (``*/*`` and ``text/*`` do, a missing
    header does, ``q=0`` does not)."""
    if not accept:
        return True
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if media.lower() not in ("text/html", "text/*", "*/*"):
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


def wants_html_error(request: Request) -> bool:
    """Answer an HTTP error with the console's HTML error page rather than JSON: for any path but
    the API (``/api/...``) and ``/metrics``, when the client accepts ``text/html`` (a browser, an
    htmx request); ``Accept: application/json`` keeps JSON everywhere."""
    path = request.url.path
    if path == "/api" or path.startswith("/api/") or path == "/metrics" or path.startswith("/metrics/"):
        return False
    return request.headers.get("hx-request") == "true" or _accepts_html(request.headers.get("accept"))


def _validation_message(exc: RequestValidationError) -> str:
    """``before: Input should be greater than or equal to 1`` (field names and rules, never the
    values sent: a query string may carry an MRN)."""
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body", "header", "cookie")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class _RejectNul:
    """400 for a NUL byte anywhere in the path or query: no database stores it in text."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
            qs = scope.get("query_string", b"")
            if any(bad in part for part in (raw, qs) for bad in (b"\x00", b"%00")):
                resp = JSONResponse({"detail": "NUL characters are not allowed"}, status_code=400)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _AuditVia:
    """Audit entries written while a request runs are marked with how it came (console, api,
    fhir), including those the desk and store write for it (``interface.store.audit.via``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        via = "fhir" if path.startswith("/fhir") else "api" if path.startswith("/api/") else "console"
        with store_audit.via(via):
            await self.app(scope, receive, send)


def create_app(
    db,
    *,
    channels=None,
    runtime=None,
    document_settings=None,
    clock: Callable[[], datetime] | None = None,
    directory=None,
    code_tables_file: Path | None = None,
    mail=None,
) -> FastAPI:
    from interface.store.schema import load_all_tables
    from interface.web import headers as webheaders
    from interface.web import metrics
    from interface.web.api import channels as api_channels
    from interface.web.api import docs as api_docs
    from interface.web.api import errors as api_errors
    from interface.web.api import health as api_health
    from interface.web.api import messages as api_messages
    from interface.web.api import users as api_users
    from interface.web.api.patients import router as patients_router
    from interface.web.fhir import router as fhir

    load_all_tables()
    app = FastAPI(
        title="HL7 interface engine",
        version="0.1.0",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )  # /api/docs: interface.web.api.docs (vendored Swagger UI)
    app.state.engine = db
    # reads (pages, GET /api/..., the token and session check of every request) go through a
    # read-only engine: on SQLite a WAL snapshot that never takes the write lock (db.read_only_engine)
    app.state.reader, app.state.reader_private = read_only_engine(db)
    if app.state.reader_private:  # (the engine's web thread runs without lifespan: its stop() does it)
        app.router.on_shutdown.append(app.state.reader.dispose)
    app.state.channels = list(channels or [])
    app.state.runtime = runtime
    app.state.document_settings = document_settings
    app.state.clock = clock or _utcnow
    app.state.directory = directory  # interface.desk.directory.Directory: sign-in (None: local users only)
    # the site's code tables (rules/code_tables.yaml beside the channels directory): the viewer's
    # meanings beside coded values (interface.rules.code_tables; None: the HL7 tables alone)
    app.state.code_tables_file = code_tables_file if code_tables_file is not None else CODE_TABLES
    app.state.mail = mail  # interface.config.mail.MailSettings: e-mail to ROI recipients (None: none)
    app.state.metrics_registry = metrics.make_registry(app)

    @app.exception_handler(auth.LoginRequired)
    async def _login_required(request: Request, exc: auth.LoginRequired):
        if fhir.is_fhir(request):
            return fhir.error_response(
                request, 401, "authentication required", {"WWW-Authenticate": "Bearer"}
            )
        if auth.wants_html(request):
            return auth.login_redirect(request)
        return JSONResponse(
            {"detail": "authentication required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(sqlite3.OperationalError)  # the write lock's own timeout (db.WriteLock),
    async def _db_down(request: Request, exc: Exception):  # raised before SQLAlchemy wraps anything
        orig = getattr(exc, "orig", None)
        log.error("database unavailable: %s", type(orig or exc).__name__)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError):
        # the route template (/api/patients/{mrn}), never the path itself: it may carry an MRN
        route = getattr(request.scope.get("route"), "path", "?")
        log.error("database error on %s %s: %s", request.method, route, type(exc.orig).__name__)
        return JSONResponse({"detail": "the database refused this request"}, status_code=400)

    try:
        from interface.web import pages
    except ImportError as exc:  # pragma: no cover - a console without its pages answers JSON
        if exc.name != "interface.web.pages":
            raise
        pages = None

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if fhir.is_fhir(request):
            return fhir.error_response(request, exc.status_code, exc.detail, exc.headers)
        if pages is not None and wants_html_error(request):
            return pages.error_page(request, exc.status_code, exc.detail, exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        if fhir.is_fhir(request):
            return fhir.error_response(request, 400, _validation_message(exc))
        if pages is not None and wants_html_error(request):
            return pages.error_page(request, 422, _validation_message(exc))
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(fhir.FhirError)
    async def _fhir_error(request: Request, exc: fhir.FhirError):
        return fhir.outcome_of(exc)

    app.add_middleware(_RejectNul)
    app.add_middleware(_AuditVia)
    app.add_middleware(webheaders.SecurityHeaders)  # outermost of ours: on _RejectNul's answers too

    # /fhir (interface.web.fhir, read-only FHIR R4) first: routes are matched in order, and
    # FHIR clients make many small requests (no other route's path starts with /fhir)
    app.include_router(fhir.router)
    app.include_router(auth.router)
    app.include_router(api_health.router)
    app.include_router(api_docs.router)
    app.include_router(api_channels.router)
    app.include_router(_optional_router("interface.web.api.channel_actions"))
    app.include_router(_optional_router("interface.web.api.channel_stats"))
    app.include_router(api_messages.router)
    app.include_router(api_errors.router)
    app.include_router(api_users.router)
    app.include_router(_optional_router("interface.web.api.audit"))
    app.include_router(_optional_router("interface.web.api.alerts"))
    app.include_router(metrics.router)
    app.include_router(
        patients_router,
        tags=["patients"],
        responses=api_messages.ERROR_RESPONSES,
        dependencies=[Depends(auth.require(*auth.CHARTS)), Depends(auth.audit_access("patient", "mrn"))],
    )
    documents_router = _optional_router("interface.web.api.documents")
    if documents_router is not None:
        app.include_router(
            documents_router,
            tags=["documents"],
            responses=api_messages.ERROR_RESPONSES,
            dependencies=[
                Depends(auth.require(*auth.DOCUMENTS)),
                Depends(auth.audit_access("document", "document_number")),
            ],
        )
    app.include_router(
        _optional_router("interface.web.api.chart_prep"),
        tags=["chart-prep"],
        responses=api_messages.ERROR_RESPONSES,
        dependencies=[Depends(auth.require(*auth.CHARTS))],
    )
    app.include_router(_optional_router("interface.web.api.scan"), responses=api_messages.ERROR_RESPONSES)
    roi_router = _optional_router("interface.web.api.roi")
    if roi_router is not None:  # /api/roi: the release-of-information desk (roles per route)
        app.include_router(roi_router)
        app.include_router(_optional_router("interface.web.api.roi_links"))  # links, the outbox
    pages_router = _optional_router("interface.web.pages")
    if pages_router is not None:
        app.include_router(pages_router)
        for group in (
            "interface.web.pages_messages",
            "interface.web.pages_errors",
            "interface.web.pages_charts",
            "interface.web.pages_prep",
            "interface.web.pages_audit",
            "interface.web.pages_channels",
            "interface.web.pages_roi",
            "interface.web.pages_roi_delivery",
            "interface.web.pages_scan",
        ):
            app.include_router(_optional_router(group))
        users_pages = _optional_router("interface.web.pages_users")
        if users_pages is not None:
            app.include_router(users_pages)
    else:

        @app.get("/", include_in_schema=False)
        def _home(user=Depends(auth.require())):
            return PlainTextResponse(f"Logged in as {user.name} ({user.role}). API: /api/docs\n")

    return app


class WebThread:
    """Uvicorn serving ``app`` in a daemon thread. The socket is bound in :meth:`start`, so
    ``port`` (0 = any free port) is known when it returns."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080, tls: tuple[str, str] | None = None
    ):
        self.app = app
        self.host = host
        self.port = port
        self.tls = tls  # (certificate file, private key file): https
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=http_protocol.protocol_class(),  # TCP_NODELAY: no 40 ms wait per keep-alive request
            **tls_options(self.tls),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="web", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"web console did not start on {self.host}:{self.port}")
            time.sleep(0.01)  # waiting for a real server thread, bounded by the deadline

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()
        if getattr(self.app.state, "reader_private", False):
            self.app.state.reader.dispose()


def tls_options(tls: tuple[str, str] | None) -> dict:
    """uvicorn's options for https from ``(certificate file, private key file)``; a missing or
    unreadable file is a ConfigError naming it (before anything listens)."""
    if not tls:
        return {}
    from interface.hl7.errors import ConfigError

    cert, key = (str(x) for x in tls)
    for what, path in (("certificate", cert), ("private key", key)):
        if not Path(path).is_file():
            raise ConfigError([f"{path}:1: no such {what} file (--web-tls CERT KEY)"])
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError([f"{cert}:1: cannot use this certificate and key for https: {exc}"]) from None
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def signal_reload(pid_path: Path) -> str:
    """The console's reload button when it runs alone (``interface web``): SIGHUP to the engine
    whose pid ``interface run`` wrote (as ``interface reload`` does, without waiting)."""
    try:
        pid = int(Path(pid_path).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        return f"no engine to reload ({type(exc).__name__}: is `interface run` running with this --var?)"
    return f"reload requested (SIGHUP to the engine, pid {pid}); its outcome is the next event"


def serve(
    db_url: str | None,
    var_dir,
    host: str,
    port: int,
    channels_dir: Path,
    tls: tuple[str, str] | None = None,
    background: Callable[[Any, Any], Callable[[], None] | None] | None = None,
) -> int:
    """``interface web``: the console alone, in the foreground, against the engine's database.
    ``background(engine, mail)`` starts work beside it (the ROI outbox's retry, handed in by the
    command line: ``interface.ops.roi_outbox.start``) and returns how to stop it when the console
    stops."""
    import uvicorn

    from interface.config.channels import load_channels
    from interface.engine.logsetup import configure as configure_logging
    from interface.hl7.errors import ConfigError
    from interface.store import db as dbmod

    configure_logging()  # INFO to stderr, SQL parameters and quoted values redacted (logsetup)
    engine = dbmod.make_engine(dbmod.resolve_url(db_url, var_dir))
    dbmod.create_schema(engine)
    channels = []
    if Path(channels_dir).exists():
        try:
            channels = load_channels(channels_dir)
        except ConfigError as exc:
            print(exc)
            return 1
    document_settings = None
    try:
        from interface.store import documents

        rules = None
        rules_file = Path("rules/completeness.yaml")
        if rules_file.exists():
            from interface.rules.completeness import load_rules

            rules = load_rules(rules_file)
        from interface.store.content import store_dir

        document_settings = documents.DocumentSettings(
            content_dir=store_dir(dbmod.resolve_url(db_url, var_dir), Path(var_dir)), rules=rules
        )
    except ImportError:  # pragma: no cover
        pass
    try:
        ssl_options = tls_options(tls)
    except ConfigError as exc:
        print(exc)
        return 1
    from interface.config.mail import FILE_NAME as MAIL_FILE
    from interface.config.mail import load_optional as load_mail
    from interface.desk.directory import from_file

    try:
        directory = from_file(Path(channels_dir).parent / "directory.yaml")
        mail = load_mail(Path(channels_dir).parent / MAIL_FILE)
    except ConfigError as exc:
        print(exc)
        return 1
    app = create_app(
        engine,
        channels=channels,
        document_settings=document_settings,
        directory=directory,
        code_tables_file=Path(channels_dir).parent / "rules" / "code_tables.yaml",
        mail=mail,
    )
    app.state.reload = functools.partial(signal_reload, Path(var_dir) / "interface.pid")
    log.info("web console and API on %s://%s:%s/", "https" if tls else "http", host, port)
    stop = background(engine, mail) if background is not None else None
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            access_log=False,
            log_level="info",
            http=http_protocol.protocol_class(),
            **ssl_options,
        )
    finally:
        if stop is not None:
            stop()
    return 0
