"""Differential: the same management API calls against Bloodbank and a real RabbitMQ 3.10 with
its management plugin (Debian's rabbitmq-server, started here on free ports). Both must answer
with the same status codes, the same error fields, and the fields clients read."""

import time
import uuid

import pika
import pytest
import requests


@pytest.fixture(scope="module")
def brokers(rabbitmq, bloodbank):
    return {
        "rabbitmq": {"base": rabbitmq["base"], "amqp": rabbitmq["amqp"]},
        "bloodbank": {"base": bloodbank.management, "amqp": bloodbank.port},
    }


def both(brokers, scenario):
    """Runs `scenario(base, amqp_port, prefix)` on each broker; returns both results."""
    prefix = f"d{uuid.uuid4().hex[:6]}"
    return {name: scenario(b["base"], b["amqp"], prefix) for name, b in brokers.items()}


def call(base, method, path, body=None, auth=("guest", "guest"), raw=None, headers=None):
    r = requests.request(method, base + path, json=body, data=raw, auth=auth, headers=headers, timeout=30)
    try:
        payload = r.json()
    except ValueError:
        payload = None
    return r.status_code, payload


def statuses(results):
    return {name: [s for s, _ in steps] for name, steps in results.items()}


def assert_same_statuses(results):
    s = statuses(results)
    assert s["bloodbank"] == s["rabbitmq"], s


def test_queue_lifecycle_answers_the_same(brokers):
    def scenario(base, _, p):
        return [
            call(base, "PUT", f"/api/queues/%2F/{p}q", {"durable": True}),
            call(base, "PUT", f"/api/queues/%2F/{p}q", {"durable": True}),
            call(base, "PUT", f"/api/queues/%2F/{p}q", {"durable": False}),
            call(base, "GET", f"/api/queues/%2F/{p}q"),
            call(base, "GET", f"/api/queues/%2F/{p}missing"),
            call(base, "DELETE", f"/api/queues/%2F/{p}q/contents"),
            call(base, "DELETE", f"/api/queues/%2F/{p}q"),
            call(base, "DELETE", f"/api/queues/%2F/{p}q"),
            call(base, "GET", f"/api/queues/{p}novhost"),
            call(base, "PUT", f"/api/queues/%2F/{p}bad", raw=b'{"durable": tru', headers={"content-type": "application/json"}),
        ]

    results = both(brokers, scenario)
    assert_same_statuses(results)
    for name, steps in results.items():
        inequivalent = steps[2][1]
        assert inequivalent["error"] == "bad_request", (name, inequivalent)
        assert "inequivalent arg 'durable'" in inequivalent["reason"], (name, inequivalent)
        assert steps[4][1] == {"error": "Object Not Found", "reason": "Not Found"}, name
    # The fields clients read. (RabbitMQ adds the counters only after its first statistics
    # interval; Bloodbank has them at once.)
    rabbit_q, bb_q = results["rabbitmq"][3][1], results["bloodbank"][3][1]
    for field in ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type", "node"):
        assert field in rabbit_q and field in bb_q, field
        if field not in ("name", "node"):
            assert bb_q[field] == rabbit_q[field], field
    wanted = {"consumers", "messages", "messages_ready", "messages_unacknowledged", "policy",
              "effective_policy_definition", "idle_since", "message_stats"}
    assert wanted <= set(bb_q), wanted - set(bb_q)


def test_publish_get_and_bindings_answer_the_same(brokers):
    def scenario(base, _, p):
        steps = [
            call(base, "PUT", f"/api/queues/%2F/{p}q", {"durable": "false", "auto_delete": "false"}),
            call(base, "PUT", f"/api/exchanges/%2F/{p}x", {"type": "topic", "durable": True}),
            call(base, "POST", f"/api/bindings/%2F/e/{p}x/q/{p}q", {"routing_key": "a.#", "arguments": {}}),
            call(base, "GET", f"/api/bindings/%2F/e/{p}x/q/{p}q"),
            call(base, "POST", f"/api/exchanges/%2F/{p}x/publish",
                 {"routing_key": "a.b", "payload": "hi", "payload_encoding": "string",
                  "properties": {"delivery_mode": 2, "headers": {"k": "v"}}}),
            call(base, "POST", f"/api/exchanges/%2F/{p}x/publish",
                 {"routing_key": "zzz", "payload": "hi", "payload_encoding": "string", "properties": {}}),
            call(base, "POST", f"/api/exchanges/%2F/{p}nothere/publish",
                 {"routing_key": "a", "payload": "x", "payload_encoding": "string", "properties": {}}),
            call(base, "POST", f"/api/queues/%2F/{p}q/get", {"count": "2", "ackmode": "ack_requeue_false", "encoding": "auto"}),
            call(base, "DELETE", f"/api/bindings/%2F/e/{p}x/q/{p}q/a.%23"),
            call(base, "DELETE", f"/api/bindings/%2F/e/{p}x/q/{p}q/a.%23"),
            call(base, "PUT", f"/api/exchanges/%2F/{p}y", {"type": "nonsense"}),
            call(base, "DELETE", f"/api/exchanges/%2F/{p}x"),
            call(base, "DELETE", f"/api/queues/%2F/{p}q"),
        ]
        return steps

    results = both(brokers, scenario)
    assert_same_statuses(results)
    r, b = results["rabbitmq"], results["bloodbank"]
    assert b[4][1] == r[4][1] == {"routed": True}
    assert b[5][1] == r[5][1] == {"routed": False}
    binding_r, binding_b = r[3][1][0], b[3][1][0]
    for field in ("source", "destination", "destination_type", "routing_key", "arguments", "properties_key"):
        assert binding_b[field] == binding_r[field], field
    got_r, got_b = r[7][1], b[7][1]
    assert len(got_r) == len(got_b) == 1
    for field in ("payload", "payload_encoding", "payload_bytes", "redelivered", "exchange", "routing_key", "message_count"):
        assert got_b[0][field] == got_r[0][field], field
    assert got_b[0]["properties"] == got_r[0]["properties"]


def test_users_vhosts_permissions_and_policies_answer_the_same(brokers):
    def scenario(base, amqp_port, p):
        steps = [
            call(base, "PUT", f"/api/vhosts/{p}v"),
            call(base, "PUT", f"/api/vhosts/{p}v"),
            # A new vhost grants nobody anything, its creator included.
            call(base, "GET", f"/api/permissions/{p}v/guest"),
            call(base, "PUT", f"/api/permissions/{p}v/guest", {"configure": ".*", "write": ".*", "read": ".*"}),
            call(base, "PUT", f"/api/users/{p}u", {"password": "pw", "tags": "management"}),
            call(base, "PUT", f"/api/users/{p}u", {"password": "pw2", "tags": "management"}),
            call(base, "PUT", f"/api/permissions/{p}v/{p}u", {"configure": "^x", "write": ".*", "read": ".*"}),
            call(base, "PUT", f"/api/permissions/{p}v/{p}u", {"configure": "^y", "write": ".*", "read": ".*"}),
            call(base, "GET", f"/api/permissions/{p}v/{p}u"),
            call(base, "GET", "/api/whoami", auth=(f"{p}u", "pw2")),
            call(base, "GET", "/api/users", auth=(f"{p}u", "pw2")),
            call(base, "GET", "/api/overview", auth=(f"{p}u", "wrong")),
            call(base, "GET", "/api/overview", auth=None),
            call(base, "PUT", f"/api/policies/{p}v/pol", {"pattern": "^lim", "apply-to": "queues", "priority": 2,
                                                         "definition": {"max-length": 2}}),
            call(base, "PUT", f"/api/policies/{p}v/pol", {"pattern": "^lim", "apply-to": "queues", "priority": 2,
                                                         "definition": {"max-length": 2}}),
            call(base, "PUT", f"/api/operator-policies/{p}v/op", {"pattern": "^lim", "apply-to": "queues",
                                                                 "definition": {"max-length": 1}}),
            call(base, "PUT", f"/api/queues/{p}v/lim-q", {"durable": True, "arguments": {"x-max-length": 5}}),
        ]
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port, f"{p}v"))
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(4):
            ch.basic_publish("", "lim-q", str(i).encode())
        conn.close()
        # RabbitMQ shows a queue's counters and policies after its next statistics interval.
        deadline = time.monotonic() + 15
        while "messages" not in call(base, "GET", f"/api/queues/{p}v/lim-q")[1] and time.monotonic() < deadline:
            time.sleep(0.5)
        steps += [
            call(base, "GET", f"/api/queues/{p}v/lim-q"),
            call(base, "GET", f"/api/policies/{p}v/pol"),
            call(base, "DELETE", f"/api/operator-policies/{p}v/op"),
            call(base, "DELETE", f"/api/policies/{p}v/pol"),
            call(base, "DELETE", f"/api/policies/{p}v/pol"),
            call(base, "DELETE", f"/api/permissions/{p}v/{p}u"),
            call(base, "DELETE", f"/api/users/{p}u"),
            call(base, "DELETE", f"/api/users/{p}u"),
            call(base, "DELETE", f"/api/vhosts/{p}v"),
            call(base, "GET", f"/api/vhosts/{p}v"),
        ]
        return steps

    results = both(brokers, scenario)
    assert_same_statuses(results)
    r, b = results["rabbitmq"], results["bloodbank"]
    assert b[8][1] == r[8][1]
    assert b[9][1]["name"] == r[9][1]["name"] and b[9][1]["tags"] == r[9][1]["tags"]
    for i in (10, 11):
        assert b[i][1] == r[i][1], (i, b[i][1], r[i][1])
    queue_r, queue_b = r[17][1], b[17][1]
    for field in ("messages", "policy", "operator_policy", "effective_policy_definition"):
        assert queue_b[field] == queue_r[field], (field, queue_b[field], queue_r[field])
    assert b[18][1] == r[18][1]


def test_lists_paginate_the_same(brokers):
    def scenario(base, _, p):
        for i in range(3):
            call(base, "PUT", f"/api/queues/%2F/{p}-{i}", {"durable": False})
        steps = [
            call(base, "GET", f"/api/queues?page=1&page_size=2&name={p}&pagination=true"),
            call(base, "GET", f"/api/queues?page=2&page_size=2&name={p}"),
            call(base, "GET", f"/api/queues?columns=name,durable&name={p}"),
            call(base, "GET", "/api/aliveness-test/%2F"),
            call(base, "GET", "/api/health/checks/alarms"),
        ]
        for i in range(3):
            call(base, "DELETE", f"/api/queues/%2F/{p}-{i}")
        return steps

    results = both(brokers, scenario)
    assert_same_statuses(results)
    r, b = results["rabbitmq"], results["bloodbank"]
    for key in ("page", "page_count", "page_size", "filtered_count", "item_count"):
        assert b[0][1][key] == r[0][1][key], key
    assert [i["name"] for i in b[1][1]["items"]] == [i["name"] for i in r[1][1]["items"]]
    assert sorted(b[2][1], key=lambda x: x["name"]) == sorted(r[2][1], key=lambda x: x["name"])
    assert b[3][1] == r[3][1] == {"status": "ok"}
    assert b[4][1] == r[4][1]


def test_permission_changes_reach_open_connections_the_same(brokers):
    def scenario(base, amqp_port, p):
        user = f"{p}u"
        call(base, "PUT", f"/api/users/{user}", {"password": "pw", "tags": ""})
        call(base, "PUT", f"/api/permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", amqp_port, "/", pika.PlainCredentials(user, "pw")))
        seen = []

        def declare(channel, name):
            try:
                channel.queue_declare(name, auto_delete=True)
                seen.append("ok")
            except pika.exceptions.ChannelClosedByBroker as e:
                seen.append((e.reply_code, e.reply_text))

        declare(conn.channel(), f"{p}-a")
        call(base, "PUT", f"/api/permissions/%2F/{user}", {"configure": "^x", "write": ".*", "read": ".*"})
        declare(conn.channel(), f"{p}-b")
        call(base, "DELETE", f"/api/users/{user}")
        try:
            conn.process_data_events(time_limit=3)
            seen.append("still open")
            conn.close()
        except pika.exceptions.ConnectionClosedByBroker as e:
            seen.append((e.reply_code, e.reply_text.replace(user, "USER")))
        return [(200, s) for s in seen]

    results = both(brokers, scenario)
    r, b = results["rabbitmq"], results["bloodbank"]
    assert [s for _, s in b] == [s for _, s in r], (b, r)
