"""The generated consumer kits, through the example service built on each (the meeting
tracker of examples/python on aio-pika, examples/typescript on amqplib, examples/rust on
lapin) running as its own
process against a real `bloodbank serve`, the same scenario for each: the three envelope shapes, redeliveries not double-counted, a failing
handler retried with backoff then dead-lettered with the reason, bad JSON and contract
violations straight to the DLQ, a broker restart in the middle without loss, the health
endpoint, and a graceful stop."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pika
import pytest
import requests

from conftest import BINARY, ROOT, free_port, start_server, stop_server

EXAMPLES = ROOT / "examples"
DLQ = "meeting-tracker.main.dlq"


def python_tracker(tmp_path):
    """The Python example with the package generated into a directory on its path."""
    package = tmp_path / "pkg"
    subprocess.run([str(BINARY), "schemas", "generate", "--lang", "python", "--out", str(package / "events"),
                    str(ROOT / "schemas")], check=True, capture_output=True)
    return [sys.executable, str(EXAMPLES / "python" / "meeting_tracker" / "service.py")], {"PYTHONPATH": str(package)}


def typescript_tracker(tmp_path):
    """The TypeScript example, generated and compiled the way its README says (npm ci is
    scripts/test's)."""
    example = EXAMPLES / "typescript" / "meeting-tracker"
    assert (example / "node_modules").is_dir(), "run `npm ci` in examples/typescript/meeting-tracker"
    subprocess.run([str(BINARY), "schemas", "generate", "--lang", "typescript", "--out", str(example / "src" / "events"),
                    str(ROOT / "schemas")], check=True, capture_output=True)
    built = subprocess.run([str(example / "node_modules" / ".bin" / "tsc"), "-p", str(example)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return ["node", str(example / "dist" / "service.js")], {}


def rust_tracker(tmp_path):
    """The Rust example, a workspace member (scripts/test builds it beside bloodbank)."""
    binary = BINARY.parent / "meeting-tracker"
    assert binary.exists(), "run `cargo build -p meeting-tracker`"
    return [str(binary)], {}


TRACKERS = {"python": python_tracker, "typescript": typescript_tracker, "rust": rust_tracker}


class Tracker:
    """The example service as a child process; its JSON lines are collected as they come."""

    def __init__(self, command, env, url):
        env = {**os.environ, **env}
        self.proc = subprocess.Popen(
            [*command, "--url", url, "--max-attempts", "3", "--backoff-ms", "200", "400", "--health-port", "0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, timeout=20, **want):
        """The first line (new or already seen) with these fields."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if all(line.get(k) == v for k, v in want.items()):
                    return line
            left = deadline - time.monotonic()
            assert left > 0, f"no line {want} from the tracker; saw {self.seen}; stderr: {self.stderr()}"
            try:
                self.seen.append(self.lines.get(timeout=min(left, 0.5)))
            except queue.Empty:
                assert self.proc.poll() is None, f"the tracker exited: {self.stderr()}"

    def stderr(self):
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read()


def post(base, path, body, content_type="application/json"):
    r = requests.post(base + path, data=json.dumps(body), headers={"Content-Type": content_type}, timeout=10)
    assert r.status_code < 300, r.text
    return r.json()


def created(meeting):
    return {"event_type": "theboard.meeting.created", "timestamp": "2026-01-15T10:30:00Z",
            "meeting_id": meeting, "topic": "kits", "strategy": "simple", "max_rounds": 9}


def round_completed(meeting, n, agent):
    return {"event_type": "theboard.meeting.round_completed", "timestamp": "2026-01-15T10:31:00Z",
            "meeting_id": meeting, "agent_name": agent, "avg_novelty": 0.5, "comment_count": 2,
            "cost": 0.01, "response_length": 100, "round_num": n, "tokens_used": 50}


def publish_raw(server, routing_key, body, headers=None):
    """What a producer that talks AMQP directly puts on the bus."""
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("events", routing_key, body, pika.BasicProperties(delivery_mode=2, headers=headers))
    conn.close()


def dead_letters(server):
    conn = pika.BlockingConnection(pika.URLParameters(server.url))
    ch = conn.channel()
    out = []
    while True:
        method, props, body = ch.basic_get(DLQ, auto_ack=True)
        if method is None:
            break
        out.append((props.headers, body))
    conn.close()
    return out


@pytest.mark.parametrize("language", sorted(TRACKERS))
def test_the_meeting_tracker_on_each_kit(tmp_path, language):
    command, env = TRACKERS[language](tmp_path)
    port = free_port()
    server = start_server(tmp_path / "data", amqp=f"127.0.0.1:{port}")
    tracker = Tracker(command, env, server.url)
    try:
        health_port = tracker.wait_for(event="health")["port"]
        tracker.wait_for(event="ready")

        # The three shapes: the spec's (gateway /events/*), v0.2 (POST /publish), a structured
        # CloudEvent put on the bus by a producer of its own.
        m1 = str(uuid.uuid4())
        post(server.http, "/events/theboard.meeting.created", created(m1))
        assert tracker.wait_for(event="created", meeting=m1)["shape"] == "spec"
        v02 = {"event_type": "theboard.meeting.round_completed", "payload": round_completed(m1, 1, "ada")}
        post(server.http, "/publish", v02)
        assert tracker.wait_for(event="round", meeting=m1, rounds=1)["shape"] == "v0.2"
        cloud = {"specversion": "1.0", "type": "theboard.meeting.round_completed", "source": "/theboard",
                 "id": str(uuid.uuid4()), "time": "2026-01-15T10:32:00Z", "data": round_completed(m1, 2, "bob")}
        publish_raw(server, "theboard.meeting.round_completed", json.dumps(cloud).encode())
        assert tracker.wait_for(event="round", meeting=m1, rounds=2)["shape"] == "cloudevents"
        # The same round again (a redelivery, as at-least-once allows) is not counted twice.
        post(server.http, "/publish", v02)
        publish_raw(server, "theboard.meeting.round_completed", json.dumps(cloud).encode())

        # Poison: a round of a meeting that never appears fails three times and is
        # dead-lettered; bad JSON and a contract violation go to the DLQ at once.
        ghost = str(uuid.uuid4())
        post(server.http, "/events/theboard.meeting.round_completed", round_completed(ghost, 1, "ada"))
        publish_raw(server, "theboard.meeting.created", b"{not json")
        broken = {"id": str(uuid.uuid4()), "event_type": "theboard.meeting.created", "timestamp": "x",
                  "source": "test", "data": {k: v for k, v in created(m1).items() if k != "topic"}}
        publish_raw(server, "theboard.meeting.created", json.dumps(broken).encode())
        deadline = time.monotonic() + 20
        dead = []
        while len(dead) < 3 and time.monotonic() < deadline:
            dead += dead_letters(server)
            time.sleep(0.2)
        by_reason = {h["x-dead-reason"]: (h, body) for h, body in dead}
        assert sorted(by_reason) == ["contract_violation", "handler_failed", "invalid_envelope"], dead
        failed, _ = by_reason["handler_failed"]
        assert failed["x-attempts"] == 3 and ghost in failed["x-error"]
        assert failed["x-original-routing-key"] == "theboard.meeting.round_completed"
        assert "topic" in by_reason["contract_violation"][0]["x-error"]
        health = requests.get(f"http://127.0.0.1:{health_port}/", timeout=5).json()
        assert health["connected"] and health["dead_lettered"] == 3 and health["retried"] == 2
        assert health["queues"]["meeting-tracker.main"]["lag"] == 0

        # The broker restarts in the middle of a stream of rounds: every round is counted
        # once it is back (the tracker reconnects by itself), none twice.
        for n in range(3, 23):
            post(server.http, "/events/theboard.meeting.round_completed", round_completed(m1, n, "ada"))
        stop_server(server)
        server = start_server(tmp_path / "data", amqp=f"127.0.0.1:{port}")
        for n in range(23, 33):
            post(server.http, "/events/theboard.meeting.round_completed", round_completed(m1, n, "ada"))
        tracker.wait_for(timeout=30, event="round", meeting=m1, rounds=32)
        post(server.http, "/events/theboard.meeting.completed", {
            "event_type": "theboard.meeting.completed", "timestamp": "2026-01-15T11:00:00Z", "meeting_id": m1,
            "agent_participation": {"ada": 31, "bob": 1}, "category_distribution": {"idea": 64},
            "top_comments": [], "convergence_detected": False, "stopping_reason": "max_rounds", "total_comments": 64,
            "total_cost": 1.5, "total_rounds": 32})
        tracker.wait_for(event="completed", meeting=m1, rounds=32)
        assert max(line.get("rounds", 0) for line in tracker.seen) == 32

        # A graceful stop: SIGTERM, the messages in hand finish, exit 0.
        tracker.proc.send_signal(signal.SIGTERM)
        assert tracker.proc.wait(timeout=20) == 0, tracker.stderr()
    finally:
        if tracker.proc.poll() is None:
            tracker.proc.kill()
        stop_server(server)
