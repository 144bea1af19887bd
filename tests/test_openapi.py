"""Property-based run of every API operation from /api/openapi.json (schemathesis): with an admin
token, no generated request may cause a 5xx, and every answer must match the documented schema,
status codes and content type."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_web_api import app, channels, clock, fail, fast_hashing, h, make_user, receive  # noqa: F401

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture
def seeded(app, engine, channels, clock):
    ids = receive(engine, channels, clock, [(f"S{i}", f"3000000{i}") for i in range(4)])
    fail(engine, ids[0])
    fail(engine, ids[1], "missing_field")
    return ids


def test_openapi_document_lists_the_contract(app):
    """The OpenAPI document names the PRODUCT.md routes and the Bearer security scheme."""
    doc = app.openapi()
    for path in (
        "/api/health",
        "/api/channels",
        "/api/messages",
        "/api/messages/{message_id}",
        "/api/errors",
        "/api/errors/{item_id}/retry",
        "/api/errors/{item_id}/discard",
        "/api/errors/{item_id}/resubmit",
        "/api/errors/bulk",
        "/api/audit",
        "/api/patients/{mrn}",
        "/api/patients",
        "/api/users",
        "/api/users/{name}/role",
        "/api/users/{name}/disable",
        "/api/users/{name}/enable",
        "/api/users/{name}/password",
        "/api/users/{name}/token",
    ):
        assert path in doc["paths"], path
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_every_operation_survives_generated_requests(app, engine, seeded):
    """No 5xx and schema-conforming answers for ~15 derandomized examples per operation."""
    token = make_user(engine, "fuzzadmin", "admin")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    failures = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        ran += 1

        @settings(
            max_examples=15,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=h(token), checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert ran >= 12
    assert not failures, "\n\n".join(failures)
