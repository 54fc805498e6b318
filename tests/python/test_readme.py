"""The README's consumer, run as written against a real server: it receives what the gateway
publishes, and an event it cannot handle ends in its dead-letter queue."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parents[2]


def readme_block(language, after):
    text = (ROOT / "README.md").read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    return match.group(1)


def publish_http(base, event):
    request = urllib.request.Request(
        f"{base}/events/{event['event_type']}", data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_readme_consumer_works_as_written(bloodbank, tmp_path):
    script = tmp_path / "consumer.py"
    script.write_text(readme_block("python", "### Write a consumer"))
    consumer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "AMQP_URL": bloodbank.url})
    try:
        connection = pika.BlockingConnection(pika.URLParameters(bloodbank.url))
        channel = connection.channel()
        deadline = time.monotonic() + 20
        while True:  # the consumer has declared its queue and consumes
            try:
                ok = channel.queue_declare("meeting_tracker_queue", passive=True)
                if ok.method.consumer_count == 1:
                    break
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
            assert time.monotonic() < deadline, consumer.stderr.read() if consumer.poll() is not None else "no consumer"
            time.sleep(0.1)
        envelope = publish_http(bloodbank.http, {
            "event_type": "theboard.meeting.created", "timestamp": "2024-01-15T10:30:00Z",
            "meeting_id": "550e8400-e29b-41d4-a716-446655440000", "topic": "README",
            "strategy": "simple", "max_rounds": 2})
        assert envelope["data"]["meeting_id"] == "550e8400-e29b-41d4-a716-446655440000"
        line = consumer.stdout.readline().strip()
        assert line == "theboard.meeting.created 550e8400-e29b-41d4-a716-446655440000"

        # Something that is not an envelope: rejected into the dead-letter queue.
        channel.basic_publish("events", "theboard.meeting.started", b"not json")
        deadline = time.monotonic() + 10
        while channel.queue_declare("meeting_tracker.dlq", passive=True).method.message_count < 1:
            assert time.monotonic() < deadline, "nothing reached the DLQ"
            time.sleep(0.05)
        method, properties, body = channel.basic_get("meeting_tracker.dlq", auto_ack=True)
        assert body == b"not json"
        assert properties.headers["x-death"][0]["reason"] == "rejected"
        assert channel.queue_declare("meeting_tracker_queue", passive=True).method.message_count == 0
        connection.close()
    finally:
        consumer.terminate()
        consumer.wait(timeout=10)


def test_the_readme_kit_consumer_works_as_written(bloodbank, tmp_path):
    # As README says, in a service's own directory (no schemas/ there: the built-in contracts).
    binary = os.environ.get("BLOODBANK_BIN", str(ROOT / "target" / "debug" / "bloodbank"))
    setup = readme_block("", "### A typed consumer from the contracts").splitlines()[0]
    command = setup.split("#")[0].split()
    assert command[:2] == ["bloodbank", "schemas"], setup
    subprocess.run([binary, *command[1:]], check=True, capture_output=True, cwd=tmp_path)
    script = tmp_path / "tracker.py"
    script.write_text(readme_block("python", "### A typed consumer from the contracts"))
    tracker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path, env={**os.environ, "BLOODBANK_AMQP_URL": bloodbank.url})
    try:
        connection = pika.BlockingConnection(pika.URLParameters(bloodbank.url))
        channel = connection.channel()
        deadline = time.monotonic() + 20
        while True:
            try:
                if channel.queue_declare("meeting-tracker.main", passive=True).method.consumer_count == 1:
                    break
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
            assert time.monotonic() < deadline, tracker.stderr.read() if tracker.poll() is not None else "no consumer"
            time.sleep(0.1)
        connection.close()
        publish_http(bloodbank.http, {
            "event_type": "theboard.meeting.created", "timestamp": "2024-01-15T10:30:00Z",
            "meeting_id": "550e8400-e29b-41d4-a716-446655440001", "topic": "kit",
            "strategy": "simple", "max_rounds": 2})
        line = tracker.stdout.readline().strip()
        assert line == "theboard.meeting.created 550e8400-e29b-41d4-a716-446655440001 kit"
        tracker.terminate()
        assert tracker.wait(timeout=20) == 0, tracker.stderr.read()
    finally:
        if tracker.poll() is None:
            tracker.kill()
