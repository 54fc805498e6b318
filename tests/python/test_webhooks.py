"""Webhook subscriptions against a real `bloodbank serve`: a small HTTP receiver in the test
fails on purpose at first, then takes every event; each POST carries the envelope signed with
HMAC-SHA256 of the body; a receiver that always fails ends in the subscription's DLQ, where
`bloodbank dlq` finds it; subscriptions survive a restart; bad requests name the field."""

import hashlib
import hmac
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from conftest import BINARY, start_server, stop_server

MEETING = {"event_type": "theboard.meeting.created", "timestamp": "2026-01-15T10:30:00Z",
           "meeting_id": "550e8400-e29b-41d4-a716-446655440000", "topic": "webhooks",
           "strategy": "simple", "max_rounds": 3}


class Receiver:
    """Answers the first `failures` POSTs with 500, the rest with 200, and keeps them all."""

    def __init__(self, failures=0):
        self.failures = failures
        self.got = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append((dict(self.headers), body))
                status = 500 if len(receiver.got) <= receiver.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status == 500 else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count} POSTs arrived"
            time.sleep(0.05)
        return self.got


def signed(secret, headers, body):
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Bloodbank-Signature"], want)


def test_webhooks_deliver_signed_with_retries_a_dlq_and_restarts(tmp_path):
    server = start_server(tmp_path / "data")
    flaky, dead = Receiver(failures=2), Receiver(failures=10**6)
    try:
        api = server.http + "/v1/subscriptions"
        r = requests.post(api, json={"pattern": "theboard.meeting.*", "url": flaky.url, "secret": "s3cret",
                                     "backoff_ms": [100, 200]})
        assert r.status_code == 201, r.text
        sub = r.json()
        assert "secret" not in sub and sub["dead_letter_queue"].endswith(".dlq")
        r = requests.post(api, json={"pattern": "theboard.#", "url": dead.url, "secret": "other",
                                     "max_attempts": 2, "backoff_ms": [50]})
        dead_sub = r.json()

        published = requests.post(server.http + "/events/theboard.meeting.created", json=MEETING).json()
        # Two refusals, then the third attempt is taken: the same envelope each time, signed.
        got = flaky.wait(3)
        bodies = {body for _, body in got}
        assert len(bodies) == 1
        body = bodies.pop()
        assert json.loads(body)["id"] == published["id"]
        for headers, b in got:
            assert signed("s3cret", headers, b)
            assert headers["X-Bloodbank-Event-Type"] == "theboard.meeting.created"
        assert [h["X-Bloodbank-Attempt"] for h, _ in got] == ["1", "2", "3"]
        time.sleep(0.5)
        assert len(flaky.got) == 3  # at least once, and here exactly once accepted

        # The receiver that always fails: two attempts, then the DLQ, with the reason.
        dead.wait(2)
        env = {"BLOODBANK_AMQP_URL": server.url}
        deadline = time.monotonic() + 10
        while True:
            shown = subprocess.run([str(BINARY), "dlq", "show", dead_sub["dead_letter_queue"], "--json"],
                                   capture_output=True, text=True, env=env)
            letters = json.loads(shown.stdout or "[]")
            if letters or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(letters) == 1, shown.stderr
        assert letters[0]["reason"] == "handler_failed" and letters[0]["attempts"] == 2
        assert "500" in letters[0]["error"] and letters[0]["routing_key"] == "theboard.meeting.created"

        listed = requests.get(api).json()
        mine = {s["id"]: s for s in listed}
        assert mine[sub["id"]]["delivered"] == 1 and mine[sub["id"]]["failed_attempts"] == 2
        assert mine[dead_sub["id"]]["dead_lettered"] == 1

        # Subscriptions survive a restart, and events published while the receiver was down
        # arrive once it is back.
        stop_server(server)
        server = start_server(tmp_path / "data")
        api = server.http + "/v1/subscriptions"
        assert sub["id"] in {s["id"] for s in requests.get(api).json()}
        requests.post(server.http + "/events/theboard.meeting.created", json={**MEETING, "topic": "again"})
        got = flaky.wait(4)
        assert json.loads(got[3][1])["data"]["topic"] == "again"

        # Unsubscribing stops deliveries and removes the queues.
        assert requests.delete(f"{api}/{dead_sub['id']}").status_code == 204
        assert requests.delete(f"{api}/{dead_sub['id']}").status_code == 404
        assert dead_sub["id"] not in {s["id"] for s in requests.get(api).json()}
    finally:
        stop_server(server)
        flaky.server.shutdown()
        dead.server.shutdown()


def test_bad_subscription_requests_name_the_field(bloodbank):
    api = bloodbank.http + "/subscriptions"
    for body, field in [
        ({"url": "http://127.0.0.1:1/", "secret": "x"}, "pattern"),
        ({"pattern": "#", "secret": "x"}, "url"),
        ({"pattern": "#", "url": "https://example.com/", "secret": "x"}, "url"),
        ({"pattern": "#", "url": "http://127.0.0.1:1/"}, "secret"),
        ({"pattern": "#", "url": "http://127.0.0.1:1/", "secret": "x", "max_attempts": 0}, "max_attempts"),
        ({"pattern": "#", "url": "http://127.0.0.1:1/", "secret": "x", "backoff_ms": [1]}, "backoff_ms"),
        ({"pattern": "#", "url": "http://127.0.0.1:1/", "secret": "x", "colour": "red"}, "colour"),
    ]:
        r = requests.post(api, json=body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["message"], (field, r.json())
    assert requests.delete(api + "/not-a-uuid").status_code == 404
