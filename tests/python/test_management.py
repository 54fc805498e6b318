"""The management API, Prometheus metrics and RabbitMQ's own tools against a real Bloodbank
process: requests for every endpoint, pika for what the API must see and change, rabbitmqadmin
(from Debian's rabbitmq-server) and pyrabbit2 (from PyPI) as their users run them."""

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from urllib.parse import quote

import pika
import pytest
import requests
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, ProbableAccessDeniedError
from prometheus_client.parser import text_string_to_metric_families

GUEST = ("guest", "guest")
RABBITMQADMIN = "/usr/bin/rabbitmqadmin"


def fresh(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(bloodbank):
    """A requests session logged in as guest, with the management URL as `base`."""
    s = requests.Session()
    s.auth = GUEST
    s.base = bloodbank.management
    return s


def url(api, path):
    return api.base + path


def amqp(bloodbank, user="guest", password="guest", vhost="/", name=None):
    props = {"connection_name": name} if name else None
    return pika.BlockingConnection(pika.ConnectionParameters(
        bloodbank.host, bloodbank.port, vhost, pika.PlainCredentials(user, password),
        client_properties=props))


def wait_for(what, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_overview_says_what_clients_branch_on(api):
    r = api.get(url(api, "/api/overview"))
    assert r.status_code == 200
    o = r.json()
    for field in ("rabbitmq_version", "management_version", "product_name", "node"):
        assert o[field], field
    assert o["rabbitmq_version"].startswith("3.")
    assert {"connections", "channels", "consumers", "exchanges", "queues"} <= set(o["object_totals"])
    assert {"messages", "messages_ready", "messages_unacknowledged"} <= set(o["queue_totals"])
    assert "rate" in o["message_stats"]["publish_details"]
    assert any(listener["protocol"] == "amqp" for listener in o["listeners"])
    assert api.get(url(api, "/api/whoami")).json() == {"name": "guest", "tags": ["administrator"]}
    nodes = api.get(url(api, "/api/nodes")).json()
    assert nodes[0]["running"] is True and nodes[0]["mem_used"] > 0


def test_credentials_and_tags(bloodbank, api):
    r = requests.get(url(api, "/api/overview"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert r.json()["error"] == "not_authorised"
    assert requests.get(url(api, "/api/overview"), auth=("guest", "wrong")).status_code == 401
    assert requests.get(url(api, "/api/overview"), auth=("nobody", "guest")).status_code == 401
    # A user without a management tag may use AMQP but not the API.
    name = fresh("plain")
    assert api.put(url(api, f"/api/users/{name}"), json={"password": "pw", "tags": ""}).status_code == 201
    r = requests.get(url(api, "/api/overview"), auth=(name, "pw"))
    assert r.status_code == 401 and r.json()["reason"] == "Not management user"
    # The dashboard page and the metrics need no credentials.
    page = requests.get(url(api, "/"))
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert requests.get(url(api, "/metrics")).status_code == 200
    api.delete(url(api, f"/api/users/{name}"))


def test_a_queue_from_declare_to_delete_with_true_counters(bloodbank, api):
    q = fresh()
    path = url(api, f"/api/queues/%2F/{q}")
    assert api.put(path, json={"durable": True, "arguments": {}}).status_code == 201
    assert api.put(path, json={"durable": True}).status_code == 204
    # Inequivalent redeclaration: RabbitMQ's 400 with the AMQP reason.
    r = api.put(path, json={"durable": False})
    assert r.status_code == 400 and "inequivalent arg 'durable'" in r.json()["reason"]
    conn = amqp(bloodbank)
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    got = [ch.basic_get(q) for _ in range(2)]
    queue = api.get(path).json()
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (3, 1, 2)
    assert queue["durable"] is True and queue["vhost"] == "/" and queue["type"] == "classic"
    ch.basic_ack(got[1][0].delivery_tag, multiple=True)
    queue = wait_for(lambda: (lambda x: x if x["messages_unacknowledged"] == 0 else None)(api.get(path).json()))
    stats = queue["message_stats"]
    assert (stats["publish"], stats["deliver_get"], stats["get"], stats["ack"]) == (3, 2, 2, 2)
    for field in ("publish_details", "deliver_get_details", "ack_details"):
        assert isinstance(stats[field]["rate"], float)
    # The broker-wide counters moved too.
    overview = api.get(url(api, "/api/overview")).json()
    assert overview["message_stats"]["publish"] >= 3
    assert overview["message_stats"]["confirm"] >= 3
    assert api.delete(url(api, f"/api/queues/%2F/{q}/contents")).status_code == 204
    assert api.get(path).json()["messages"] == 0
    conn.close()
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    assert api.delete(path).status_code == 404


def test_publish_and_get_as_rabbitmqadmin_sends_them(api):
    q = fresh()
    # Booleans and counts as strings, the default exchange as amq.default.
    assert api.put(url(api, f"/api/queues/%2F/{q}"), json={"durable": "false", "auto_delete": "false"}).status_code == 201
    body = {"routing_key": q, "payload": "hello", "payload_encoding": "string",
            "properties": {"content_type": "text/plain", "headers": {"h": "v"}, "delivery_mode": 2}}
    r = api.post(url(api, "/api/exchanges/%2F/amq.default/publish"), json=body)
    assert r.json() == {"routed": True}
    r = api.post(url(api, "/api/exchanges/%2F/amq.default/publish"), json={**body, "routing_key": "nowhere"})
    assert r.json() == {"routed": False}
    binary = {"routing_key": q, "payload": base64.b64encode(b"\xff\x00").decode(), "payload_encoding": "base64", "properties": {}}
    assert api.post(url(api, "/api/exchanges/%2F/amq.default/publish"), json=binary).json() == {"routed": True}
    get = url(api, f"/api/queues/%2F/{q}/get")
    peek = api.post(get, json={"count": "5", "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": "50000"}).json()
    assert [m["payload_encoding"] for m in peek] == ["string", "base64"]
    assert peek[0]["payload"] == "hello" and peek[0]["properties"]["headers"] == {"h": "v"}
    assert peek[0]["properties"]["content_type"] == "text/plain" and peek[0]["message_count"] == 1
    again = api.post(get, json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}).json()
    assert again[0]["redelivered"] is True and again[0]["payload"] == "hello"
    assert api.get(url(api, f"/api/queues/%2F/{q}")).json()["messages"] == 1
    r = api.post(get, json={"count": 1, "ackmode": "sometimes"})
    assert r.status_code == 400 and "ackmode" in r.json()["reason"]
    api.delete(url(api, f"/api/queues/%2F/{q}"))


def test_exchanges_and_bindings_both_kinds(api):
    e, e2, q = fresh("ex"), fresh("ex"), fresh()
    assert api.put(url(api, f"/api/exchanges/%2F/{e}"), json={"type": "topic", "durable": True}).status_code == 201
    assert api.put(url(api, f"/api/exchanges/%2F/{e2}"), json={"type": "fanout"}).status_code == 201
    assert api.put(url(api, f"/api/queues/%2F/{q}"), json={}).status_code == 201
    r = api.post(url(api, f"/api/bindings/%2F/e/{e}/q/{q}"), json={"routing_key": "theboard.#", "arguments": {}})
    assert r.status_code == 201 and r.headers["location"].endswith("/theboard.%23")
    assert api.post(url(api, f"/api/bindings/%2F/e/{e}/e/{e2}"), json={"routing_key": ""}).status_code == 201
    source = api.get(url(api, f"/api/exchanges/%2F/{e}/bindings/source")).json()
    assert {(b["destination_type"], b["destination"], b["properties_key"]) for b in source} == {
        ("queue", q, "theboard.%23"), ("exchange", e2, "~")}
    assert [b["source"] for b in api.get(url(api, f"/api/exchanges/%2F/{e2}/bindings/destination")).json()] == [e]
    # A queue's bindings include the default exchange's.
    assert [b["source"] for b in api.get(url(api, f"/api/queues/%2F/{q}/bindings")).json()] == ["", e]
    assert api.get(url(api, f"/api/exchanges/%2F/{e}")).json()["type"] == "topic"
    assert api.get(url(api, "/api/exchanges/%2F/amq.default")).json()["name"] == ""
    # Routing follows the bindings.
    body = {"routing_key": "theboard.meeting.started", "payload": "{}", "payload_encoding": "string", "properties": {}}
    assert api.post(url(api, f"/api/exchanges/%2F/{e}/publish"), json=body).json() == {"routed": True}
    assert api.delete(url(api, f"/api/bindings/%2F/e/{e}/q/{q}/theboard.%23")).status_code == 204
    assert api.delete(url(api, f"/api/bindings/%2F/e/{e}/q/{q}/theboard.%23")).status_code == 404
    assert api.post(url(api, f"/api/exchanges/%2F/{e}/publish"), json=body).json() == {"routed": False}
    r = api.put(url(api, f"/api/exchanges/%2F/{fresh('ex')}"), json={"type": "nonsense"})
    assert r.status_code == 400 and "nonsense" in r.json()["reason"]
    assert api.delete(url(api, "/api/exchanges/%2F/amq.topic")).status_code == 401
    for name in (e, e2):
        assert api.delete(url(api, f"/api/exchanges/%2F/{name}")).status_code == 204
    api.delete(url(api, f"/api/queues/%2F/{q}"))


def test_connections_channels_consumers_and_closing_one(bloodbank, api):
    name = fresh("conn")
    conn = amqp(bloodbank, name=name)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=7)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(q, lambda *a: None, consumer_tag="tag-1")
    mine = wait_for(lambda: [c for c in api.get(url(api, "/api/connections")).json()
                             if c["client_properties"].get("connection_name") == name])
    assert len(mine) == 1
    c = mine[0]
    assert (c["user"], c["vhost"], c["protocol"], c["channels"]) == ("guest", "/", "AMQP 0-9-1", 1)
    assert c["peer_port"] == conn._impl._transport._sock.getsockname()[1]
    channels = api.get(url(api, f"/api/connections/{quote(c['name'], safe='')}/channels")).json()
    assert channels[0]["prefetch_count"] == 7 and channels[0]["consumer_count"] == 1
    consumers = [x for x in api.get(url(api, "/api/consumers")).json() if x["queue"]["name"] == q]
    assert consumers[0]["consumer_tag"] == "tag-1" and consumers[0]["prefetch_count"] == 7
    r = api.delete(url(api, f"/api/connections/{quote(c['name'], safe='')}"), headers={"X-Reason": "maintenance"})
    assert r.status_code == 204
    with pytest.raises(ConnectionClosedByBroker) as closed:
        conn.process_data_events(time_limit=5)
    assert closed.value.reply_code == 320 and "maintenance" in closed.value.reply_text
    assert wait_for(lambda: not any(x["name"] == c["name"] for x in api.get(url(api, "/api/connections")).json()))


def test_users_vhosts_and_permissions_are_enforced_on_amqp(bloodbank, api):
    vhost, user = fresh("vh"), fresh("alice")
    assert api.put(url(api, f"/api/vhosts/{vhost}")).status_code == 201
    assert api.put(url(api, f"/api/vhosts/{vhost}")).status_code == 204
    assert api.put(url(api, f"/api/users/{user}"), json={"password": "s3cret", "tags": "management"}).status_code == 201
    listed = {u["name"]: u for u in api.get(url(api, "/api/users")).json()}
    assert listed[user]["tags"] == ["management"]
    assert listed[user]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    # No permission in the vhost: RabbitMQ's refusal at connection.open.
    with pytest.raises((ConnectionClosedByBroker, ProbableAccessDeniedError)):
        amqp(bloodbank, user, "s3cret", vhost)
    perms = {"configure": f"^{user}-.*", "write": ".*", "read": ".*"}
    assert api.put(url(api, f"/api/permissions/{vhost}/{user}"), json=perms).status_code == 201
    assert api.get(url(api, f"/api/permissions/{vhost}/{user}")).json()["configure"] == perms["configure"]
    conn = amqp(bloodbank, user, "s3cret", vhost)
    ch = conn.channel()
    ch.queue_declare(f"{user}-work")
    with pytest.raises(ChannelClosedByBroker) as refused:
        ch.queue_declare("someone-elses")
    assert refused.value.reply_code == 403
    assert refused.value.reply_text == (
        f"ACCESS_REFUSED - access to queue 'someone-elses' in vhost '{vhost}' refused for user '{user}'")
    conn.close()
    # The same user through the API: sees its vhost only, and the API enforces its permissions.
    as_user = requests.Session()
    as_user.auth = (user, "s3cret")
    assert [v["name"] for v in as_user.get(url(api, "/api/vhosts")).json()] == [vhost]
    assert {q["vhost"] for q in as_user.get(url(api, "/api/queues")).json()} == {vhost}
    assert as_user.get(url(api, "/api/users")).status_code == 401
    assert as_user.put(url(api, f"/api/queues/{vhost}/other-q"), json={}).status_code == 401
    assert as_user.put(url(api, f"/api/queues/{vhost}/{user}-api"), json={}).status_code == 201
    assert as_user.get(url(api, "/api/queues/%2F")).status_code == 401
    # Permissions and users go away.
    assert api.delete(url(api, f"/api/permissions/{vhost}/{user}")).status_code == 204
    with pytest.raises((ConnectionClosedByBroker, ProbableAccessDeniedError)):
        amqp(bloodbank, user, "s3cret", vhost)
    assert api.delete(url(api, f"/api/users/{user}")).status_code == 204
    assert requests.get(url(api, "/api/whoami"), auth=(user, "s3cret")).status_code == 401
    assert api.delete(url(api, f"/api/vhosts/{vhost}")).status_code == 204
    assert api.get(url(api, f"/api/vhosts/{vhost}")).status_code == 404
    assert api.get(url(api, f"/api/queues/{vhost}")).status_code == 404


def rabbitmq_hash(password, salt=b"\x90\x8d\xc6\x0a"):
    """A password_hash the way rabbit_password_hashing_sha256 makes it."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def test_definitions_round_trip_and_refusals(bloodbank, api):
    vhost, user, q, e = fresh("vh"), fresh("bob"), fresh(), fresh("ex")
    file = {
        "rabbit_version": "3.10.8",
        "users": [{"name": user, "password_hash": rabbitmq_hash("from-rabbit"),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["monitoring"], "limits": {}}],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "exchanges": [{"name": e, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
        "queues": [{"name": q, "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": {"x-message-ttl": 60000}}],
        "bindings": [{"source": e, "vhost": vhost, "destination": q, "destination_type": "queue",
                      "routing_key": "a.#", "arguments": {}}],
    }
    assert api.post(url(api, "/api/definitions"), json=file).status_code == 204
    # The hash from a RabbitMQ export logs in unchanged.
    conn = amqp(bloodbank, user, "from-rabbit", vhost)
    ch = conn.channel()
    ch.basic_publish(e, "a.b", b"x")
    assert wait_for(lambda: ch.basic_get(q, auto_ack=True)[2] == b"x")
    conn.close()
    exported = api.get(url(api, "/api/definitions")).json()
    assert any(u["name"] == user and u["password_hash"] == file["users"][0]["password_hash"] for u in exported["users"])
    assert {"name": vhost} in exported["vhosts"]
    assert file["permissions"][0] in exported["permissions"]
    assert any(x["name"] == q and x["arguments"] == {"x-message-ttl": 60000} for x in exported["queues"])
    assert file["bindings"][0] in exported["bindings"]
    one = api.get(url(api, f"/api/definitions/{vhost}")).json()
    assert [x["name"] for x in one["queues"]] == [q]
    # What cannot be honoured is refused by name, and nothing is half-applied.
    with_policy = {"vhosts": [{"name": fresh("never")}],
                   "policies": [{"name": "fed", "vhost": "/", "pattern": ".*", "apply-to": "exchanges",
                                 "definition": {"federation-upstream-set": "all"}, "priority": 0}]}
    r = api.post(url(api, "/api/definitions"), json=with_policy)
    assert r.status_code == 400 and "policy 'fed'" in r.json()["reason"]
    assert "federation-upstream-set" in r.json()["reason"]
    assert with_policy["vhosts"][0]["name"] not in [v["name"] for v in api.get(url(api, "/api/vhosts")).json()]
    r = api.post(url(api, "/api/definitions"), data=b"{not json")
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    api.delete(url(api, f"/api/vhosts/{vhost}"))
    api.delete(url(api, f"/api/users/{user}"))


def test_bad_input_gets_rabbitmqs_4xx_never_a_500(api):
    q = fresh()
    r = api.put(url(api, f"/api/queues/%2F/{q}"), data=b'{"durable": tru')
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = api.put(url(api, f"/api/queues/%2F/{q}"), json={"durable": "maybe"})
    assert r.status_code == 400 and "durable" in r.json()["reason"]
    r = api.put(url(api, f"/api/queues/%2F/{q}"), json={"arguments": "x"})
    assert r.status_code == 400 and "arguments" in r.json()["reason"]
    r = api.put(url(api, "/api/permissions/%2F/guest"), json={"configure": "(", "write": ".*", "read": ".*"})
    assert r.status_code == 400 and "configure" in r.json()["reason"]
    assert api.get(url(api, "/api/queues/no-such-vhost")).status_code == 404
    assert api.put(url(api, f"/api/queues/no-such-vhost/{q}"), json={}).status_code == 404
    assert api.get(url(api, "/api/no/such/thing")).json() == {"error": "Object Not Found", "reason": "Not Found"}
    # A name with a slash, encoded as %2F, is one name.
    slashed = f"a/{q}"
    assert api.put(url(api, f"/api/queues/%2F/{quote(slashed, safe='')}"), json={}).status_code == 201
    assert api.get(url(api, f"/api/queues/%2F/{quote(slashed, safe='')}")).json()["name"] == slashed
    assert api.delete(url(api, f"/api/queues/%2F/{quote(slashed, safe='')}")).status_code == 204
    r = api.get(url(api, "/api/queues?page=0"))
    assert r.status_code == 400 and "page" in r.json()["reason"]


def test_lists_paginate_filter_and_narrow_to_columns(api):
    names = sorted(fresh("page") for _ in range(3))
    for n in names:
        api.put(url(api, f"/api/queues/%2F/{n}"), json={"durable": False})
    r = api.get(url(api, "/api/queues"), params={"page": 1, "page_size": 2, "name": "page-", "pagination": "true",
                                                 "sort": "name"}).json()
    assert (r["page"], r["page_count"], r["page_size"], r["filtered_count"]) == (1, 2, 2, 3)
    assert [i["name"] for i in r["items"]] == names[:2]
    narrow = api.get(url(api, "/api/queues"), params={"columns": "name,messages,message_stats.publish"}).json()
    assert all(set(i) <= {"name", "messages", "message_stats"} for i in narrow)
    # A trailing slash is the same list (amqp091-go's test helpers write one).
    assert api.get(url(api, "/api/queues/"), params={"name": "page-"}).json() == api.get(
        url(api, "/api/queues"), params={"name": "page-"}).json()
    assert api.get(url(api, "/api/queues/%2F/"), params={"name": "page-"}).status_code == 200
    regex = api.get(url(api, "/api/queues"), params={"name": "^page-", "use_regex": "true"}).json()
    assert sorted(i["name"] for i in regex) == names
    for n in names:
        api.delete(url(api, f"/api/queues/%2F/{n}"))


def test_health_checks_and_aliveness(api):
    assert api.get(url(api, "/api/health/checks/alarms")).json() == {"status": "ok"}
    assert api.get(url(api, "/api/health/checks/local-alarms")).json() == {"status": "ok"}
    assert api.get(url(api, "/api/aliveness-test/%2F")).json() == {"status": "ok"}
    assert api.get(url(api, "/api/aliveness-test/nope")).status_code == 404


def test_prometheus_text_parses_and_counts(bloodbank, api):
    def scrape():
        text = requests.get(url(api, "/metrics")).text
        return {f.name: f for f in text_string_to_metric_families(text)}

    before = scrape()
    for family in ("rabbitmq_connections", "rabbitmq_channels", "rabbitmq_consumers", "rabbitmq_queues",
                   "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
                   "rabbitmq_global_messages_received", "rabbitmq_global_messages_delivered",
                   "rabbitmq_global_messages_acknowledged", "rabbitmq_global_messages_confirmed",
                   "rabbitmq_process_resident_memory_bytes", "rabbitmq_disk_space_available_bytes",
                   "rabbitmq_alarms_memory_used_watermark", "rabbitmq_build_info"):
        assert family in before, family
    received = before["rabbitmq_global_messages_received"].samples[0]
    assert received.labels == {"protocol": "amqp091"} and received.name.endswith("_total")
    conn = amqp(bloodbank)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    for _ in range(5):
        ch.basic_publish("", q, b"m")
    after = scrape()
    assert after["rabbitmq_global_messages_received"].samples[0].value >= received.value + 5
    # Per queue, with label values escaped (a queue name may hold quotes and backslashes).
    odd = f'odd"\\{fresh()}'
    ch.queue_declare(odd, auto_delete=True)
    ch.basic_publish("", odd, b"m")
    per_object = {f.name: f for f in text_string_to_metric_families(requests.get(url(api, "/metrics/per-object")).text)}
    ready = {s.labels["queue"]: s.value for s in per_object["rabbitmq_queue_messages_ready"].samples}
    assert ready[q] == 5 and ready[odd] == 1
    assert {s.labels["vhost"] for s in per_object["rabbitmq_queue_messages_ready"].samples if s.labels["queue"] == odd} == {"/"}
    assert after["rabbitmq_connections"].samples[0].value >= 1
    assert after["rabbitmq_queue_messages_ready"].samples[0].value >= 5
    conn.close()


def rabbitmqadmin(api, *args):
    host, port = api.base.removeprefix("http://").rsplit(":", 1)
    out = subprocess.run([RABBITMQADMIN, "-H", host, "-P", port, "-u", "guest", "-p", "guest", *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


@pytest.mark.skipif(not os.path.exists(RABBITMQADMIN), reason="needs Debian's rabbitmq-server package")
def test_a_rabbitmqadmin_session(api):
    q = fresh("radmin")
    assert "queue declared" in rabbitmqadmin(api, "declare", "queue", f"name={q}", "durable=false")
    assert "exchange declared" in rabbitmqadmin(api, "declare", "exchange", f"name={q}-x", "type=fanout")
    assert "binding declared" in rabbitmqadmin(api, "declare", "binding", f"source={q}-x", f"destination={q}")
    assert "Message published" in rabbitmqadmin(api, "publish", f"exchange={q}-x", "routing_key=any", "payload=hi there")
    listed = json.loads(rabbitmqadmin(api, "-f", "raw_json", "list", "queues", "name", "messages"))
    assert {"name": q, "messages": 1} in listed
    got = rabbitmqadmin(api, "get", f"queue={q}", "ackmode=ack_requeue_false")
    assert "hi there" in got
    assert "policy declared" in rabbitmqadmin(api, "declare", "policy", f"name={q}-p", f"pattern=^{q}$",
                                              'definition={"max-length": 7}', "apply-to=queues", "priority=3")
    shown = json.loads(rabbitmqadmin(api, "-f", "raw_json", "list", "queues", "name", "policy"))
    assert {"name": q, "policy": f"{q}-p"} in shown
    assert "policy deleted" in rabbitmqadmin(api, "delete", "policy", f"name={q}-p")
    assert "rabbitmq_version" in rabbitmqadmin(api, "-f", "raw_json", "show", "overview")
    # Every column of every listing (rabbitmqadmin prints each field; a null breaks its table).
    for what in ("users", "vhosts", "permissions", "exchanges", "bindings", "connections", "channels", "consumers", "nodes"):
        rabbitmqadmin(api, "list", what)
    assert "exchange deleted" in rabbitmqadmin(api, "delete", "exchange", f"name={q}-x")
    assert "queue deleted" in rabbitmqadmin(api, "delete", "queue", f"name={q}")
    assert q not in rabbitmqadmin(api, "list", "queues")


def test_pyrabbit2_a_management_client_from_pypi(api):
    from pyrabbit2.api import Client

    client = Client(api.base.removeprefix("http://"), "guest", "guest")
    assert client.is_alive()
    q = fresh("pyrabbit")
    client.create_queue("/", q, durable=False)
    assert q in [x["name"] for x in client.get_queues("/")]
    assert client.publish("/", "amq.default", q, "from pyrabbit")
    messages = client.get_messages("/", q, count=1, requeue=False)
    assert messages[0]["payload"] == "from pyrabbit"
    client.delete_queue("/", q)
    assert q not in [x["name"] for x in client.get_queues("/")]


def test_dead_letters_in_the_dashboard(bloodbank, api):
    """The Dead letters tab in headless Chromium: a DLQ holding a kit's dead letter and one
    the broker dead-lettered itself (x-death) shows both reasons and the error, and Replay all
    puts each back where it first came from."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = fresh("dl")
    dlq, target, source = f"{p}-work.dlq", f"{p}-target", f"{p}-src"
    conn = amqp(bloodbank)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(dlq, durable=True)
    ch.queue_declare(target, durable=True)
    ch.queue_declare(source, durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    kit = {"x-dead-reason": "handler_failed", "x-error": "ValueError: boom", "x-attempts": 3,
           "x-original-routing-key": target, "x-original-exchange": "", "trace": "kept"}
    ch.basic_publish("", dlq, b'{"n": 1}', pika.BasicProperties(delivery_mode=2, headers=kit))
    ch.basic_publish("", source, b'{"n": 2}', pika.BasicProperties(delivery_mode=2))
    method, _, _ = ch.basic_get(source)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert wait_for(lambda: api.get(url(api, f"/api/queues/%2F/{dlq}")).json()["messages"] == 2)
    run = subprocess.run(["node", os.path.join(root, "tests", "browser", "dead_letters.mjs"), api.base + "/", dlq],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["count"] == "2" and seen["after"] == "0"
    assert seen["reasons"] == ["handler_failed × 1", "rejected × 1"]
    assert {"reason": "handler_failed", "error": "ValueError: boom"} in seen["shown"]
    _, props, body = ch.basic_get(target, auto_ack=True)
    assert body == b'{"n": 1}' and props.headers == {"trace": "kept"}
    _, props, body = ch.basic_get(source, auto_ack=True)
    assert body == b'{"n": 2}' and "x-death" not in (props.headers or {})
    conn.close()


def test_the_dashboard_in_chromium(bloodbank, api):
    """Headless Chromium signs in, watches a queue fill when pika publishes, reads its
    messages, purges it and closes a connection from the page, and tails live events."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    q = fresh("dash")
    api.put(url(api, f"/api/queues/%2F/{q}"), json={"durable": True})
    watcher = amqp(bloodbank, name="dashboard-watched")
    node = subprocess.Popen(["node", os.path.join(root, "tests", "browser", "dashboard.mjs"), api.base + "/", q],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def expect(word):
        line = node.stdout.readline().strip()
        assert line == word, (line, node.stderr.read() if node.poll() is not None else "")

    def send(word):
        node.stdin.write(word + "\n")
        node.stdin.flush()

    try:
        expect("watching")
        ch = watcher.channel()
        for i in range(5):
            ch.basic_publish("", q, json.dumps({"n": i}).encode(), pika.BasicProperties(delivery_mode=2))
        send("published")
        expect("purged")
        assert api.get(url(api, f"/api/queues/%2F/{q}")).json()["messages"] == 0
        expect("closed")
        with pytest.raises(ConnectionClosedByBroker) as closed:
            watcher.process_data_events(time_limit=5)
        assert closed.value.reply_code == 320
        send("checked")
        expect("tailing")
        publisher = amqp(bloodbank)
        pch = publisher.channel()
        pch.basic_publish("events", "theboard.meeting.started", b'{"meeting_id": "m-7"}')
        pch.basic_publish("events", "other.thing", b"{}")
        pch.basic_publish("events", "theboard.round.completed", b'{"round": 2}')
        send("events-published")
        shown = json.loads(node.stdout.readline())
        node.stdin.close()
        assert node.wait(timeout=60) == 0, node.stderr.read()
        publisher.close()
    finally:
        if node.poll() is None:
            node.kill()
    assert "failed" in shown["loginError"]
    assert (shown["tabsBeforeLogin"], shown["tabsAfterLogin"]) == (False, True)
    assert shown["user"].startswith("guest")
    assert (shown["readyBefore"], shown["readyAfter"], shown["readyPurged"]) == ("0", "5", "0")
    assert json.loads(shown["firstPayload"]) == {"n": 0}
    assert "dashboard-watched" in shown["clients"]
    assert shown["tailed"] == ["theboard.round.completed", "theboard.meeting.started"]
    api.delete(url(api, f"/api/queues/%2F/{q}"))


def test_the_cli_over_the_api(bloodbank, api, tmp_path):
    """`bloodbank list|queues|connections|users|vhosts` and `definitions export` against the
    running server, as an operator types them."""
    from conftest import BINARY

    env = {**os.environ, "BLOODBANK_MANAGEMENT_URL": api.base}

    def cli(*args, ok=True):
        out = subprocess.run([str(BINARY), *args], capture_output=True, text=True, env=env, timeout=30)
        assert (out.returncode == 0) == ok, out.stderr
        return out

    vhost, user, q = fresh("vh"), fresh("carol"), fresh()
    cli("vhosts", "add", vhost)
    assert vhost in cli("vhosts", "list").stdout
    cli("users", "add", user, "pw", "--tags", "monitoring,management")
    cli("users", "set-permissions", user, "--vhost", vhost, "--configure", "^carol")
    table = cli("list", "users").stdout.splitlines()
    assert table[0].split() == ["name", "tags"]
    assert any(line.split() == [user, "monitoring,management"] for line in table)
    perms = json.loads(cli("list", "permissions", "--json").stdout)
    assert {"user": user, "vhost": vhost, "configure": "^carol", "write": ".*", "read": ".*"} in perms
    # The new user's credentials from the environment, as a script would pass them.
    env_user = {**env, "BLOODBANK_MANAGEMENT_USER": user, "BLOODBANK_MANAGEMENT_PASSWORD": "pw"}
    out = subprocess.run([str(BINARY), "list", "vhosts", "--json"], capture_output=True, text=True, env=env_user)
    assert out.returncode == 0, out.stderr
    conn = amqp(bloodbank, name="cli-target")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    queues = json.loads(cli("list", "queues", "--vhost", "/", "--json").stdout)
    assert any(x["name"] == q and x["messages"] == 1 for x in queues)
    assert q in cli("list", "queues").stdout
    cli("queues", "purge", q)
    assert api.get(url(api, f"/api/queues/%2F/{q}")).json()["messages"] == 0
    connections = json.loads(cli("list", "connections", "--json").stdout)
    target = next(c["name"] for c in connections if c["client_properties"].get("connection_name") == "cli-target")
    cli("connections", "close", target, "--reason", "from the CLI")
    with pytest.raises(ConnectionClosedByBroker) as closed:
        conn.process_data_events(time_limit=5)
    assert closed.value.reply_code == 320 and "from the CLI" in closed.value.reply_text
    cli("queues", "delete", q)
    assert "404" in cli("queues", "delete", q, ok=False).stderr
    # definitions export on the running broker's data directory goes through the API.
    exported = tmp_path / "defs.json"
    cli("definitions", "export", str(exported), "--data-dir", str(bloodbank.data_dir))
    assert user in [u["name"] for u in json.loads(exported.read_text())["users"]]
    cli("users", "delete", user)
    cli("vhosts", "delete", vhost)
    assert user not in cli("list", "users").stdout
    wrong = subprocess.run([str(BINARY), "list", "queues"], capture_output=True, text=True,
                           env={**env, "BLOODBANK_MANAGEMENT_PASSWORD": "nope"})
    assert wrong.returncode != 0 and "401" in wrong.stderr


def test_policies_dead_letter_and_limit_with_rabbitmqs_precedence(bloodbank, api):
    """Dead-lettering and TTL configured only by policy, as many RabbitMQ users do; limits
    take the smallest of argument, policy and operator policy; an argument beats a policy's
    dead-letter exchange."""
    p = fresh("pol")
    dlq = f"{p}-dead"
    conn = amqp(bloodbank)
    ch = conn.channel()
    ch.confirm_delivery()  # each publish is in its queue when basic_publish returns
    ch.exchange_declare(f"{p}-dlx", "fanout")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, f"{p}-dlx")
    policy = {"pattern": f"^{p}-work", "apply-to": "queues", "priority": 1,
              "definition": {"dead-letter-exchange": f"{p}-dlx", "message-ttl": 200, "max-length": 5}}
    assert api.put(url(api, f"/api/policies/%2F/{p}"), json=policy).status_code == 201
    assert api.put(url(api, f"/api/policies/%2F/{p}"), json=policy).status_code == 204
    ch.queue_declare(f"{p}-work")
    shown = api.get(url(api, f"/api/queues/%2F/{p}-work")).json()
    assert shown["policy"] == p and shown["effective_policy_definition"]["message-ttl"] == 200
    ch.basic_publish("", f"{p}-work", b"expires")
    assert wait_for(lambda: api.get(url(api, f"/api/queues/%2F/{dlq}")).json()["messages"] == 1)
    method, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"expires" and props.headers["x-death"][0]["reason"] == "expired"
    # Limits: the argument (10) loses to the policy (5), which loses to the operator policy (3).
    limits = {"pattern": f"^{p}-lim", "apply-to": "queues", "definition": {"dead-letter-exchange": f"{p}-dlx", "max-length": 5}}
    assert api.put(url(api, f"/api/policies/%2F/{p}-lim"), json=limits).status_code == 201
    ch.queue_declare(f"{p}-lim", arguments={"x-max-length": 10})
    for i in range(8):
        ch.basic_publish("", f"{p}-lim", str(i).encode())
    depth = lambda: api.get(url(api, f"/api/queues/%2F/{p}-lim")).json()["messages"]  # noqa: E731
    assert depth() == 5
    op = {"pattern": f"^{p}-lim", "apply-to": "queues", "definition": {"max-length": 3}}
    assert api.put(url(api, f"/api/operator-policies/%2F/{p}-op"), json=op).status_code == 201
    assert depth() == 3
    shown = api.get(url(api, f"/api/queues/%2F/{p}-lim")).json()
    assert (shown["policy"], shown["operator_policy"]) == (f"{p}-lim", f"{p}-op")
    assert shown["effective_policy_definition"]["max-length"] == 3
    # The dropped heads were dead-lettered through the policy's exchange (maxlen), oldest first.
    assert wait_for(lambda: api.get(url(api, f"/api/queues/%2F/{dlq}")).json()["messages"] == 5)
    dropped = [ch.basic_get(dlq, auto_ack=True)[2] for _ in range(5)]
    assert dropped == [b"0", b"1", b"2", b"3", b"4"]
    assert api.delete(url(api, f"/api/operator-policies/%2F/{p}-op")).status_code == 204
    for i in range(4):
        ch.basic_publish("", f"{p}-lim", b"more")
    assert depth() == 5
    # An argument's dead-letter exchange wins over the policy's.
    ch.exchange_declare(f"{p}-mine", "fanout")
    ch.queue_declare(f"{p}-mine-q")
    ch.queue_bind(f"{p}-mine-q", f"{p}-mine")
    ch.queue_declare(f"{p}-work-own", arguments={"x-dead-letter-exchange": f"{p}-mine"})
    ch.basic_publish("", f"{p}-work-own", b"rejected")
    method, _, _ = ch.basic_get(f"{p}-work-own")
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert wait_for(lambda: api.get(url(api, f"/api/queues/%2F/{p}-mine-q")).json()["messages"] == 1)
    # Removing the policy removes its settings from the queues.
    assert api.delete(url(api, f"/api/policies/%2F/{p}")).status_code == 204
    assert api.get(url(api, f"/api/queues/%2F/{p}-work")).json()["policy"] is None
    assert api.delete(url(api, f"/api/policies/%2F/{p}")).status_code == 404
    conn.close()


def test_a_delivery_limit_policy_dead_letters_poison_messages_of_quorum_queues(bloodbank, api):
    """The `delivery-limit` policy key, as RabbitMQ users set it: a message a consumer keeps
    returning is dead-lettered (reason delivery_limit) once over the limit; redeliveries carry
    `x-delivery-count`; the key has no effect on a classic queue the same policy matches, and
    the Prometheus counter counts the dead letter."""
    p = fresh("lim")
    conn = amqp(bloodbank)
    ch = conn.channel()
    ch.queue_declare(f"{p}-dlq", durable=True)
    policy = {"pattern": f"^{p}-", "apply-to": "queues",
              "definition": {"delivery-limit": 1, "dead-letter-exchange": "", "dead-letter-routing-key": f"{p}-dlq"}}
    assert api.put(url(api, f"/api/policies/%2F/{p}"), json=policy).status_code == 201
    ch.queue_declare(f"{p}-q", durable=True, arguments={"x-queue-type": "quorum"})
    ch.queue_declare(f"{p}-classic", durable=True)
    assert api.get(url(api, f"/api/queues/%2F/{p}-q")).json()["effective_policy_definition"]["delivery-limit"] == 1
    for q in (f"{p}-q", f"{p}-classic"):
        ch.basic_publish("", q, b"poison")
    seen = []
    for _ in range(2):
        method, props, _ = ch.basic_get(f"{p}-q")
        seen.append((props.headers or {}).get("x-delivery-count"))
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert seen == [None, 1]
    assert wait_for(lambda: api.get(url(api, f"/api/queues/%2F/{p}-dlq")).json()["messages"] == 1)
    _, props, body = ch.basic_get(f"{p}-dlq", auto_ack=True)
    assert body == b"poison" and props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert ch.basic_get(f"{p}-q")[0] is None
    # The classic queue takes the message back however often it comes back.
    for _ in range(3):
        method, props, _ = ch.basic_get(f"{p}-classic")
        assert method is not None and "x-delivery-count" not in (props.headers or {})
        ch.basic_nack(method.delivery_tag, requeue=True)
    metrics = requests.get(url(api, "/metrics")).text
    counted = [s.value for f in text_string_to_metric_families(metrics) for s in f.samples
               if s.name == "rabbitmq_global_messages_dead_lettered_delivery_limit_total"]
    assert counted and counted[0] >= 1
    api.delete(url(api, f"/api/policies/%2F/{p}"))
    conn.close()


def test_policies_that_cannot_be_honoured_are_refused_by_name(api):
    def put(path, body):
        r = api.put(url(api, path), json=body)
        return r.status_code, r.json().get("reason", "")

    status, reason = put("/api/policies/%2F/bad", {"pattern": "(", "definition": {"max-length": 1}})
    assert status == 400 and "pattern" in reason
    status, reason = put("/api/policies/%2F/fed", {"pattern": ".*", "definition": {"federation-upstream-set": "all"}})
    assert status == 400 and "federation-upstream-set" in reason
    status, reason = put("/api/policies/%2F/neg", {"pattern": ".*", "definition": {"max-length": -2}})
    assert status == 400 and "max-length" in reason
    status, reason = put("/api/operator-policies/%2F/op", {"pattern": ".*", "definition": {"dead-letter-exchange": "x"}})
    assert status == 400 and "dead-letter-exchange" in reason
    status, reason = put("/api/policies/%2F/to", {"pattern": ".*", "apply-to": "streams", "definition": {"max-length": 1}})
    assert status == 400 and "apply-to" in reason
    assert api.put(url(api, "/api/policies/nope/p"), json={"pattern": ".*", "definition": {"max-length": 1}}).status_code == 404
    # Classic mirroring keys mean nothing on one node: accepted, without effect.
    assert api.put(url(api, "/api/policies/%2F/ha"), json={"pattern": "^never-matches$", "definition": {"ha-mode": "all"}}).status_code == 201
    assert api.delete(url(api, "/api/policies/%2F/ha")).status_code == 204


def test_policies_survive_a_restart_and_travel_in_definitions(tmp_path):
    from conftest import start_server, stop_server

    server = start_server(tmp_path / "data", "--management-listen", "127.0.0.1:0")
    s = requests.Session()
    s.auth = GUEST
    base = server.management
    policy = {"pattern": "^short", "apply-to": "queues", "definition": {"max-length": 2}, "priority": 3}
    assert s.put(base + "/api/policies/%2F/short", json=policy).status_code == 201
    exported = s.get(base + "/api/definitions").json()
    assert {"vhost": "/", "name": "short", "pattern": "^short", "apply-to": "queues",
            "definition": {"max-length": 2}, "priority": 3} in exported["policies"]
    stop_server(server)
    server = start_server(tmp_path / "data")
    base = server.management
    assert s.get(base + "/api/policies/%2F/short").json()["priority"] == 3
    conn = pika.BlockingConnection(pika.ConnectionParameters(server.host, server.port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("short-q")
    for _ in range(4):
        ch.basic_publish("", "short-q", b"x")
    assert s.get(base + "/api/queues/%2F/short-q").json()["messages"] == 2
    conn.close()
    stop_server(server)
