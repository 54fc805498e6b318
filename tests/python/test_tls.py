"""TLS on every listener, against a real `bloodbank serve` with certificates made here by
openssl: a CA, the server's certificate, client certificates (one the broker knows as a user,
one it does not) and a second CA the broker does not trust. pika, aio-pika and amqplib over
amqps, EXTERNAL logins, stomp.py over TLS, HTTPS to the gateway and the management API, wss:// to Web-STOMP and
speech, certificate reload on SIGHUP, and clients that send garbage or nothing."""

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import aio_pika
import pika
import pytest
import requests
from websockets.sync.client import connect as ws_connect

from conftest import ROOT, start_server, stop_server


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(dir, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-days", "30", "-subj", f"/CN={name}", cwd=dir)


def make_cert(dir, name, subject, ca="ca", server=False):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=dir)
    ext = dir / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "30", "-extfile", ext.name, cwd=dir)
    return dir / f"{name}.crt", dir / f"{name}.key"


@pytest.fixture(scope="module")
def certs():
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_ca(d, "ca")
        make_ca(d, "rogue")
        make_cert(d, "server", "/CN=localhost", server=True)
        make_cert(d, "server2", "/CN=localhost/O=Renewed", server=True)
        make_cert(d, "client", "/CN=tls-client/O=Bloodbank Tests")
        make_cert(d, "stranger", "/CN=nobody-we-know")
        make_cert(d, "impostor", "/CN=tls-client", ca="rogue")
        yield d


TLS_LISTENERS = ["--amqps-listen", "--stomps-listen", "--stomp-wss-listen", "--management-tls-listen",
                 "--gateway-tls-listen", "--speech-tls-listen"]


@pytest.fixture(scope="module")
def server(certs):
    live = certs / "live"
    live.mkdir()
    shutil.copy(certs / "server.crt", live / "server.crt")
    shutil.copy(certs / "server.key", live / "server.key")
    with tempfile.TemporaryDirectory() as tmp:
        flags = [x for flag in TLS_LISTENERS for x in (flag, "127.0.0.1:0")]
        s = start_server(Path(tmp) / "data", *flags, "--tls-cert", str(live / "server.crt"),
                         "--tls-key", str(live / "server.key"), "--tls-ca", str(certs / "ca.crt"),
                         "--tls-verify-peer", "--ssl-cert-login-from", "common_name")
        s.ready = json.loads((Path(tmp) / "data.ready").read_text())
        s.port_of = lambda name: int(s.ready[name].rsplit(":", 1)[1])
        s.live = live
        mgmt = f"http://{s.ready['management']}"
        requests.put(f"{mgmt}/api/users/tls-client", json={"password_hash": "", "tags": ""},
                     auth=("guest", "guest"), timeout=5).raise_for_status()
        requests.put(f"{mgmt}/api/permissions/%2F/tls-client", json={"configure": ".*", "write": ".*", "read": ".*"},
                     auth=("guest", "guest"), timeout=5).raise_for_status()
        yield s
        stop_server(s)


def context(certs, client=None, ca="ca.crt"):
    ctx = ssl.create_default_context(cafile=str(certs / ca))
    if client:
        ctx.load_cert_chain(str(certs / f"{client}.crt"), str(certs / f"{client}.key"))
    return ctx


def pika_params(server, certs, client=None, external=False, ca="ca.crt"):
    credentials = pika.credentials.ExternalCredentials() if external else pika.PlainCredentials("guest", "guest")
    return pika.ConnectionParameters("localhost", server.port_of("amqps"), credentials=credentials,
                                     ssl_options=pika.SSLOptions(context(certs, client, ca), "localhost"),
                                     connection_attempts=1, socket_timeout=5)


def round_trip(channel, body=b"over tls"):
    channel.confirm_delivery()
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", q, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    method, _, got = channel.basic_get(q, auto_ack=True)
    return got


def test_pika_over_amqps_with_and_without_a_client_certificate(server, certs):
    for client in (None, "client"):
        with pika.BlockingConnection(pika_params(server, certs, client)) as conn:
            assert round_trip(conn.channel()) == b"over tls"


def test_external_logs_in_as_the_certificates_user(server, certs):
    with pika.BlockingConnection(pika_params(server, certs, "client", external=True)) as conn:
        assert round_trip(conn.channel()) == b"over tls"
        listed = requests.get(f"http://{server.ready['management']}/api/connections", auth=("guest", "guest"),
                              timeout=5).json()
        mine = [c for c in listed if c["user"] == "tls-client"]
        assert [(c["ssl"], c["auth_mechanism"]) for c in mine] == [(True, "EXTERNAL")]
    # An unknown certificate user is refused; so is EXTERNAL without a certificate, and on
    # plain AMQP, where the mechanism is not even offered.
    with pytest.raises((pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AMQPConnectionError)):
        pika.BlockingConnection(pika_params(server, certs, "stranger", external=True))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika_params(server, certs, None, external=True))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters(
            server.host, server.port, credentials=pika.credentials.ExternalCredentials(), connection_attempts=1))


def test_untrusted_peers_fail_the_handshake(server, certs):
    # A client that does not trust our CA, and a client certificate from a CA we do not trust.
    with pytest.raises(ssl.SSLCertVerificationError):
        pika.BlockingConnection(pika_params(server, certs, ca="rogue.crt"))
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError, ConnectionError)):
        pika.BlockingConnection(pika_params(server, certs, "impostor", external=True))
    # A plain AMQP client on the TLS port is dropped, not left hanging.
    started = time.monotonic()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "localhost", server.port_of("amqps"), connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5))
    assert time.monotonic() - started < 5


def test_aio_pika_over_amqps_with_and_without_a_client_certificate(server, certs):
    async def main(client):
        conn = await aio_pika.connect(host="localhost", port=server.port_of("amqps"), login="guest",
                                      password="guest", ssl=True, ssl_context=context(certs, client),
                                      timeout=5)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue(exclusive=True)
            await ch.default_exchange.publish(aio_pika.Message(b"aio over tls"), routing_key=q.name)
            msg = await q.get(timeout=5)
            await msg.ack()
            return msg.body

    for client in (None, "client"):
        assert asyncio.run(main(client)) == b"aio over tls"


def test_amqplib_over_amqps_plain_and_external(server, certs):
    env = {**os.environ, "AMQPS_PORT": str(server.port_of("amqps")), "CA": str(certs / "ca.crt")}
    script = ROOT / "tests" / "browser" / "amqplib_tls.mjs"
    for extra in ({}, {"CLIENT_CERT": str(certs / "client.crt"), "CLIENT_KEY": str(certs / "client.key")}):
        out = subprocess.run(["node", str(script)], env={**env, **extra}, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"got": "over tls", "external": bool(extra)}


def test_https_gateway_and_management(server, certs):
    ca = str(certs / "ca.crt")
    https = f"https://localhost:{server.port_of('https')}"
    r = requests.post(f"{https}/events/theboard.meeting.created", verify=ca, timeout=10,
                      json={"meeting_id": "00000000-0000-4000-8000-000000000001", "topic": "tls",
                            "participants": ["a"], "max_rounds": 3})
    assert r.status_code in (200, 201, 400), r.text
    assert requests.get(f"{https}/health", verify=ca, timeout=10).json()["status"]
    mgmt = f"https://localhost:{server.port_of('management_tls')}"
    overview = requests.get(f"{mgmt}/api/overview", auth=("guest", "guest"), verify=ca, timeout=10).json()
    protocols = {l["protocol"] for l in overview["listeners"]}
    assert {"amqp", "amqp/ssl", "stomp/ssl", "https/web-stomp", "http", "https"} <= protocols
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{mgmt}/api/overview", verify=str(certs / "rogue.crt"), timeout=10)
    check = requests.get(f"{mgmt}/api/health/checks/certificate-expiration/1/months", auth=("guest", "guest"),
                         verify=ca, timeout=10)
    assert check.status_code == 503 and check.json()["status"] == "failed"  # expires in 30 days
    check = requests.get(f"{mgmt}/api/health/checks/certificate-expiration/1/weeks", auth=("guest", "guest"),
                         verify=ca, timeout=10)
    assert check.status_code == 200 and check.json() == {"status": "ok"}


def test_wss_web_stomp_and_speech(server, certs):
    ctx = context(certs)
    with ws_connect(f"wss://localhost:{server.port_of('stomp_wss')}/ws", ssl=ctx,
                    subprotocols=["v12.stomp"], open_timeout=5) as ws:
        ws.send("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0")
        assert ws.recv(timeout=5).startswith("CONNECTED\n")
    with ws_connect(f"wss://localhost:{server.port_of('speech_tls')}/asr", ssl=ctx, open_timeout=5) as ws:
        first = ws.recv(timeout=10)  # the config message, or why the model is missing
        assert first


def test_stomp_over_tls(server, certs):
    import stomp

    port = server.port_of("stomps")
    conn = stomp.Connection12([("localhost", port)], heartbeats=(0, 0))
    conn.set_ssl(for_hosts=[("localhost", port)], ca_certs=str(certs / "ca.crt"))
    got = []
    listener = stomp.listener.WaitingListener("sub")
    conn.set_listener("wait", listener)

    class Collect(stomp.ConnectionListener):
        def on_message(self, frame):
            got.append(frame.body)

    conn.set_listener("collect", Collect())
    conn.connect("guest", "guest", wait=True)
    conn.subscribe("/topic/tls.test", id="t", headers={"receipt": "sub"})
    listener.wait_on_receipt()
    conn.send("/topic/tls.test", "secret")
    deadline = time.monotonic() + 5
    while not got:
        assert time.monotonic() < deadline, "nothing arrived over STOMP+TLS"
        time.sleep(0.05)
    assert got == ["secret"]
    conn.disconnect()


def served_certificate(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("localhost", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def test_sighup_and_changed_files_reload_the_certificate_and_open_connections_keep_working(server, certs):
    port = server.port_of("amqps")
    before = served_certificate(port)
    conn = pika.BlockingConnection(pika_params(server, certs))
    ch = conn.channel()
    shutil.copy(certs / "server2.crt", server.live / "server.crt")
    shutil.copy(certs / "server2.key", server.live / "server.key")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served_certificate(port) == before:
        assert time.monotonic() < deadline, "the new certificate was not served"
        time.sleep(0.2)
    assert round_trip(ch, b"still here") == b"still here"
    conn.close()
    # A broken certificate file is not taken: the one in use stays.
    now = served_certificate(port)
    (server.live / "server.crt").write_text("not a certificate")
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert served_certificate(port) == now
    assert server.proc.poll() is None
    # Without a signal: changed files are noticed within a few seconds.
    shutil.copy(certs / "server.crt", server.live / "server.crt")
    shutil.copy(certs / "server.key", server.live / "server.key")
    deadline = time.monotonic() + 10
    while served_certificate(port) != before:
        assert time.monotonic() < deadline, "the changed files were not picked up"
        time.sleep(0.2)


def closed_within(sock, seconds):
    """Reads until the server closes the socket; False if it is still open after `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_garbage_and_silent_handshakes_do_not_hold_up_others(server, certs):
    port = server.port_of("amqps")
    silent = [socket.create_connection(("localhost", port)) for _ in range(20)]
    garbage = socket.create_connection(("localhost", port))
    garbage.sendall(b"AMQP\x00\x00\x09\x01" + b"\x16\x03\x01 nonsense" * 50)
    assert closed_within(garbage, 5), "garbage instead of a TLS hello is dropped"
    with pika.BlockingConnection(pika_params(server, certs)) as conn:
        assert round_trip(conn.channel()) == b"over tls"
    # A client that never starts its handshake is dropped after the handshake timeout (10 s).
    assert closed_within(silent[0], 15)
    for s in silent + [garbage]:
        s.close()


def test_plain_amqp_can_be_switched_off(certs, tmp_path):
    s = start_server(tmp_path / "data", "--amqp-listen", "off", "--amqps-listen", "127.0.0.1:0",
                     "--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key"))
    try:
        ready = json.loads((tmp_path / "data.ready").read_text())
        assert ready["amqp"] is None and ready["amqps"]
        s.port_of = lambda name: int(ready[name].rsplit(":", 1)[1])
        with pika.BlockingConnection(pika_params(s, certs)) as conn:
            assert round_trip(conn.channel()) == b"over tls"
    finally:
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=10) == 0


def test_a_bad_certificate_file_stops_the_start_with_its_name(certs, tmp_path):
    bad = tmp_path / "broken.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(RuntimeError) as e:
        start_server(tmp_path / "data", "--tls-cert", str(bad), "--tls-key", str(certs / "server.key"))
    assert "broken.crt" in str(e.value)
