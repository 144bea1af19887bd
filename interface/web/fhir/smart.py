"""``GET /.well-known/smart-configuration`` (and under ``/fhir``): what this server supports of
SMART App Launch, truthfully: Bearer API tokens with SMART-style scopes, no OAuth server."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from interface.desk import scopes

router = APIRouter()

NOTE = (
    "No OAuth 2.0 authorization server: there is no authorize or token endpoint, no launch and no "
    "refresh. An administrator makes an API token with scopes (interface users token NAME --scope "
    "user/*.read, or --scope patient/*.read --patient MRN) and the client sends it as a Bearer token. "
    "A scope never widens the user's role (clerk or admin read patient data)."
)


def configuration() -> dict:
    return {
        "capabilities": ["permission-patient", "permission-user", "permission-v1"],
        "scopes_supported": list(scopes.SUPPORTED),
        "response_types_supported": [],
        "grant_types_supported": [],
        "code_challenge_methods_supported": [],
        "token_endpoint_auth_methods_supported": [],
        "description": NOTE,
    }


@router.get("/.well-known/smart-configuration")
@router.get("/fhir/.well-known/smart-configuration")
def smart_configuration():
    """The SMART configuration (public, like the CapabilityStatement)."""
    return JSONResponse(configuration())
