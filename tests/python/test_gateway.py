"""The HTTP gateway seen from Python: an aio-pika consumer receives what was published over
HTTP, and schemathesis finds no server error anywhere in /openapi.json."""

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import aio_pika

MEETING = {
    "event_type": "theboard.meeting.created",
    "timestamp": "2024-01-15T10:30:00Z",
    "meeting_id": "550e8400-e29b-41d4-a716-446655440000",
    "topic": "Python sees it",
    "strategy": "simple",
    "max_rounds": 3,
}


def post(base, path, body, headers=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_aio_pika_receives_what_http_published(bloodbank):
    async def run():
        connection = await aio_pika.connect_robust(bloodbank.url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("events")
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "theboard.meeting.*")
            parent = "6f9619ff-8b86-4011-b42d-00c04fc964ff"
            status, envelope = await asyncio.to_thread(
                post, bloodbank.http, "/events/theboard.meeting.created", MEETING, {"X-Correlation-ID": parent}
            )
            assert status == 200
            message = await queue.get(timeout=5)
            await message.ack()
            assert json.loads(message.body) == envelope
            assert message.routing_key == "theboard.meeting.created"
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.content_type == "application/json"
            assert message.message_id == envelope["id"]
            assert message.correlation_id == parent
            assert message.type == "theboard.meeting.created"
            assert message.app_id == envelope["source"]
            assert message.headers["cloudEvents_id"] == envelope["id"]
            assert envelope["data"] == MEETING

    asyncio.run(run())


def test_schemathesis_finds_no_server_error(bloodbank):
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(schemathesis), "run", f"{bloodbank.http}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "40", "--request-timeout", "10", "--seed", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "generated" in result.stdout
