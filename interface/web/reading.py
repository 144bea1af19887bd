"""Read-only database connections for the API's GET routes (on PostgreSQL a read-only
transaction, so a read can never write)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from fastapi import Request
from sqlalchemy.engine import Connection


@contextmanager
def reading(request: Request) -> Iterator[Connection]:
    with request.app.state.reader.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(postgresql_readonly=True)
        try:
            yield conn
        finally:
            conn.rollback()
