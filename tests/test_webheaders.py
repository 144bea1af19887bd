"""Security headers on every response, Swagger UI from the package, and the console over TLS
(``--web-tls CERT KEY``) with a ``Secure`` session cookie."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl

import httpx
import pytest

from interface.ops import cli
from interface.web.app import WebThread, create_app
from tests.test_auth import login
from tests.test_web_api import PASSWORD, TestClient, app, channels, clock, fast_hashing, h, make_user, tokens  # noqa: F401  (fixtures)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def _csp(r) -> dict[str, str]:
    out = {}
    for part in r.headers.get("content-security-policy", "").split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            out[name] = value
    return out


def assert_secure(r, *, cached=False):
    assert r.headers["x-content-type-options"] == "nosniff", r.url
    assert r.headers["x-frame-options"] in ("SAMEORIGIN", "DENY"), r.url
    assert r.headers["referrer-policy"] in ("same-origin", "no-referrer"), r.url
    csp = _csp(r)
    assert csp.get("frame-ancestors") in ("'self'", "'none'"), (r.url, csp)
    assert "'unsafe-inline'" not in csp.get("script-src", "") and "'unsafe-eval'" not in str(csp)
    if cached:
        assert "max-age" in r.headers["cache-control"], r.url
    else:
        assert r.headers["cache-control"] == "no-store", (r.url, r.headers.get("cache-control"))


def test_every_kind_of_response_has_the_security_headers(client, tokens):
    """Login page, console page, API JSON, 401, 404, 422, NUL 400, health, metrics, OpenAPI and
    Swagger UI: nosniff, frame options, referrer policy, a CSP that lets nobody else frame us,
    and no-store; the static files are cacheable."""
    admin = h(tokens["admin"])
    responses = [
        client.get("/login"),
        client.get("/", headers={"Accept": "text/html"}, follow_redirects=False),
        client.get("/api/messages", headers=admin),
        client.get("/api/patients/100001", headers=admin),
        client.get("/api/messages"),
        client.get("/api/messages/999999", headers=admin),
        client.get("/api/messages?limit=0", headers=admin),
        client.get("/api/messages?mrn=%00", headers=admin),
        client.get("/api/health"),
        client.get("/metrics"),
        client.get("/api/openapi.json"),
        client.get("/api/docs"),
        client.post("/login", data={"username": "x", "password": "y"}),
    ]
    assert [r.status_code for r in responses] == [
        200,
        303,
        200,
        404,
        401,
        404,
        422,
        400,
        200,
        200,
        200,
        200,
        403,
    ]
    for r in responses:
        assert_secure(r)
    for path in (
        "/static/console.css",
        "/static/login.css",
        "/static/swagger-ui-bundle.js",
        "/static/htmx.min.js",
    ):
        r = client.get(path)
        assert r.status_code == 200
        assert_secure(r, cached=True)


def test_html_gets_the_console_csp(client):
    """HTML answers allow only the console's own scripts, styles and frames."""
    csp = _csp(client.get("/login"))
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["default-src"] == "'self'"
    assert _csp(client.get("/api/health"))["default-src"] == "'none'"


def test_the_login_page_has_no_inline_style_or_script(client):
    """The login page loads its style from /static (the CSP allows no inline style)."""
    page = client.get("/login").text
    assert "<style" not in page and "<script" not in page and 'href="/static/login.css"' in page
    assert "style=" not in page


def test_swagger_ui_is_served_from_the_package(client):
    """/api/docs loads Swagger UI's files from /static (vendored), nothing from another site, no
    inline script."""
    page = client.get("/api/docs").text
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/static/swagger-ui-bundle.js" in srcs and "/static/swagger-ui.css" in srcs
    assert all(s.startswith("/static/") for s in srcs), srcs
    assert re.search(r"<script>(?!</script>)", page) is None  # every <script> has a src
    bundle = client.get("/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    assert client.get("/static/swagger-ui-LICENSE.txt").text.lstrip().startswith("Apache License")


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "web.pem", tmp_path / "web.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


def test_console_over_tls_sets_a_secure_cookie(engine, tmp_path):
    """WebThread with tls=(cert, key) serves https on loopback: the certificate verifies, the
    session cookie is Secure, HSTS is sent; plain http to the same port gets no answer."""
    cert, key = _self_signed(tmp_path)
    make_user(engine, "ann", "clerk")
    web = WebThread(create_app(engine), "127.0.0.1", 0, tls=(cert, key))
    web.start()
    try:
        base = f"https://127.0.0.1:{web.port}"
        with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=cert), timeout=10) as c:
            r = login(c, "ann", PASSWORD)
            assert r.status_code == 303
            cookie = [
                v
                for k, v in r.headers.multi_items()
                if k == "set-cookie" and v.startswith("interface_session=")
            ]
            assert cookie and "Secure" in cookie[0] and "HttpOnly" in cookie[0]
            assert r.headers["strict-transport-security"].startswith("max-age=")
            assert c.get("/api/me").json()["name"] == "ann"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{web.port}/api/health", timeout=5).raise_for_status()
    finally:
        web.stop()


def test_plain_http_cookie_is_not_secure(client, engine):
    """Over plain http the cookie cannot be Secure (the browser would drop it), and no HSTS."""
    make_user(engine, "ann", "clerk")
    r = login(client, "ann")
    assert "Secure" not in r.headers["set-cookie"] and "strict-transport-security" not in r.headers


def test_web_tls_refuses_missing_or_mismatched_files(tmp_path, capsys, db_url, engine):
    """`interface web/run --web-tls CERT KEY` with a missing file or a key of another certificate
    stops at once with `file:line:` and exit 1 (nothing listens)."""
    cert, key = _self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _cert2, key2 = _self_signed(other)
    for args in (
        ["web", "--db", db_url, "--web-tls", str(tmp_path / "nope.pem"), key],
        ["web", "--db", db_url, "--web-tls", cert, key2],
        ["run", "--db", db_url, "--no-web", "--web-tls", cert, str(tmp_path / "nope.key")],
    ):
        assert cli.main(args) == 1
        out = capsys.readouterr()
        text = out.out + out.err
        assert ("nope" in text and "no such" in text) or "cannot use this certificate" in text, text
