"""MLLP over TLS with client certificates required: certificates made here with `cryptography`,
the engine run as a subprocess on an ``ssl:`` endpoint (port 0)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interface.config.channels import Channel
from interface.engine.client import MLLPClient, tls_context
from interface.engine.transport import bind_description
from tests.test_loopback import EngineProcess, engine, sample, shared_db, stored  # noqa: F401 (fixtures)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(cn: str):
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, cn: str, *, server: bool):
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return key, b.sign(ca_key, hashes.SHA256())


def write_pair(d: Path, stem: str, key, cert) -> tuple[str, str]:
    kp, cp = d / f"{stem}.key", d / f"{stem}.pem"
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(kp), str(cp)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca("Test CA")
    other_key, other_ca = make_ca("Other CA")
    out = {"ca": write_pair(d, "ca", ca_key, ca)[1]}
    out["server_key"], out["server_cert"] = write_pair(
        d, "server", *make_leaf(ca_key, ca, "engine", server=True)
    )
    out["client_key"], out["client_cert"] = write_pair(
        d, "client", *make_leaf(ca_key, ca, "registration", server=False)
    )
    out["rogue_key"], out["rogue_cert"] = write_pair(
        d, "rogue", *make_leaf(other_key, other_ca, "rogue", server=False)
    )
    return out


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory, shared_db, pki):
    tmp_path = tmp_path_factory.mktemp("tls")
    chdir = tmp_path / "channels"
    chdir.mkdir()
    (chdir / "adt.yaml").write_text(f"""\
name: adt
listen: ssl:2575:interface=127.0.0.1
tls:
  cert: {pki["server_cert"]}
  key: {pki["server_key"]}
  client_ca: {pki["ca"]}
  require_client_cert: true
accept: ["ADT^*"]
mapping: adt
mrn: {{authority: HOSP, types: [MR]}}
""")
    with EngineProcess(
        tmp_path, shared_db[0], channels=chdir, listen={"adt": "ssl:0:interface=127.0.0.1"}
    ) as p:
        yield p


def test_client_with_good_certificate_gets_ack_and_one_without_is_refused(tls_engine, engine, pki):
    port = tls_engine.ports["adt"]
    msg = sample("04-a04-register-rivera.hl7")
    good = tls_context(pki["ca"], pki["client_cert"], pki["client_key"])
    with MLLPClient("127.0.0.1", port, timeout=20, tls=good) as c:
        r = c.send(msg)
        assert r.code in ("AA", "CA"), r
        assert c.send(sample("12-a08-update-rivera.hl7")).ok
    assert len(stored(engine, "SMP0004", "SMP0012")) == 2

    for ctx in (
        tls_context(pki["ca"], None, None),  # no client certificate
        tls_context(pki["ca"], pki["rogue_cert"], pki["rogue_key"]),
    ):  # not from our CA
        c = MLLPClient("127.0.0.1", port, timeout=20, tls=ctx)
        try:
            c.connect()
            r = c.send(sample("01-a28-add-person-chen.hl7"))
        except (ssl.SSLError, OSError):
            r = None
        finally:
            c.close()
        assert r is None or r.code == "--", r
    assert stored(engine, "SMP0001") == []

    plain = MLLPClient("127.0.0.1", port, timeout=20)  # no TLS at all
    try:
        r = plain.send(sample("01-a28-add-person-chen.hl7"))
    finally:
        plain.close()
    assert r.code == "--"
    assert stored(engine, "SMP0001") == []


def test_client_rejects_server_not_signed_by_its_ca(tls_engine, pki, tmp_path):
    other_key, other_ca = make_ca("Unrelated")
    path = tmp_path / "unrelated.pem"
    path.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    ctx = tls_context(str(path), pki["client_cert"], pki["client_key"])
    c = MLLPClient("127.0.0.1", tls_engine.ports["adt"], timeout=20, tls=ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect()
    c.close()


def test_ssl_endpoint_bound_as_tcp_under_our_tls(pki):
    """With a tls: block, ssl:PORT is bound as tcp:PORT and TLS is ours (client certificates)."""
    ch = Channel.model_validate(
        {
            "name": "x",
            "listen": "ssl:2575:interface=127.0.0.1:privateKey=k.pem",
            "tls": {"cert": pki["server_cert"], "key": pki["server_key"]},
        }
    )
    assert bind_description(ch) == "tcp:2575:interface=127.0.0.1"
    assert bind_description(ch, "ssl:0:interface=127.0.0.1") == "tcp:0:interface=127.0.0.1"
    plain = Channel.model_validate({"name": "y", "listen": "tcp:2575:interface=127.0.0.1"})
    assert bind_description(plain) == "tcp:2575:interface=127.0.0.1"


def test_ssl_endpoint_without_keys_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tls: block"):
        Channel.model_validate({"name": "x", "listen": "ssl:2575"})


def test_interface_send_over_tls(tls_engine, pki, capsys):
    """`interface send --ca --cert --key`: CA over mutual TLS (exit 0); no client cert: exit 1."""
    from interface.ops import cli
    from tests.test_loopback import ADT

    port = str(tls_engine.ports["adt"])
    f = ADT / "05-a06-outpatient-to-inpatient-rivera.hl7"
    code = cli.main(
        [
            "send",
            "--timeout",
            "20",
            "--port",
            port,
            "--ca",
            pki["ca"],
            "--cert",
            pki["client_cert"],
            "--key",
            pki["client_key"],
            str(f),
        ]
    )
    assert code == 0 and capsys.readouterr().out.strip().endswith("CA")
    code = cli.main(["send", "--timeout", "20", "--port", port, "--ca", pki["ca"], str(f)])
    assert code == 1 and "\t--" in capsys.readouterr().out
