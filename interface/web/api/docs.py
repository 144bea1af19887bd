"""``/api/docs``: Swagger UI for the OpenAPI document, served from the package.

The page loads the vendored ``swagger-ui-dist`` files from ``/static/`` (``interface/static/``,
see ``VENDORED.md``) and its set-up from ``/static/swagger-docs.js``: nothing comes from another
site and there is no inline script, so the console's CSP holds here too. The page and the
OpenAPI document hold no patient data, so neither needs a sign-in; trying a call in the page
needs an API token (the Authorize button).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>HL7 interface engine - API</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger-ui-bundle.js"></script>
<script src="/static/swagger-docs.js"></script>
</body>
</html>
"""


@router.get("/api/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return HTMLResponse(PAGE)
