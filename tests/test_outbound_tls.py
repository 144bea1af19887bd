"""Outbound MLLP over TLS (a destination's or return address's ``tls:`` block): the peer's
certificate is checked against the configured CA and name, a client certificate is presented
when configured (mutual TLS), and every TLS failure is ``downstream_unavailable`` (retried, with
the reason on the item). Real TLS peers on 127.0.0.1 with certificates made by tests/test_tls.py."""

from __future__ import annotations

import ssl

import pytest

from interface.config.channels import ClientTls, Destination, load_channels
from interface.engine.destinations import APPLICATION_ACK, destination_for
from interface.engine.outbound import DownstreamUnavailable, MLLPSender, client_tls, sender_for
from interface.hl7.errors import ConfigError
from tests.test_destinations import Rig, adt, channel
from tests.test_outbound import FlakyPeer, _msg
from tests.test_tls import make_ca, make_leaf, pki, write_pair  # noqa: F401 (pki is a fixture)


def server_context(pki, *, require_client_cert: bool = False, cert: str = "server") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki[f"{cert}_cert"], pki[f"{cert}_key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca"])
    return ctx


@pytest.fixture(scope="module")
def other_server(pki, tmp_path_factory):
    """A server certificate for 127.0.0.1 from a CA the sender does not trust."""
    d = tmp_path_factory.mktemp("otherpki")
    ca_key, ca = make_ca("Unknown CA")
    key, cert = write_pair(d, "srv", *make_leaf(ca_key, ca, "impostor", server=True))
    return {"other_cert": cert, "other_key": key}


def _sender(port: int, tls: ClientTls) -> MLLPSender:
    return sender_for(
        Destination(
            name="lab",
            type="mllp",
            host="127.0.0.1",
            port=port,
            connect_timeout_seconds=2,
            timeout_seconds=2,
            tls=tls,
        )
    )


def test_tls_send_gets_the_ack_and_reuses_the_connection(pki):
    with FlakyPeer(tls=server_context(pki)) as peer:
        s = _sender(peer.port, ClientTls(ca=pki["ca"]))
        try:
            assert s.send(_msg("T1")).code == "AA"
            assert s.send(_msg("T2")).code == "AA"
            assert isinstance(s.sock, ssl.SSLSocket) and s.sock.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            s.close()
    assert peer.acked == ["T1", "T2"] and peer.connections == 1


def test_mutual_tls_needs_the_client_certificate(pki):
    with FlakyPeer(tls=server_context(pki, require_client_cert=True)) as peer:
        bare = _sender(peer.port, ClientTls(ca=pki["ca"]))
        with pytest.raises(DownstreamUnavailable) as err:
            bare.send(_msg("M1"))  # TLS 1.3: the refusal can come after the handshake
        assert "127.0.0.1" in str(err.value)
        assert bare.sock is None
        good = _sender(peer.port, ClientTls(ca=pki["ca"], cert=pki["client_cert"], key=pki["client_key"]))
        try:
            assert good.send(_msg("M2")).code == "AA"
        finally:
            good.close()
    assert peer.acked == ["M2"] and peer.tls_failures >= 1


def test_untrusted_peer_certificate_is_refused_before_sending(pki, other_server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(other_server["other_cert"], other_server["other_key"])
    with FlakyPeer(tls=ctx) as peer:
        s = _sender(peer.port, ClientTls(ca=pki["ca"]))
        with pytest.raises(DownstreamUnavailable, match="not trusted"):
            s.send(_msg("U1"))
    assert peer.received == []  # nothing sent to a peer we could not authenticate


def test_wrong_server_name_is_refused(pki):
    with FlakyPeer(tls=server_context(pki)) as peer:
        s = _sender(peer.port, ClientTls(ca=pki["ca"], server_name="lab.example.org"))
        with pytest.raises(DownstreamUnavailable, match="not trusted"):
            s.send(_msg("N1"))
        ok = _sender(peer.port, ClientTls(ca=pki["ca"], server_name="localhost"))  # in the SAN
        try:
            assert ok.send(_msg("N2")).code == "AA"
        finally:
            ok.close()
    assert peer.received == ["N2"]


def test_verify_false_encrypts_without_checking(pki, other_server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(other_server["other_cert"], other_server["other_key"])
    with FlakyPeer(tls=ctx) as peer:
        s = _sender(peer.port, ClientTls(verify=False))
        try:
            assert s.send(_msg("V1")).code == "AA"
        finally:
            s.close()


def test_plain_peer_behind_a_tls_destination_is_unavailable(pki):
    with FlakyPeer() as peer:  # speaks plain MLLP
        s = _sender(peer.port, ClientTls(ca=pki["ca"]))
        with pytest.raises(DownstreamUnavailable, match="TLS"):
            s.send(_msg("P1"))


def test_missing_certificate_file_is_a_clear_transient_failure(pki, tmp_path):
    maker = client_tls(ClientTls(ca=str(tmp_path / "nowhere.pem")))
    with FlakyPeer(tls=server_context(pki)) as peer:
        s = MLLPSender("127.0.0.1", peer.port, connect_timeout=2, ack_timeout=2, tls=maker)
        with pytest.raises(DownstreamUnavailable, match="cannot be set up"):
            s.send(_msg("F1"))
    assert peer.received == []


def test_worker_delivers_over_tls_and_retries_a_tls_failure(engine, pki, other_server):
    """Through the OutboundWorker with the destination's tls: block (its default sender): an
    untrusted peer is a retry with the reason on the item; the right peer gets it delivered."""
    dest = {
        "name": "lab",
        "type": "mllp",
        "host": "127.0.0.1",
        "timeout_seconds": 2,
        "connect_timeout_seconds": 2,
        "tls": {"ca": pki["ca"], "cert": pki["client_cert"], "key": pki["client_key"]},
        "retry": {"initial_delay_seconds": 1, "jitter": 0, "max_attempts": 5},
    }
    bad = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    bad.load_cert_chain(other_server["other_cert"], other_server["other_key"])
    with FlakyPeer(tls=bad) as impostor:
        rig = Rig(engine, channel([{**dest, "port": impostor.port}], mapping=None))
        rig.out.sender_factory = sender_for  # what interface run uses
        rig.send(_msg("W1"))
        rig.drain()
        rig.out.close()
    item = rig.items("lab")[0]
    assert (item.status, item.reason) == ("pending", "downstream_unavailable")
    assert "not trusted" in item.last_error and impostor.received == []

    with FlakyPeer(tls=server_context(pki, require_client_cert=True)) as peer:
        rig2 = Rig(engine, channel([{**dest, "port": peer.port}], mapping=None))
        rig2.out.sender_factory = sender_for
        rig2.send(adt("W2", "M2"))  # another patient: not behind W1, which waits for its retry
        rig2.drain()
        rig2.out.close()
    assert rig2.status("lab")["W2"] == "done" and peer.acked == ["W2"]


def test_tls_block_config_rules(tmp_path):
    with pytest.raises(ValueError, match="both 'cert' and 'key'"):
        ClientTls(cert="c.pem")
    with pytest.raises(ValueError, match="mllp destinations only"):
        Destination(name="drop", type="file", directory="/tmp", tls={"ca": "ca.pem"})
    (tmp_path / "c.yaml").write_text(
        "name: c\nlisten: tcp:0\ndestinations:\n  - name: lab\n    type: mllp\n    host: h\n    port: 1\n"
        "    tls:\n      ca: ca.pem\n      certificate: x.pem\n"
    )
    with pytest.raises(ConfigError) as err:
        load_channels(tmp_path)
    assert "c.yaml:" in str(err.value) and "certificate" in str(err.value)


def test_application_ack_return_address_carries_tls(pki):
    ch = channel(
        ack={
            "mode": "enhanced",
            "application_ack": {"host": "127.0.0.1", "port": 2576, "tls": {"ca": pki["ca"]}},
        }
    )
    d = destination_for(ch, APPLICATION_ACK)
    assert d.tls is not None and d.tls.ca == pki["ca"]
