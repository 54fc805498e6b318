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


def test_websocket_streams_events_published_over_http_and_amqp(bloodbank):
    import websockets

    async def run():
        ws_url = bloodbank.http.replace("http://", "ws://") + "/ws/events?pattern=theboard.%23"
        async with websockets.connect(ws_url) as ws:
            status, envelope = await asyncio.to_thread(post, bloodbank.http, "/events/theboard.meeting.created", MEETING)
            assert status == 200
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame["routing_key"] == "theboard.meeting.created"
            assert frame["message_id"] == envelope["id"]
            assert frame["body"] == envelope

            connection = await aio_pika.connect_robust(bloodbank.url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange("events")
                await exchange.publish(aio_pika.Message(b'{"raw": true}'), routing_key="theboard.note.added")
                await exchange.publish(aio_pika.Message(b'{"other": true}'), routing_key="calendar.event.created")
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (frame["routing_key"], frame["body"]) == ("theboard.note.added", {"raw": True})
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.3)
                raise AssertionError(f"a non-matching event arrived: {extra}")
            except asyncio.TimeoutError:
                pass

    asyncio.run(run())


def test_a_websocket_client_that_stops_reading_is_cut_off_and_others_keep_streaming(bloodbank):
    """A /ws/events client that never reads holds at most its bounded backlog: after 10 s
    of not taking what is sent it is closed (1008 with the reason, when the close frame still
    gets through), while a client that reads gets every event meanwhile."""
    import websockets

    async def run():
        base = bloodbank.http.replace("http://", "ws://") + "/ws/events?pattern=flood.%23"
        # max_queue=1: the client library stops reading the socket once one frame waits.
        async with websockets.connect(base, max_queue=1) as slow, websockets.connect(base) as reader:
            count, body = 600, b'{"pad": "' + b"x" * 32_000 + b'"}'

            async def read_all():
                for _ in range(count):
                    json.loads(await asyncio.wait_for(reader.recv(), 10))

            reading = asyncio.create_task(read_all())
            connection = await aio_pika.connect_robust(bloodbank.url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange("events")
                for i in range(count):
                    await exchange.publish(aio_pika.Message(body), routing_key=f"flood.{i}")
                    # Paced so that a reading client keeps up within its bounded backlog.
                    await asyncio.sleep(0.003)
            await reading
            await asyncio.sleep(12)
            got = 0
            try:
                while True:
                    await asyncio.wait_for(slow.recv(), 10)
                    got += 1
            except websockets.ConnectionClosed as closed:
                assert got < count, "the slow client was sent everything: nothing was bounded"
                code = closed.rcvd.code if closed.rcvd else None
                assert code in (1008, None), f"closed with {code}"
                if code == 1008:
                    assert "too slow" in closed.rcvd.reason

    asyncio.run(run())


def test_websocket_clients_that_send_too_much_are_closed_and_others_keep_streaming(bloodbank):
    """/ws/events only listens: a client message past 64 KiB closes that socket, and a flood
    of small messages from another client does not stop events reaching a third."""
    import websockets

    async def run():
        base = bloodbank.http.replace("http://", "ws://") + "/ws/events?pattern=theboard.%23"
        async with websockets.connect(base) as big, websockets.connect(base) as chatty, websockets.connect(base) as reader:
            await big.send(b"x" * (1024 * 1024))
            try:
                await asyncio.wait_for(big.recv(), 10)
                raise AssertionError("a 1 MiB client message was taken")
            except websockets.ConnectionClosed as closed:
                # 1009, or no close frame when the unread rest of the message reset the socket.
                assert closed.rcvd is None or closed.rcvd.code == 1009, closed
            for _ in range(5000):
                await chatty.send("hello")
            status, envelope = await asyncio.to_thread(post, bloodbank.http, "/events/theboard.meeting.created", {**MEETING, "topic": "after the flood"})
            assert status == 200
            frame = json.loads(await asyncio.wait_for(reader.recv(), 5))
            assert frame["message_id"] == envelope["id"]

    asyncio.run(run())
