"""pika (BlockingConnection) against a real Bloodbank process: the calls 33GOD services make."""

import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, UnroutableError


@pytest.fixture
def conn(bloodbank):
    c = pika.BlockingConnection(pika.ConnectionParameters(bloodbank.host, bloodbank.port))
    yield c
    if c.is_open:
        c.close()


def fresh(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_publish_to_events_and_consume_meeting_events(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "events", "theboard.meeting.*")
    ch.basic_publish("events", "theboard.meeting.created", b'{"meeting_id": "m1"}',
                     pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                          headers={"source": "test"}))
    ch.basic_publish("events", "theboard.round.completed", b"{}")
    method, props, body = next(ch.consume(q, inactivity_timeout=5))
    assert method.routing_key == "theboard.meeting.created"
    assert method.exchange == "events"
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.headers == {"source": "test"}
    assert body == b'{"meeting_id": "m1"}'
    ch.basic_ack(method.delivery_tag)
    ch.cancel()
    assert ch.queue_declare(q, passive=True).method.message_count == 0


@pytest.mark.parametrize("pattern,key,routed", [
    ("theboard.#", "theboard.meeting.created", True),
    ("theboard.#", "theboard", True),
    ("*.meeting.*", "theboard.meeting.created", True),
    ("*.meeting.*", "theboard.meeting", False),
    ("#.failed", "theboard.meeting.failed", True),
    ("theboard.*", "theboard.meeting.created", False),
])
def test_topic_wildcards(conn, pattern, key, routed):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "events", pattern)
    ch.basic_publish("events", key, b"x")
    method, _, _ = ch.basic_get(q, auto_ack=True)
    assert (method is not None) == routed


def test_manual_ack_with_prefetch(conn):
    ch = conn.channel()
    q = ch.queue_declare(fresh(), auto_delete=True).method.queue
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=2)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)))
    conn.process_data_events(time_limit=0.5)
    assert [b for _, b in got] == [b"0", b"1"]
    ch.basic_ack(got[1][0], multiple=True)
    conn.process_data_events(time_limit=0.5)
    assert [b for _, b in got] == [b"0", b"1", b"2", b"3"]


def test_nack_requeue_redelivers_in_place(conn):
    ch = conn.channel()
    q = ch.queue_declare(fresh(), auto_delete=True).method.queue
    ch.basic_publish("", q, b"first")
    ch.basic_publish("", q, b"second")
    m1, _, b1 = ch.basic_get(q)
    assert (b1, m1.redelivered) == (b"first", False)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    m, _, b = ch.basic_get(q)
    assert (b, m.redelivered) == (b"first", True)
    ch.basic_reject(m.delivery_tag, requeue=False)
    m, _, b = ch.basic_get(q, auto_ack=True)
    assert b == b"second"
    assert ch.basic_get(q)[0] is None


def test_confirms_and_mandatory_returns(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "events", "theboard.#")
    for i in range(100):
        ch.basic_publish("events", "theboard.meeting.started", str(i).encode())
    assert ch.queue_declare(q, passive=True).method.message_count == 100
    with pytest.raises(UnroutableError):
        ch.basic_publish("events", "nobody.home", b"x", mandatory=True)
    ch.basic_publish("events", "nobody.home", b"x")  # not mandatory: confirmed, dropped


def test_exclusive_queue_is_locked_to_its_connection(bloodbank, conn):
    ch = conn.channel()
    name = fresh("excl")
    ch.queue_declare(name, exclusive=True)
    other = pika.BlockingConnection(pika.ConnectionParameters(bloodbank.host, bloodbank.port))
    with pytest.raises(ChannelClosedByBroker) as e:
        other.channel().basic_consume(name, lambda *a: None)
    assert e.value.reply_code == 405
    conn.close()
    with pytest.raises(ChannelClosedByBroker) as e:
        other.channel().queue_declare(name, passive=True)
    assert e.value.reply_code == 404
    other.close()


@pytest.mark.parametrize("action,code,text", [
    (lambda ch: ch.queue_declare("no-such-queue", passive=True), 404,
     "NOT_FOUND - no queue 'no-such-queue' in vhost '/'"),
    (lambda ch: ch.exchange_declare("events", "fanout", durable=True), 406,
     "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'events' in vhost '/': "
     "received 'fanout' but current is 'topic'"),
    (lambda ch: ch.exchange_declare("amq.mine", "topic"), 403,
     "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'"),
    (lambda ch: ch.basic_get("no-such-queue"), 404, None),
])
def test_channel_errors(conn, action, code, text):
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        action(ch)
    assert e.value.reply_code == code
    if text:
        assert e.value.reply_text == text
    assert conn.is_open
    conn.channel().queue_declare("", exclusive=True)


def test_connection_errors(conn):
    ch = conn.channel()
    with pytest.raises(ConnectionClosedByBroker) as e:
        ch.basic_qos(prefetch_size=10)
        conn.process_data_events(time_limit=1)
    assert e.value.reply_code == 540


def test_bad_password_is_refused(bloodbank):
    params = pika.ConnectionParameters(bloodbank.host, bloodbank.port,
                                       credentials=pika.PlainCredentials("guest", "nope"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)
