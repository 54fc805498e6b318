"""STOMP over TCP and Web-STOMP against a real Bloodbank process: stomp.py as a client, pika on
the AMQP side, raw sockets where the point is the exact frames, theboardroom's own
@stomp/stompjs client in Node and in headless Chromium. Comparisons with a real RabbitMQ are in
test_stomp_vs_rabbitmq.py."""

import json
import queue
import socket
import time
import uuid

import pika
import pytest
import stomp


def fresh(prefix="s"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Inbox(stomp.ConnectionListener):
    def __init__(self):
        self.frames = queue.Queue()

    def on_message(self, frame):
        self.frames.put(("MESSAGE", frame))

    def on_error(self, frame):
        self.frames.put(("ERROR", frame))

    def on_receipt(self, frame):
        self.frames.put(("RECEIPT", frame))

    def next(self, timeout=5):
        return self.frames.get(timeout=timeout)

    def none(self, wait=0.5):
        try:
            got = self.frames.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected {got}")


def address(bloodbank):
    host, port = bloodbank.stomp.rsplit(":", 1)
    return host, int(port)


@pytest.fixture
def client(bloodbank):
    conn = stomp.Connection12([address(bloodbank)], heartbeats=(0, 0))
    inbox = Inbox()
    conn.set_listener("inbox", inbox)
    conn.connect("guest", "guest", wait=True)
    yield conn, inbox
    if conn.is_connected():
        conn.disconnect()


@pytest.fixture
def amqp(bloodbank):
    c = pika.BlockingConnection(pika.ConnectionParameters(bloodbank.host, bloodbank.port))
    yield c.channel()
    if c.is_open:
        c.close()


def test_exchange_subscription_gets_matching_events_from_amqp(client, amqp):
    conn, inbox = client
    conn.subscribe("/exchange/events/theboard.#", id="board", ack="auto", headers={"receipt": "sub-1"})
    assert inbox.next()[1].headers["receipt-id"] == "sub-1"
    amqp.basic_publish("events", "theboard.meeting.created", json.dumps({"meeting_id": "m1"}).encode(),
                       pika.BasicProperties(content_type="application/json", headers={"source": "test"}))
    amqp.basic_publish("events", "other.thing", b"{}")
    amqp.basic_publish("events", "theboard.round.completed", b'{"round": 1}')
    kind, first = inbox.next()
    assert kind == "MESSAGE"
    assert json.loads(first.body) == {"meeting_id": "m1"}
    h = first.headers
    assert h["destination"] == "/exchange/events/theboard.meeting.created"
    assert h["subscription"] == "board" and h["redelivered"] == "false"
    assert h["content-type"] == "application/json" and h["source"] == "test"
    assert "ack" not in h
    kind, second = inbox.next()
    assert second.headers["destination"] == "/exchange/events/theboard.round.completed"
    inbox.none()


def test_send_to_a_queue_reaches_amqp_with_properties_after_its_receipt(client, amqp):
    conn, inbox = client
    q = fresh()
    conn.send(f"/queue/{q}", '{"a": 1}', content_type="application/json",
              headers={"persistent": "true", "priority": "4", "custom": "12", "receipt": "r1"})
    kind, receipt = inbox.next()
    assert (kind, receipt.headers["receipt-id"]) == ("RECEIPT", "r1")
    method, props, body = amqp.basic_get(q, auto_ack=True)
    assert body == b'{"a": 1}'
    assert props.content_type == "application/json" and props.delivery_mode == 2 and props.priority == 4
    assert props.headers["custom"] == "12"
    # The queue /queue/ declares is durable and shared with AMQP.
    assert amqp.queue_declare(q, passive=True).method.message_count == 0


def test_client_individual_acks_prefetch_and_nack_requeue(client, amqp):
    conn, inbox = client
    q = fresh()
    amqp.queue_declare(q, durable=True)
    for i in range(3):
        amqp.basic_publish("", q, f"m{i}".encode())
    conn.subscribe(f"/queue/{q}", id="w", ack="client-individual", headers={"prefetch-count": "1"})
    _, m0 = inbox.next()
    assert m0.body == "m0" and m0.headers["ack"]
    inbox.none()  # prefetch 1: nothing more until the ack
    conn.ack(m0.headers["ack"])
    _, m1 = inbox.next()
    assert m1.body == "m1"
    conn.nack(m1.headers["ack"])  # no requeue header: requeued, as RabbitMQ reads it
    _, again = inbox.next()
    assert again.body == "m1" and again.headers["redelivered"] == "true"
    conn.nack(again.headers["ack"], requeue="false")
    _, m2 = inbox.next()
    assert m2.body == "m2"
    # Disconnecting with m2 unacknowledged puts it back.
    conn.disconnect()
    time.sleep(0.3)
    method, props, body = amqp.basic_get(q, auto_ack=True)
    assert body == b"m2" and method.redelivered


def test_topic_between_stomp_clients_and_amq_queue(bloodbank, client, amqp):
    conn, inbox = client
    conn.subscribe("/topic/alerts.*", id="t", ack="auto", headers={"receipt": "t1"})
    inbox.next()
    other = stomp.Connection12([address(bloodbank)])
    other.connect("guest", "guest", wait=True)
    other.send("/topic/alerts.disk", "full")
    _, msg = inbox.next()
    assert (msg.body, msg.headers["destination"]) == ("full", "/topic/alerts.disk")
    q = fresh()
    amqp.queue_declare(q, arguments={"x-max-length": 5})
    other.send(f"/amq/queue/{q}", "direct", headers={"receipt": "a1"})
    other.disconnect()
    conn.subscribe(f"/amq/queue/{q}", id="a", ack="client")
    _, msg = inbox.next()
    assert (msg.body, msg.headers["destination"]) == ("direct", f"/queue/{q}")


def raw(bloodbank, data, read_for=1.0):
    """Sends raw bytes; returns what came back within `read_for` seconds and whether the
    server closed the socket."""
    s = socket.create_connection(address(bloodbank))
    s.sendall(data)
    deadline = time.monotonic() + read_for
    got = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                return got, True
            got += chunk
        return got, False
    finally:
        s.close()


def test_bad_input_gets_error_frames(bloodbank):
    got, closed = raw(bloodbank, b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:wrong\n\n\0")
    assert got.startswith(b"ERROR\n") and b"message:Bad CONNECT" in got and b"Access refused for user 'guest'" in got
    assert not closed  # the socket stays open for another CONNECT, as in RabbitMQ
    hello = b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0"
    got, _ = raw(bloodbank, hello + b"SUBSCRIBE\nid:1\ndestination:/nowhere/x\n\n\0")
    assert b"CONNECTED\n" in got and b"message:Unknown destination" in got
    got, closed = raw(bloodbank, hello + b"SUBSCRIBE\nid:1\ndestination:/amq/queue/does-not-exist\n\n\0")
    assert b"message:not_found" in got and b"NOT_FOUND - no queue 'does-not-exist'" in got and closed
    got, _ = raw(bloodbank, hello + b"SEND\ndestination:/queue/x\nmessage-id:1\n\n\0")
    assert b"'message-id' is not allowed on 'SEND'." in got
    got, closed = raw(bloodbank, hello + b"SEND\ncontent-length:nope\n\n\0")
    assert b"message:Invalid frame" in got and closed
    got, closed = raw(bloodbank, b"SEND\ndestination:/queue/x\n\nhi\0")
    assert b"You must log in using CONNECT first" in got and closed
    got, closed = raw(bloodbank, hello + b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\0")
    assert b"Duplicated subscription identifier" in got and closed  # as RabbitMQ: the end
    got, _ = raw(bloodbank, hello + b"ACK\nid:nope\n\n\0")
    assert b'"ACK" must include a valid "id" header' in got


def test_heart_beats_are_negotiated_and_sent(bloodbank):
    got, _ = raw(bloodbank, b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\nheart-beat:0,500\n\n\0", read_for=2.5)
    head, _, rest = got.partition(b"\0")
    assert b"heart-beat:1000,0" in head and b"version:1.2" in head
    assert rest.count(b"\n") >= 2  # a beat every second


def test_management_api_lists_stomp_connections(bloodbank, client):
    import requests

    conns = requests.get(bloodbank.management + "/api/connections", auth=("guest", "guest")).json()
    assert any(c["protocol"] == "STOMP" and c["user"] == "guest" for c in conns)


def test_theboardrooms_client_over_web_stomp(bloodbank, amqp):
    """@stomp/stompjs exactly as theboardroom configures it, over WebSocket: the seven
    meeting events published over AMQP and the HTTP gateway arrive in order with their JSON
    bodies; other routing keys do not."""
    import os
    import subprocess
    import urllib.request

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    node = subprocess.Popen(["node", os.path.join(root, "tests", "browser", "stomp_board.mjs"),
                             f"ws://{bloodbank.stomp_ws}/ws", "7"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert node.stdout.readline().strip() == "subscribed", node.stderr.read()
        meeting = {"event_type": "theboard.meeting.created", "timestamp": "2024-01-15T10:30:00Z",
                   "meeting_id": "550e8400-e29b-41d4-a716-446655440000", "topic": "STOMP sees it",
                   "strategy": "simple", "max_rounds": 3}
        request = urllib.request.Request(bloodbank.http + "/events/theboard.meeting.created",
                                         data=json.dumps(meeting).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as r:
            assert r.status == 200
        others = ["started", "round_completed", "comment_extracted", "converged", "completed", "failed"]
        amqp.basic_publish("events", "theboardroom.viewer.joined", b'{"not": "for the board"}')
        for i, name in enumerate(others):
            amqp.basic_publish("events", f"theboard.meeting.{name}", json.dumps({"n": i}).encode(),
                               pika.BasicProperties(content_type="application/json"))
        shown = json.loads(node.stdout.readline())
        assert node.wait(timeout=30) == 0, node.stderr.read()
    finally:
        if node.poll() is None:
            node.kill()
    assert shown["version"] == "1.2" and shown["server"].startswith("Bloodbank/")
    keys = [m["destination"].removeprefix("/exchange/events/") for m in shown["received"]]
    assert keys == ["theboard.meeting.created"] + [f"theboard.meeting.{n}" for n in others]
    envelope = shown["received"][0]["body"]  # the gateway's envelope around the payload
    assert envelope["event_type"] == "theboard.meeting.created" and "STOMP sees it" in json.dumps(envelope)
    assert [m["body"] for m in shown["received"][1:]] == [{"n": i} for i in range(6)]


def test_transactions_hold_sends_and_acks_until_commit(client, amqp):
    conn, inbox = client
    q = fresh()
    amqp.queue_declare(q, durable=True)
    conn.begin("tx1")
    conn.send(f"/queue/{q}", "one", transaction="tx1")
    conn.send(f"/queue/{q}", "two", transaction="tx1")
    assert amqp.queue_declare(q, passive=True).method.message_count == 0
    conn.commit("tx1", headers={"receipt": "c1"})
    assert inbox.next()[1].headers["receipt-id"] == "c1"
    assert amqp.queue_declare(q, passive=True).method.message_count == 2
    conn.begin("tx2")
    conn.send(f"/queue/{q}", "never", transaction="tx2")
    conn.abort("tx2", headers={"receipt": "a2"})
    assert inbox.next()[1].headers["receipt-id"] == "a2"
    assert amqp.queue_declare(q, passive=True).method.message_count == 2
    # An ACK inside a transaction settles at COMMIT.
    conn.subscribe(f"/queue/{q}", id="t", ack="client-individual", headers={"prefetch-count": "1"})
    _, first = inbox.next()
    conn.begin("tx3")
    conn.ack(first.headers["ack"], transaction="tx3")
    inbox.none()
    conn.commit("tx3")
    _, second = inbox.next()
    assert (first.body, second.body) == ("one", "two")
    conn.send(f"/queue/{q}", "x", transaction="nope", headers={"receipt": "bad"})
    kind, error = inbox.next()
    assert kind == "ERROR" and error.headers["message"] == "Bad transaction"


def test_durable_topic_subscription_survives_a_reconnect(bloodbank, amqp):
    key = fresh("dur")
    sub = {"durable": "true", "auto-delete": "false"}

    def connect():
        conn = stomp.Connection12([address(bloodbank)], heartbeats=(0, 0))
        inbox = Inbox()
        conn.set_listener("inbox", inbox)
        conn.connect("guest", "guest", wait=True)
        conn.subscribe(f"/topic/{key}.#", id="tracker", ack="client-individual",
                       headers={**sub, "receipt": "s"})
        assert inbox.next()[0] == "RECEIPT"
        return conn, inbox

    conn, inbox = connect()
    amqp.confirm_delivery()
    amqp.basic_publish("amq.topic", f"{key}.one", b"1", pika.BasicProperties(delivery_mode=2))
    _, first = inbox.next()
    assert first.body == "1"
    conn.disconnect()  # unacknowledged: it stays in the subscription's queue
    # stomp.py returns before the RECEIPT of its DISCONNECT; the broker sends it after the
    # session has left, so once it is in, "2" below cannot reach the old session.
    deadline = time.monotonic() + 5
    while conn.is_connected():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    amqp.basic_publish("amq.topic", f"{key}.two", b"2", pika.BasicProperties(delivery_mode=2))
    conn, inbox = connect()
    got = [inbox.next()[1] for _ in range(2)]
    assert [(m.body, m.headers["redelivered"]) for m in got] == [("1", "true"), ("2", "false")]
    for m in got:
        conn.ack(m.headers["ack"])
    conn.unsubscribe("tracker", headers={"durable": "true", "receipt": "u"})
    assert inbox.next()[1].headers["receipt-id"] == "u"
    amqp.basic_publish("amq.topic", f"{key}.three", b"3")
    conn.disconnect()
    conn, inbox = connect()
    inbox.none()  # UNSUBSCRIBE durable:true deleted the queue: nothing was kept
    conn.disconnect()


def test_a_deleted_queue_cancels_its_subscription_and_the_session_goes_on(client, amqp):
    conn, inbox = client
    q, other = fresh("gone"), fresh("next")
    conn.subscribe(f"/queue/{q}", id="s", ack="client-individual", headers={"receipt": "r"})
    assert inbox.next()[0] == "RECEIPT"
    amqp.basic_publish("", q, b"held")
    assert inbox.next()[1].body == "held"  # unacknowledged when the queue goes
    amqp.queue_delete(q)
    kind, error = inbox.next()
    assert kind == "ERROR" and error.headers["message"] == "Server cancelled subscription"
    # The id is free again and the session still works.
    conn.subscribe(f"/queue/{other}", id="s", headers={"receipt": "r2"})
    assert inbox.next()[1].headers["receipt-id"] == "r2"
    amqp.basic_publish("", other, b"after")
    assert inbox.next()[1].body == "after"


def test_temp_queue_request_and_reply(client, amqp):
    """A requester names `/temp-queue/answers` as reply-to; the service (over AMQP) replies to
    the queue name it sees, and the reply comes back on the temp-queue subscription."""
    conn, inbox = client
    service = fresh("svc")
    amqp.queue_declare(service, durable=True)
    conn.send(f"/queue/{service}", "what time is it", headers={"reply-to": "/temp-queue/answers",
                                                                "correlation-id": "q1", "receipt": "r"})
    assert inbox.next()[0] == "RECEIPT"
    method, props, body = amqp.basic_get(service, auto_ack=True)
    assert props.reply_to.startswith("amq.gen-") and props.correlation_id == "q1"
    amqp.basic_publish("", props.reply_to, b"noon", pika.BasicProperties(correlation_id="q1"))
    _, reply = inbox.next()
    assert reply.body == "noon" and reply.headers["subscription"] == "/temp-queue/answers"
    assert reply.headers["correlation-id"] == "q1"
    # The same temp-queue name reuses the same queue for the whole session.
    conn.send(f"/queue/{service}", "again", headers={"reply-to": "/temp-queue/answers"})
    time.sleep(0.3)
    assert amqp.basic_get(service, auto_ack=True)[1].reply_to == props.reply_to


def test_a_browser_page_receives_events_over_web_stomp(bloodbank, amqp):
    """Headless Chromium: a page using @stomp/stompjs over ws:// shows the events published
    over AMQP (screenshot in target/screenshots/web-stomp-page.png)."""
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    node = subprocess.Popen(["node", os.path.join(root, "tests", "browser", "stomp_page.mjs"),
                             f"ws://{bloodbank.stomp_ws}/ws", "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert node.stdout.readline().strip() == "subscribed", node.stderr.read()
        amqp.basic_publish("events", "theboard.meeting.started", b'{"meeting_id": "m-9"}')
        amqp.basic_publish("events", "elsewhere.thing", b"{}")
        amqp.basic_publish("events", "theboard.round.completed", b'{"round": 3}')
        node.stdin.write("published\n")
        node.stdin.flush()
        shown = json.loads(node.stdout.readline())
        node.stdin.close()
        assert node.wait(timeout=30) == 0, node.stderr.read()
    finally:
        if node.poll() is None:
            node.kill()
    assert shown == [{"key": "theboard.meeting.started", "body": '{"meeting_id":"m-9"}'},
                     {"key": "theboard.round.completed", "body": '{"round":3}'}]


def test_oversized_frames_and_header_floods_get_error_frames(bloodbank):
    hello = b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0"
    # A body announced past the 16 MiB bound: refused before any of it is held.
    got, closed = raw(bloodbank, hello + b"SEND\ndestination:/queue/x\ncontent-length:20000000\n\n")
    assert b"ERROR\n" in got and b"body is longer than" in got and closed
    # A body without content-length that never ends: refused once it passes the bound.
    s = socket.create_connection(address(bloodbank))
    s.sendall(hello + b"SEND\ndestination:/queue/x\n\n")
    chunk = b"y" * (1 << 20)
    try:
        for _ in range(32):
            s.sendall(chunk)
    except OSError:
        pass  # the server closed the socket while we wrote
    s.settimeout(5)
    got = b""
    try:
        while part := s.recv(65536):
            got += part
    except OSError:
        pass
    s.close()
    assert b"ERROR\n" in got and b"body is longer than" in got, got[:400]
    # Thousands of headers: refused by count, not read forever.
    flood = b"".join(b"h%d:v\n" % i for i in range(5000))
    got, closed = raw(bloodbank, hello + b"SEND\ndestination:/queue/x\n" + flood + b"\n\0")
    assert b"ERROR\n" in got and closed


def test_a_subscriber_that_never_reads_is_not_sent_the_whole_queue(bloodbank, amqp):
    q = fresh("lazy")
    amqp.queue_declare(q)
    body = b"x" * (100 * 1024)
    for _ in range(1000):
        amqp.basic_publish("", q, body)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(address(bloodbank))
    s.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0"
              + b"SUBSCRIBE\nid:1\ndestination:/amq/queue/" + q.encode() + b"\nack:auto\n\n\0")
    time.sleep(1)
    left = amqp.queue_declare(q, passive=True).method.message_count
    assert left > 800, f"only {left} of 1000 left: the broker queued the rest for the socket"
    # Once it reads, everything arrives.
    tail, messages = b"", 0
    s.settimeout(20)
    while messages < 1000:
        part = s.recv(1 << 20)
        assert part, f"closed after {messages} messages"
        seen = tail + part  # a command split across reads; 7 bytes cannot hold a whole one
        messages += seen.count(b"MESSAGE\n")
        tail = seen[-7:]
    s.close()
    assert amqp.queue_declare(q, passive=True).method.message_count == 0


def test_web_stomp_refuses_a_message_past_its_bound_and_serves_the_next_client(bloodbank):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://{bloodbank.stomp_ws}/ws"
    with connect(url, subprotocols=["v12.stomp"], max_size=None) as ws:
        ws.send("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0")
        assert ws.recv(timeout=5).startswith("CONNECTED")
        try:
            ws.send(b"SEND\ndestination:/queue/x\n\n" + b"z" * (17 * 1024 * 1024) + b"\0")
            ws.recv(timeout=10)
            raise AssertionError("a 17 MiB message was taken")
        except (ConnectionClosed, ConnectionResetError) as closed:
            # Close 1009, unless the rest of the message still unread on our side made the
            # kernel answer the client with a reset first.
            rcvd = getattr(closed, "rcvd", None)
            assert rcvd is None or rcvd.code == 1009, closed
    with connect(url, subprotocols=["v12.stomp"]) as ws:
        ws.send("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0")
        assert ws.recv(timeout=5).startswith("CONNECTED")
