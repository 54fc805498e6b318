"""The 33GOD consumer pattern with aio-pika, unchanged: a durable queue dead-lettering to
`<queue>_dlq`, prefetch 10, reject without requeue on failure; and persistent messages
surviving a broker restart."""

import asyncio
import tempfile
from pathlib import Path

import aio_pika

from conftest import start_server, stop_server


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def declare_service_queue(ch, name):
    """What a 33GOD service does at start: its queue, its dead-letter queue, the binding."""
    events = await ch.declare_exchange("bloodbank.events.v1", aio_pika.ExchangeType.TOPIC,
                                       durable=True)
    dlx = await ch.declare_exchange(f"{name}.dlx", aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await ch.declare_queue(f"{name}_dlq", durable=True)
    await dlq.bind(dlx)
    queue = await ch.declare_queue(name, durable=True,
                                   arguments={"x-dead-letter-exchange": f"{name}.dlx"})
    await queue.bind(events, "transcription.#")
    return events, queue, dlq


def test_failed_events_land_in_the_dead_letter_queue_with_their_history(bloodbank):
    async def main():
        conn = await aio_pika.connect_robust(bloodbank.url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            events, queue, dlq = await declare_service_queue(ch, "transcriber")
            for i in range(25):
                await events.publish(
                    aio_pika.Message(f'{{"n": {i}}}'.encode(), content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="transcription.voice.completed")
            handled = 0
            async with queue.iterator() as it:
                async for message in it:
                    n = int(message.body.decode().split(":")[1].rstrip("}"))
                    if n % 5 == 0:
                        await message.reject(requeue=False)  # the handler failed
                    else:
                        await message.ack()
                    handled += 1
                    if handled == 25:
                        break
            dead = []
            for _ in range(5):
                m = await dlq.get(timeout=5)
                dead.append(m)
                await m.ack()
            assert [m.body for m in dead] == [f'{{"n": {i}}}'.encode() for i in range(0, 25, 5)]
            death = dead[0].headers["x-death"][0]
            assert death["reason"] == "rejected"
            assert death["queue"] == "transcriber"
            assert death["exchange"] == "bloodbank.events.v1"
            assert death["routing-keys"] == ["transcription.voice.completed"]
            assert death["count"] == 1
            assert dead[0].headers["x-first-death-queue"] == "transcriber"
            assert dead[0].content_type == "application/json"
            assert dead[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    run(main())


def test_persistent_events_and_dead_letters_survive_a_restart():
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        server = start_server(data)

        async def before():
            conn = await aio_pika.connect(server.url)
            async with conn:
                ch = await conn.channel()
                events, queue, dlq = await declare_service_queue(ch, "archiver")
                for i in range(10):
                    await events.publish(
                        aio_pika.Message(str(i).encode(),
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key="transcription.voice.completed")
                failed = await queue.get(timeout=5)
                await failed.reject(requeue=False)
        run(before())
        stop_server(server)

        server = start_server(data)

        async def after():
            conn = await aio_pika.connect(server.url)
            async with conn:
                ch = await conn.channel()
                events, queue, dlq = await declare_service_queue(ch, "archiver")
                bodies = []
                while (m := await queue.get(fail=False)) is not None:
                    bodies.append(m.body)
                    await m.ack()
                assert bodies == [str(i).encode() for i in range(1, 10)]
                dead = await dlq.get(timeout=5)
                assert dead.body == b"0"
                assert dead.headers["x-death"][0]["reason"] == "rejected"
        run(after())
        stop_server(server)
