"""Several machines: document content is kept with the database, so two engine processes with
their own --var directories serve each other's documents (real `interface run` on loopback)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import select

from interface.desk import users
from interface.engine.client import MLLPClient
from interface.store.content import store_dir
from interface.store.document_schema import document_blobs

from .reliability_kit import adt_message, mdm_message
from .test_loopback import EngineProcess


class WebEngine(EngineProcess):
    """``interface run`` with the web console on 127.0.0.1:0 and its own --var directory."""

    def __init__(self, tmp: Path, db_url: str):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, db_url)
        self.cmd = [c for c in self.cmd if c != "--no-web"] + ["--web", "127.0.0.1:0"]

    def start(self) -> "WebEngine":
        super().start()
        self.web_port = json.loads(self.ready.read_text())["web_port"]
        return self


def _get(port: int, path: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_store_dir_follows_who_owns_the_database(tmp_path):
    """The directory store only for a SQLite file inside this machine's --var; the database
    store for PostgreSQL or a database file elsewhere; a configured shared directory wins."""
    var = tmp_path / "var"
    assert store_dir(f"sqlite:///{var / 'interface.store.db'}", var) == var / "content"
    assert store_dir(f"sqlite:///{tmp_path / 'shared.db'}", var) is None
    assert store_dir("postgresql://127.0.0.1:5432/db", var) is None
    assert store_dir("postgresql://127.0.0.1:5432/db", var, tmp_path / "nfs") == tmp_path / "nfs"


def test_two_engines_on_one_database_serve_each_others_documents(tmp_path, db_url, engine):
    """An ADT^A04 and then an MDM^T02 with text content sent to engine A (its own --var) is read, byte for byte,
    through engine B's API (another --var): the content is in the database (document_blobs,
    by SHA-256), not in A's var/content."""
    from datetime import datetime, timezone

    with engine.begin() as conn:
        users.add_user(
            conn, "clerk9", "clerk", "correct horse battery staple", now=datetime.now(timezone.utc)
        )
        token = users.new_token(conn, "clerk9", now=datetime.now(timezone.utc))
    with WebEngine(tmp_path / "a", db_url) as a, WebEngine(tmp_path / "b", db_url) as b:
        with MLLPClient("127.0.0.1", a.ports["adt"], timeout=30) as client:  # the patient first
            assert client.send(adt_message("SHARE01", 1, "A04", "SHARE-0")).code in ("AA", "CA")
        with MLLPClient("127.0.0.1", a.ports["mdm"], timeout=30) as client:
            ack = client.send(mdm_message("SHARE01", 1, "SHARE-1"))
        assert ack.code in ("AA", "CA"), ack
        path = "/api/documents/DSHARE01-1/content"
        deadline = time.monotonic() + 60
        status, body = _get(b.web_port, path, token)
        while status == 404 and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a real subprocess (the worker applies it), with a deadline
            status, body = _get(b.web_port, path, token)
        assert status == 200, (status, body[:200], b.output()[-2000:])
        assert body == b"Reliability note 1"
        assert _get(a.web_port, path, token) == (200, body)
    content = tmp_path / "a" / "var" / "content"
    assert not content.exists() or not any(p.is_file() for p in content.rglob("*"))
    with engine.connect() as conn:
        sha = conn.execute(select(document_blobs.c.sha256)).scalars().all()
    assert sha == [hashlib.sha256(body).hexdigest()]


def test_content_import_copies_a_var_content_directory_into_the_database(tmp_path, db_url, engine):
    """`interface content import var/content` copies each blob (checked against its SHA-256
    name) into document_blobs, once; a second run copies nothing; a blob whose bytes do not
    match its name is refused (exit 1)."""
    import subprocess
    import sys

    from interface.store.content import ContentStore

    src = tmp_path / "content"
    store = ContentStore(src)
    with engine.begin() as conn:
        shas = [store.put(conn, data) for data in (b"note one", b"%PDF-1.4 two")]
    cli = [str(Path(sys.executable).parent / "interface"), "content", "import", str(src), "--db", db_url]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "2 blob(s)" in first.stdout, first.stderr
    second = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert "0 blob(s)" in second.stdout
    with engine.connect() as conn:
        assert ContentStore(None).get(conn, shas[0]) == b"note one"
        assert sorted(conn.execute(select(document_blobs.c.sha256)).scalars()) == sorted(shas)
    store.path_for(shas[1]).write_bytes(b"tampered")
    assert subprocess.run(cli, capture_output=True, text=True, timeout=120).returncode == 1
