"""aio-pika (confirms on every channel by default) against a real Bloodbank process."""

import asyncio
import uuid

import aio_pika
import pytest
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_robust_publish_and_consume_with_confirms(bloodbank):
    async def main():
        conn = await aio_pika.connect_robust(bloodbank.url)
        async with conn:
            ch = await conn.channel()
            events = await ch.get_exchange("events")
            q = await ch.declare_queue("", exclusive=True)
            await q.bind(events, "theboard.meeting.*")
            for i in range(20):
                await events.publish(
                    aio_pika.Message(f'{{"n": {i}}}'.encode(), content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="theboard.meeting.created")
            got = []
            async with q.iterator() as it:
                async for message in it:
                    async with message.process():
                        got.append(message.body)
                    if len(got) == 20:
                        break
            assert got == [f'{{"n": {i}}}'.encode() for i in range(20)]
    run(main())


def test_prefetch_and_reject_like_33god_consumers(bloodbank):
    async def main():
        conn = await aio_pika.connect(bloodbank.url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            name = f"svc-{uuid.uuid4().hex[:6]}"
            q = await ch.declare_queue(name, durable=True)
            ex = await ch.declare_exchange("events", aio_pika.ExchangeType.TOPIC, durable=True)
            await q.bind(ex, "theboard.#")
            for i in range(30):
                await ex.publish(aio_pika.Message(str(i).encode()), routing_key="theboard.x.y")
            seen = []
            async with q.iterator() as it:
                async for message in it:
                    seen.append(message.body)
                    if int(message.body) % 2:
                        await message.reject(requeue=False)
                    else:
                        await message.ack()
                    if len(seen) == 30:
                        break
            assert seen == [str(i).encode() for i in range(30)]
            declared = await ch.declare_queue(name, passive=True)
            assert declared.declaration_result.message_count == 0
            await declared.delete()
    run(main())


def test_nack_requeue_and_redelivered_flag(bloodbank):
    async def main():
        conn = await aio_pika.connect(bloodbank.url)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue("", exclusive=True)
            await ch.default_exchange.publish(aio_pika.Message(b"again"), routing_key=q.name)
            first = await q.get(timeout=5)
            assert not first.redelivered
            await first.nack(requeue=True)
            second = await q.get(timeout=5)
            assert second.redelivered and second.body == b"again"
            await second.ack()
    run(main())


def test_mandatory_unroutable_comes_back_as_basic_return(bloodbank):
    # aio-pika publishes mandatory by default and resolves with the returned message,
    # exactly as it does against RabbitMQ.
    async def main():
        conn = await aio_pika.connect(bloodbank.url)
        async with conn:
            ch = await conn.channel()
            ex = await ch.get_exchange("events")
            returned = await ex.publish(aio_pika.Message(b"x"), routing_key="no.one.listens",
                                        mandatory=True)
            assert returned.delivery.reply_code == 312
            assert returned.body == b"x"
            confirmed = await ex.publish(aio_pika.Message(b"y"), routing_key="no.one.listens",
                                         mandatory=False)
            assert type(confirmed).__name__ == "Ack"
    run(main())


def test_channel_errors_name_the_object(bloodbank):
    async def main():
        conn = await aio_pika.connect(bloodbank.url)
        async with conn:
            ch = await conn.channel()
            with pytest.raises(ChannelNotFoundEntity) as e:
                await ch.declare_queue("does-not-exist", passive=True)
            assert "NOT_FOUND - no queue 'does-not-exist' in vhost '/'" in str(e.value)
            ch = await conn.channel()
            await ch.declare_queue("locked-q", exclusive=True)
            other = await aio_pika.connect(bloodbank.url)
            async with other:
                och = await other.channel()
                with pytest.raises(ChannelLockedResource) as e:
                    await och.declare_queue("locked-q", exclusive=False)
                assert "RESOURCE_LOCKED" in str(e.value)
    run(main())
