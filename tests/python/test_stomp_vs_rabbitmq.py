"""Differential: the same STOMP conversations, in raw frames, with Bloodbank and with a real
RabbitMQ 3.10 running its STOMP plugin (the `rabbitmq` fixture in conftest.py). Each scenario
returns a transcript with what legitimately differs (generated names, session ids, server
name) masked; both brokers must give the same transcript."""

import decimal
import re
import socket
import time
import uuid
from urllib.parse import quote

import pika
import pytest
import requests


class Raw:
    """A STOMP client that shows frames exactly as they come."""

    def __init__(self, port, login=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        if login:
            self.send("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"})
            assert self.frame()[0] == "CONNECTED"

    def send(self, command, headers, body=b""):
        head = "".join(f"{k}:{v}\n" for k, v in headers.items())
        try:
            self.sock.sendall(f"{command}\n{head}\n".encode() + body + b"\0")
        except OSError:
            pass

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def frame(self, wait=5.0):
        """The next frame as (command, [(name, value)], body); None if none came in time,
        "closed" if the server closed the connection."""
        deadline = time.monotonic() + wait
        try:
            while True:
                self.buf = self.buf.lstrip(b"\r\n")
                end = self.buf.find(b"\n\n")
                if end >= 0:
                    lines = self.buf[:end].decode().split("\n")
                    headers = [tuple(line.split(":", 1)) for line in lines[1:]]
                    length = dict(headers).get("content-length")
                    start = end + 2
                    stop = start + int(length) if length is not None else self.buf.find(b"\0", start)
                    if stop >= 0 and len(self.buf) > stop:
                        body = self.buf[start:stop]
                        self.buf = self.buf[stop + 1:]
                        return lines[0], headers, body
                self._fill(deadline)
        except socket.timeout:
            return None
        except (EOFError, ConnectionResetError):
            return "closed"

    def frames(self, wait=0.7):
        out = []
        while (f := self.frame(wait)) not in (None, "closed"):
            out.append(f)
        return out + (["closed"] if f == "closed" else [])

    def close(self):
        self.sock.close()


MASKS = [
    (re.compile(r"amq\.gen-[\w-]+"), "amq.gen-*"),
    (re.compile(r"stomp-subscription-[\w-]+"), "stomp-subscription-*"),
]
VARYING = {"server", "session", "message-id", "ack", "content-length"}


def masked(value):
    for pattern, mask in MASKS:
        value = pattern.sub(mask, value)
    return value


FIXED = ("subscription", "destination", "redelivered")


def shape(frame, body=True):
    """A frame as compared: command, headers (varying ones left out; a MESSAGE's fixed
    headers in order, the ones from the AMQP header table and properties sorted, since
    RabbitMQ keeps a table's wire order and Bloodbank its key order), body."""
    if frame in (None, "closed"):
        return frame
    command, headers, data = frame
    kept = [(k, masked(v)) for k, v in headers if k not in VARYING]
    if command == "ERROR":
        kept = [(k, v) for k, v in kept if k == "message"]
    if command == "MESSAGE":
        kept = [h for h in kept if h[0] in FIXED] + sorted(h for h in kept if h[0] not in FIXED)
    return (command, kept, data if body and command != "ERROR" else b"")


@pytest.fixture(scope="module")
def brokers(rabbitmq, bloodbank):
    host, stomp_port = bloodbank.stomp.rsplit(":", 1)
    return {
        "rabbitmq": {"stomp": rabbitmq["stomp"], "amqp": rabbitmq["amqp"], "base": rabbitmq["base"]},
        "bloodbank": {"stomp": int(stomp_port), "amqp": bloodbank.port, "base": bloodbank.management},
    }


def both(brokers, scenario):
    prefix = f"d{uuid.uuid4().hex[:6]}"
    results = {name: scenario(b, prefix) for name, b in brokers.items()}
    assert results["bloodbank"] == results["rabbitmq"], "\n".join(
        f"{name}: {result!r}" for name, result in results.items())
    return results["bloodbank"]


def queue_info(b, name):
    r = requests.get(f"{b['base']}/api/queues/%2F/{quote(name, safe='')}", auth=("guest", "guest"), timeout=5)
    if r.status_code == 404:
        return None
    q = r.json()
    return {k: q[k] for k in ("durable", "auto_delete", "exclusive", "arguments")}


def amqp_channel(b):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b["amqp"])).channel()


def test_headers_map_to_properties_and_back(brokers):
    def scenario(b, p):
        sub = Raw(b["stomp"])
        sub.send("SUBSCRIBE", {"destination": f"/queue/{p}-q", "id": "s", "receipt": "r0"})
        assert shape(sub.frame()) == ("RECEIPT", [("receipt-id", "r0")], b"")
        pub = Raw(b["stomp"])
        pub.send("SEND", {"destination": f"/queue/{p}-q", "content-type": "application/json",
                          "content-encoding": "utf-8", "persistent": "true", "priority": "4",
                          "correlation-id": "c-1", "reply-to": "/queue/answers", "expiration": "60000",
                          "amqp-message-id": "m-1", "type": "theboard.meeting.created", "app-id": "tests",
                          "timestamp": "1700000000", "custom": "12", "receipt": "r1"}, b'{"round": 1}')
        receipt = shape(pub.frame())
        message = shape(sub.frame())
        # The same message seen from AMQP.
        ch = amqp_channel(b)
        ch.basic_publish("", f"{p}-q", b"from amqp", pika.BasicProperties(
            reply_to="plain-queue", message_id="m-2", delivery_mode=1,
            headers={"n": 42, "big": 4200000000, "flag": True, "d": decimal.Decimal("1.5"), "s": "text"}))
        from_amqp = shape(sub.frame())
        sub.close(), pub.close(), ch.connection.close()
        return receipt, message, from_amqp

    receipt, message, from_amqp = both(brokers, scenario)
    assert receipt == ("RECEIPT", [("receipt-id", "r1")], b"")
    assert ("reply-to", "/queue/answers") in message[1] and ("custom", "12") in message[1]
    assert ("reply-to", "/reply-queue/plain-queue") in from_amqp[1]


def test_refusals_keep_the_session_open(brokers):
    def scenario(b, p):
        c = Raw(b["stomp"])
        out = []
        for command, headers in [
            ("SEND", {"destination": "/nowhere/x"}),
            ("SUBSCRIBE", {"destination": "/temp-queue/t", "id": "1"}),
            ("SEND", {"destination": "/temp-queue/t"}),
            ("SEND", {"destination": f"/queue/{p}", "message-id": "x"}),
            ("SUBSCRIBE", {"destination": f"/topic/{p}", "durable": "true", "auto-delete": "false"}),
            ("SUBSCRIBE", {"destination": f"/queue/{p}-bad", "id": "2", "x-max-length": "ten"}),
            ("SEND", {"destination": "/reply-queue/"}),
            ("ACK", {"id": "nope"}),
            ("NACK", {"id": "nope"}),
            ("UNSUBSCRIBE", {"id": "nope"}),
            ("BEGIN", {}),
            ("COMMIT", {"transaction": "nope"}),
            ("FOO", {}),
            ("SEND", {"destination": f"/queue/{p}", "receipt": "alive"}),
        ]:
            c.send(command, headers, b"x" if command == "SEND" else b"")
            error = c.frame()
            text = error[2].decode().replace(p, "P").strip()
            if dict(error[1]).get("message") == "Processing error":
                text = "(RabbitMQ says only 'Processing error'; Bloodbank names the header)"
            out.append((shape(error), text))
        c.close()
        # Subscribing twice with one id ends the session.
        c = Raw(b["stomp"])
        c.send("SUBSCRIBE", {"destination": f"/topic/{p}", "id": "1"})
        c.send("SUBSCRIBE", {"destination": f"/topic/{p}.x", "id": "1"})
        out.append((shape(c.frame()), c.frame(3)))
        c.close()
        return out

    out = both(brokers, scenario)
    assert [f[0][1][0][1] for f in out[:-2]] == [
        "Unknown destination", "Invalid destination", "Invalid destination", "Invalid header",
        "Missing Header", "Processing error", "Invalid destination", "Invalid header",
        "Invalid header", "No subscription found", "Missing transaction", "Bad transaction",
        "Bad command"]
    assert out[-2][0] == ("RECEIPT", [("receipt-id", "alive")], b"")
    assert out[-1][1] == "closed"


def test_broker_side_failures_end_the_session(brokers):
    def scenario(b, p):
        ch = amqp_channel(b)
        ch.queue_declare(f"{p}-transient", durable=False)
        ch.queue_declare(f"{p}-limited", durable=True, arguments={"x-max-length": 5})
        out = []
        for command, headers in [
            ("SUBSCRIBE", {"destination": f"/amq/queue/{p}-missing", "id": "1"}),
            ("SUBSCRIBE", {"destination": f"/reply-queue/{p}-missing", "id": "1"}),
            ("SEND", {"destination": f"/exchange/{p}-missing/k"}),
            ("SEND", {"destination": f"/queue/{p}-transient"}),
            ("SEND", {"destination": f"/queue/{p}-limited"}),
            ("SEND", {"destination": f"/queue/{p}-limited", "x-max-length": "7"}),
            ("SEND", {"destination": f"/queue/{p}-typed", "x-queue-type": "bogus"}),
        ]:
            c = Raw(b["stomp"])
            c.send(command, headers, b"x" if command == "SEND" else b"")
            error = c.frame()
            out.append((command, shape(error), error[2].decode().replace(p, "P").strip(), c.frame(3)))
            c.close()
        ch.connection.close()
        return out

    out = both(brokers, scenario)
    assert all(closed == "closed" for *_, closed in out)


def test_temp_queue_replies(brokers):
    def scenario(b, p):
        requester, service = Raw(b["stomp"]), Raw(b["stomp"])
        service.send("SUBSCRIBE", {"destination": f"/queue/{p}-svc", "id": "svc", "receipt": "r"})
        service.frame()
        requester.send("SEND", {"destination": f"/queue/{p}-svc", "reply-to": "/temp-queue/answers",
                                "receipt": "sent"}, b"ping")
        out = [shape(requester.frame())]
        request = service.frame()
        out.append(shape(request))
        reply_to = dict(request[1])["reply-to"]
        temp = reply_to.removeprefix("/reply-queue/")
        out.append(queue_info(b, temp))
        service.send("SEND", {"destination": reply_to, "correlation-id": "1"}, b"pong")
        out.append(shape(requester.frame()))
        # Again through AMQP: the reply queue is a plain queue name there.
        requester.send("SEND", {"destination": f"/queue/{p}-svc", "reply-to": "/temp-queue/answers"}, b"ping2")
        again = dict(service.frame()[1])["reply-to"]
        out.append(again == reply_to)
        ch = amqp_channel(b)
        ch.basic_publish("", temp, b"from amqp")
        out.append(shape(requester.frame()))
        requester.close()
        time.sleep(0.5)
        out.append(queue_info(b, temp))
        service.close(), ch.connection.close()
        return out

    out = both(brokers, scenario)
    assert out[2] == {"durable": False, "auto_delete": True, "exclusive": True, "arguments": {}}
    assert ("subscription", "/temp-queue/answers") in out[3][1]
    assert out[-1] is None


def test_durable_topic_subscription_outlives_its_connection(brokers):
    def scenario(b, p):
        sub = {"destination": f"/topic/{p}.#", "id": "mine", "durable": "true", "auto-delete": "false"}
        c = Raw(b["stomp"])
        c.send("SUBSCRIBE", {**sub, "receipt": "s"})
        out = [shape(c.frame())]
        c.send("DISCONNECT", {})
        c.close()
        ch = amqp_channel(b)
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", f"{p}.meeting", b"while away", pika.BasicProperties(delivery_mode=2))
        c = Raw(b["stomp"])
        c.send("SUBSCRIBE", sub)
        out.append(shape(c.frame()))
        queues = requests.get(f"{b['base']}/api/queues", auth=("guest", "guest"), timeout=5).json()
        mine = [q for q in queues if q["name"].startswith("stomp-subscription-") and q["durable"]
                and not q["auto_delete"]]
        out.append(len(mine) >= 1)
        c.send("UNSUBSCRIBE", {"id": "mine", "durable": "true", "receipt": "u"})
        out.append(shape(c.frame()))
        ch.basic_publish("amq.topic", f"{p}.meeting", b"after unsubscribe")
        c.send("SUBSCRIBE", {**sub, "receipt": "s2"})
        out.append(shape(c.frame()))
        out.append(c.frame(1))
        c.close(), ch.connection.close()
        return out

    out = both(brokers, scenario)
    assert out[1][2] == b"while away"
    assert out[-1] is None, "UNSUBSCRIBE durable:true deleted the queue and what came after"


def test_x_headers_declare_queue_arguments(brokers):
    def scenario(b, p):
        c = Raw(b["stomp"])
        c.send("SUBSCRIBE", {"destination": f"/queue/{p}-args", "id": "1", "x-message-ttl": "5000",
                             "x-max-length": "10", "x-dead-letter-exchange": "dlx",
                             "x-dead-letter-routing-key": "dead", "x-queue-type": "classic",
                             "x-unknown": "dropped", "receipt": "r"})
        out = [shape(c.frame())]
        c.send("SEND", {"destination": f"/queue/{p}-sent", "x-max-priority": "5", "x-expires": "600000",
                        "receipt": "r2"}, b"x")
        out.append(shape(c.frame()))
        c.send("SUBSCRIBE", {"destination": f"/topic/{p}", "id": "2", "x-queue-name": f"{p}-named",
                             "x-message-ttl": "1000", "receipt": "r3"})
        out.append(shape(c.frame()))
        out += [queue_info(b, f"{p}-args"), queue_info(b, f"{p}-sent"), queue_info(b, f"{p}-named")]
        c.close()
        return out

    out = both(brokers, scenario)
    assert out[3]["arguments"]["x-message-ttl"] == 5000 and out[3]["durable"]
    assert out[5] == {"durable": False, "auto_delete": True, "exclusive": False,
                      "arguments": {"x-message-ttl": 1000}}


def web_stomp(b, subprotocols=("v10.stomp", "v11.stomp", "v12.stomp")):
    from websockets.sync.client import connect
    return connect(f"ws://127.0.0.1:{b['stomp_ws']}/ws", subprotocols=list(subprotocols) or None,
                   open_timeout=5)


def ws_frame(ws, wait=3):
    """The next STOMP frame over Web-STOMP as (command, headers, raw message), skipping
    heart-beats; "closed (code, reason)" when the server closed."""
    from websockets.exceptions import ConnectionClosed
    try:
        while True:
            message = ws.recv(timeout=wait)
            if message != "\n":
                break
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        return ("closed", closed.rcvd.code if closed.rcvd else None, closed.rcvd.reason if closed.rcvd else None)
    head = message.split("\n\n", 1)[0].split("\n")
    headers = [tuple(h.split(":", 1)) for h in head[1:]]
    return head[0], [(k, v) for k, v in headers if k not in VARYING], type(message).__name__, message[-2:]


def test_web_stomp_handshake_heart_beats_and_framing(brokers, rabbitmq, bloodbank):
    brokers["rabbitmq"]["stomp_ws"] = rabbitmq["stomp_ws"]
    brokers["bloodbank"]["stomp_ws"] = int(bloodbank.stomp_ws.rsplit(":", 1)[1])

    def scenario(b, p):
        out = []
        for offer in [("v10.stomp", "v11.stomp", "v12.stomp"), ("v12.stomp", "v11.stomp"), ()]:
            with web_stomp(b, offer) as ws:
                out.append(ws.subprotocol)
        for beats in ["0,500", "10000,10000", "1000,0", "0,0"]:
            with web_stomp(b) as ws:
                ws.send(f"CONNECT\naccept-version:1.1,1.2\nlogin:guest\npasscode:guest\nheart-beat:{beats}\n\n\0")
                out.append(ws_frame(ws))
        with web_stomp(b) as ws:
            ws.send("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:wrong\n\n\0")
            out.append(ws_frame(ws)[0])
            ws.send("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0")
            out.append(ws_frame(ws)[0])  # the socket stayed open for a second try
            ws.send(f"SUBSCRIBE\nid:s\ndestination:/queue/{p}\nreceipt:r\n\n\0")
            out.append(ws_frame(ws))
            ws.send(f"SEND\ndestination:/queue/{p}\ncontent-type:application/json\n\n{{\"n\": 1}}\0")
            out.append(ws_frame(ws))
        return out

    out = both(brokers, scenario)
    assert out[:3] == ["v12.stomp", "v12.stomp", None]
    assert ("heart-beat", "1000,0") in out[3][1]
    assert out[-1][0] == "MESSAGE" and out[-1][3] == "\0\n"


def test_web_stomp_broker_side_failure_closes_the_socket(brokers, rabbitmq, bloodbank):
    """Both close with 1000 "STOMP died"; RabbitMQ without a word, Bloodbank after an ERROR
    frame saying why (a documented difference)."""
    results = {}
    for name, port in (("rabbitmq", rabbitmq["stomp_ws"]), ("bloodbank", int(bloodbank.stomp_ws.rsplit(":", 1)[1]))):
        with web_stomp({"stomp_ws": port}) as ws:
            ws.send("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0")
            ws_frame(ws)
            ws.send("SUBSCRIBE\nid:s\ndestination:/amq/queue/no-such-queue\n\n\0")
            frames = []
            while (f := ws_frame(ws)) is not None:
                frames.append(f)
                if f[0] == "closed":
                    break
            results[name] = frames
    assert results["rabbitmq"] == [("closed", 1000, "STOMP died")]
    error, closed = results["bloodbank"]
    assert error[0] == "ERROR" and ("message", "not_found") in error[1]
    assert closed == ("closed", 1000, "STOMP died")
