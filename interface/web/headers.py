"""Security headers on every response of the console and the API (an ASGI middleware).

Each header is set only when the route did not set its own (a page's CSP, the static files'
``Cache-Control``, a document's sandbox CSP stay as they are):

* ``X-Content-Type-Options: nosniff``; ``Referrer-Policy: same-origin`` (URLs carry MRNs: they
  never go to another site); ``X-Frame-Options: SAMEORIGIN``.
* ``Content-Security-Policy``: HTML gets :data:`CONSOLE_CSP` (only our own scripts, styles and
  frames, no inline script, nobody else may frame us); anything else but a PDF gets
  :data:`OTHER_CSP` (nothing loads, nothing frames it but the console). A PDF is left alone: the
  console shows it in an ``<object>`` and browsers' PDF viewers break under ``default-src 'none'``.
* ``Cache-Control: no-store`` (pages, API answers and documents carry patient data; the static
  files say ``max-age`` themselves).
* over https, ``Strict-Transport-Security`` (a year).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
    "form-action 'self'"
)
OTHER_CSP = "default-src 'none'; frame-ancestors 'self'; base-uri 'none'"
HSTS = "max-age=31536000"


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                media = headers.get("content-type", "").split(";")[0].strip().lower()
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("X-Frame-Options", "SAMEORIGIN")
                if media == "text/html":
                    headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
                elif media != "application/pdf":
                    headers.setdefault("Content-Security-Policy", OTHER_CSP)
                headers.setdefault("Cache-Control", "no-store")
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
