//! The HTTP gateway of a real `bloodbank serve` process, over real HTTP, with a real AMQP
//! consumer (lapin) receiving what it publishes.

mod common;

use common::http::{get, post_json, request, Json};
use common::process::{self, Server};
use common::{bind_queue, channel, consume, declare_queue, header_str, next, nothing_within};
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};

fn meeting() -> Value {
    json!({
        "event_type": "theboard.meeting.created",
        "timestamp": "2024-01-15T10:30:00Z",
        "meeting_id": "550e8400-e29b-41d4-a716-446655440000",
        "topic": "How can we improve AI safety?",
        "strategy": "multi_agent",
        "max_rounds": 5
    })
}

fn start(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = process::start(&dir.path().join("data"), &dir.path().join("log"), extra);
    (dir, server)
}

async fn listen(server: &Server, pattern: &str) -> (Connection, lapin::Consumer) {
    let conn = Connection::connect(&server.url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = channel(&conn).await;
    let q = declare_queue(&ch, "").await;
    bind_queue(&ch, &q, "events", pattern).await.unwrap();
    let consumer = consume(&ch, &q, true).await;
    (conn, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_event_is_enveloped_published_and_delivered_with_its_properties() {
    let (_dir, server) = start(&[]);
    let (_conn, mut consumer) = listen(&server, "theboard.#").await;
    let response = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let envelope = response.json();
    assert_eq!(envelope["event_type"], "theboard.meeting.created");
    assert_eq!(envelope["data"], meeting());
    assert_eq!(envelope["schema_version"], 1);
    assert_eq!(envelope["correlation_id"], Value::Null);
    assert!(envelope["source"]
        .as_str()
        .unwrap()
        .starts_with("http/127.0.0.1"));
    let id = envelope["id"].as_str().unwrap().to_string();

    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.routing_key.as_str(), "theboard.meeting.created");
    let body: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(body, envelope);
    let p = &delivery.properties;
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), id);
    assert_eq!(
        p.kind().as_ref().unwrap().as_str(),
        "theboard.meeting.created"
    );
    assert!(p.app_id().as_ref().unwrap().as_str().starts_with("http/"));
    assert!(p.timestamp().is_some());
    assert_eq!(
        header_str(&delivery, "cloudEvents_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        header_str(&delivery, "cloudEvents_type").as_deref(),
        Some("theboard.meeting.created")
    );
    assert_eq!(
        header_str(&delivery, "traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );

    // The same payload again: the same (deterministic) id, so the same event, replayed.
    let again = post_json(
        &server.http,
        "/v1/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(again.json()["id"], envelope["id"]);
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    nothing_within(&mut consumer, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_spec_error_body_and_publish_nothing() {
    let (_dir, server) = start(&[]);
    let (_conn, mut consumer) = listen(&server, "#").await;

    let mut invalid = meeting();
    invalid["max_rounds"] = json!(500);
    invalid["priority"] = json!("high");
    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &invalid,
        &[],
    );
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["error"], "VALIDATION_ERROR");
    let pointers: Vec<&str> = body["details"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/max_rounds"), "{body}");
    assert!(
        body["details"]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["reason"].as_str().unwrap().contains("priority")),
        "{body}"
    );

    let r = post_json(&server.http, "/events/nobody.knows.this", &json!({}), &[]);
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (404, "UNKNOWN_EVENT_TYPE")
    );

    let r = request(
        &server.http,
        "POST",
        "/events/theboard.meeting.created",
        &[("Content-Type", "application/json")],
        b"{\"topic\": ",
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("not JSON"));

    let r = request(
        &server.http,
        "POST",
        "/events/theboard.meeting.created",
        &[("Content-Type", "text/plain")],
        b"{}",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (415, "UNSUPPORTED_MEDIA_TYPE")
    );

    let big = vec![b' '; 2 * 1024 * 1024];
    let r = request(
        &server.http,
        "POST",
        "/events/theboard.meeting.created",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (413, "PAYLOAD_TOO_LARGE")
    );

    let r = post_json(&server.http, "/events/Not%20A%20Key", &json!({}), &[]);
    assert_eq!(r.status, 400);

    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[("X-Correlation-ID", "not-a-uuid")],
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("X-Correlation-ID"));

    let r = get(&server.http, "/no/such/route");
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (404, "NOT_FOUND")
    );

    nothing_within(&mut consumer, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_envelope_without_publishing_again() {
    let (_dir, server) = start(&[]);
    let (_conn, mut consumer) = listen(&server, "calendar.#").await;
    let entry = json!({"summary": "Team Meeting", "start_time": "2024-01-15T10:00:00Z", "end_time": "2024-01-15T11:00:00Z"});
    let first = post_json(
        &server.http,
        "/events/calendar",
        &entry,
        &[("Idempotency-Key", "abc-1")],
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replay"), None);
    assert_eq!(first.json()["event_type"], "calendar.event.created");
    let second = post_json(
        &server.http,
        "/events/calendar",
        &entry,
        &[("Idempotency-Key", "abc-1")],
    );
    assert_eq!(second.status, 200);
    assert_eq!(second.header("idempotent-replay"), Some("true"));
    assert_eq!(second.json(), first.json());
    let other = post_json(
        &server.http,
        "/events/calendar",
        &entry,
        &[("Idempotency-Key", "abc-2")],
    );
    assert_ne!(other.json()["id"], first.json()["id"]);

    let delivered: Value = serde_json::from_slice(&next(&mut consumer).await.data).unwrap();
    assert_eq!(delivered["id"], first.json()["id"]);
    let delivered: Value = serde_json::from_slice(&next(&mut consumer).await.data).unwrap();
    assert_eq!(delivered["id"], other.json()["id"]);
    nothing_within(&mut consumer, 200).await;
}

/// The envelope id is deterministic (type, payload, correlation id): the same event again
/// without an Idempotency-Key is that event, replayed, not published a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_again_without_a_key_is_replayed_not_republished() {
    let (_dir, server) = start(&[]);
    let (_conn, mut consumer) = listen(&server, "theboard.#").await;
    let first = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replay"), None);
    let again = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_eq!(again.json(), first.json());
    let mut changed = meeting();
    changed["topic"] = json!("another topic");
    let other = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &changed,
        &[],
    );
    assert_eq!(other.header("idempotent-replay"), None);
    let delivered: Value = serde_json::from_slice(&next(&mut consumer).await.data).unwrap();
    assert_eq!(delivered["id"], first.json()["id"]);
    let delivered: Value = serde_json::from_slice(&next(&mut consumer).await.data).unwrap();
    assert_eq!(delivered["id"], other.json()["id"]);
    nothing_within(&mut consumer, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_chains_link_parents_and_children() {
    let (_dir, server) = start(&[]);
    let root = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    )
    .json();
    let root_id = root["id"].as_str().unwrap().to_string();
    let mut started = meeting();
    started["topic"] = json!("second");
    let child = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &started,
        &[("X-Correlation-ID", &root_id)],
    )
    .json();
    assert_eq!(child["correlation_id"], root_id.as_str());
    let child_id = child["id"].as_str().unwrap().to_string();

    let chain = get(&server.http, &format!("/correlation/{child_id}")).json();
    assert_eq!(chain["parent_id"], root_id.as_str());
    assert_eq!(chain["depth"], 1);
    assert_eq!(chain["root_id"], root_id.as_str());
    let up = get(
        &server.http,
        &format!("/v1/correlation/{root_id}?depth=all"),
    )
    .json();
    assert_eq!(up["children"], json!([child_id]));
    assert_eq!(up["depth"], 0);
    assert_eq!(up["tree"]["children"][0]["message_id"], child_id.as_str());

    assert_eq!(
        get(
            &server.http,
            "/correlation/00000000-0000-4000-8000-000000000000"
        )
        .status,
        404
    );
    assert_eq!(get(&server.http, "/correlation/xyz").status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_schemas() {
    let (_dir, server) = start(&[]);
    let health = get(&server.http, "/health").json();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["rabbitmq"], "connected");
    let catalog = get(&server.http, "/v1/schemas").json();
    assert!(catalog["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_type"] == "theboard.meeting.created"));
    let versions = get(&server.http, "/v1/schemas/theboard.meeting.created").json();
    assert_eq!(versions["versions"][0]["version"], 1);
    assert_eq!(
        versions["versions"][0]["schema"]["$id"],
        "https://33god.dev/schemas/theboard/meeting.created.v1.json"
    );
    assert_eq!(get(&server.http, "/v1/schemas/no.such.event").status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_types_publish_with_a_warning_when_allowed() {
    let (_dir, server) = start(&["--allow-unregistered"]);
    let (_conn, mut consumer) = listen(&server, "adhoc.#").await;
    let r = post_json(
        &server.http,
        "/events/adhoc.thing.happened",
        &json!({"x": 1}),
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("x-bloodbank-warning")
        .unwrap()
        .contains("unregistered"));
    assert_eq!(r.json()["schema_version"], Value::Null);
    next(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_alarm_turns_publishes_into_503_with_retry_after() {
    // A memory watermark of 1 byte: the alarm is raised at the first check.
    let (_dir, server) = start(&["--memory-high-watermark", "1"]);
    let (_conn, mut consumer) = listen(&server, "#").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&server.http, "/health").json()["status"] != "degraded" {
        assert!(
            std::time::Instant::now() < deadline,
            "health never said degraded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "UNAVAILABLE");
    nothing_within(&mut consumer, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_name_the_source_and_limit_what_they_publish() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bloodbank.toml");
    std::fs::write(
        &config,
        "[[api_keys]]\nname = \"theboard-svc\"\nkey = \"k-123\"\npatterns = [\"theboard.#\"]\n",
    )
    .unwrap();
    let server = process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--config", config.to_str().unwrap()],
    );
    let (_conn, mut consumer) = listen(&server, "#").await;

    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (401, "UNAUTHORIZED")
    );
    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[("X-API-Key", "nope")],
    );
    assert_eq!(r.status, 401);
    let entry = json!({"summary": "x", "start_time": "2024-01-15T10:00:00Z", "end_time": "2024-01-15T11:00:00Z"});
    let r = post_json(
        &server.http,
        "/events/calendar",
        &entry,
        &[("X-API-Key", "k-123")],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (403, "FORBIDDEN")
    );
    assert!(r.json()["message"].as_str().unwrap().contains("theboard.#"));
    nothing_within(&mut consumer, 100).await;

    let r = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[("X-API-Key", "k-123")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["source"], "theboard-svc");
    let d = next(&mut consumer).await;
    assert_eq!(
        d.properties.app_id().as_ref().unwrap().as_str(),
        "theboard-svc"
    );
    // Health stays open for probes; the rest needs the key too.
    assert_eq!(get(&server.http, "/health").status, 200);
    assert_eq!(get(&server.http, "/v1/schemas").status, 401);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(get(&server.http, &format!("/correlation/{id}")).status, 401);
    let r = request(
        &server.http,
        "GET",
        &format!("/correlation/{id}"),
        &[("X-API-Key", "k-123")],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_in_binary_and_structured_mode() {
    let (_dir, server) = start(&[]);
    let (_conn, mut consumer) = listen(&server, "#").await;
    let binary = [
        ("ce-specversion", "1.0"),
        ("ce-id", "evt-1"),
        ("ce-source", "/theboard/orchestrator"),
        ("ce-type", "theboard.meeting.created"),
    ];
    let first = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &binary,
    );
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let d = next(&mut consumer).await;
    assert_eq!(header_str(&d, "cloudEvents_id").as_deref(), Some("evt-1"));
    assert_eq!(
        header_str(&d, "cloudEvents_source").as_deref(),
        Some("/theboard/orchestrator")
    );
    // The same source and id again is the same event: replayed, not published.
    let again = post_json(&server.http, "/events", &meeting(), &binary);
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);

    let mismatched = [
        ("ce-specversion", "1.0"),
        ("ce-id", "x"),
        ("ce-source", "s"),
        ("ce-type", "calendar.event.created"),
    ];
    assert_eq!(
        post_json(
            &server.http,
            "/events/theboard.meeting.created",
            &meeting(),
            &mismatched
        )
        .status,
        400
    );

    let structured = json!({
        "specversion": "1.0", "id": "evt-2", "source": "/calendar", "type": "calendar.event.created",
        "datacontenttype": "application/json",
        "data": {"summary": "Standup", "start_time": "2024-01-15T09:00:00Z", "end_time": "2024-01-15T09:15:00Z"}
    });
    let r = request(
        &server.http,
        "POST",
        "/events",
        &[("Content-Type", "application/cloudevents+json")],
        structured.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["summary"], "Standup");
    let d = next(&mut consumer).await;
    assert_eq!(d.routing_key.as_str(), "calendar.event.created");
    let mut invalid = structured.clone();
    invalid["data"]["summary"] = json!("");
    let r = request(
        &server.http,
        "POST",
        "/events",
        &[("Content-Type", "application/cloudevents+json")],
        invalid.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        post_json(&server.http, "/events", &meeting(), &[]).status,
        400,
        "plain JSON on /events"
    );
    nothing_within(&mut consumer, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_publish_endpoint_takes_its_v02_envelope() {
    let (_dir, server) = start(&[]);
    let (_conn, mut consumer) = listen(&server, "#").await;
    let event_id = "7d1f4c2a-0b6e-4c1e-9a55-1f2e3d4c5b6a";
    let parent = "11111111-2222-4333-8444-555555555555";
    let envelope = json!({
        "event_id": event_id,
        "event_type": "theboard.meeting.created",
        "timestamp": "2024-01-15T10:30:00Z",
        "version": "0.2.0",
        "source": {"host": "box", "type": "agent", "app": "theboard", "meta": {}},
        "correlation_ids": [parent],
        "agent_context": {"agent": "Alice"},
        "payload": meeting()
    });
    let r = post_json(&server.http, "/publish", &envelope, &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), envelope);
    let d = next(&mut consumer).await;
    assert_eq!(serde_json::from_slice::<Value>(&d.data).unwrap(), envelope);
    assert_eq!(
        d.properties.message_id().as_ref().unwrap().as_str(),
        event_id
    );
    assert_eq!(
        d.properties.correlation_id().as_ref().unwrap().as_str(),
        parent
    );
    // The same event_id again is a replay.
    assert_eq!(
        post_json(&server.http, "/publish", &envelope, &[]).header("idempotent-replay"),
        Some("true")
    );
    let mut bad = envelope.clone();
    bad["event_id"] = json!("7d1f4c2a-0b6e-4c1e-9a55-000000000001");
    bad["payload"]["max_rounds"] = json!(0);
    assert_eq!(post_json(&server.http, "/publish", &bad, &[]).status, 400);
    let minimal = json!({"event_type": "calendar.event.created", "payload": {"summary": "s", "start_time": "2024-01-15T10:00:00Z", "end_time": "2024-01-15T10:00:00Z"}});
    let filled = post_json(&server.http, "/publish", &minimal, &[]).json();
    assert!(
        filled["event_id"].is_string()
            && filled["timestamp"].is_string()
            && filled["source"]["type"] == "http"
    );
    next(&mut consumer).await;
    nothing_within(&mut consumer, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_metrics_count_what_happened() {
    let (_dir, server) = start(&[]);
    let doc = get(&server.http, "/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/events/{event_type}", "post"),
        ("/events/calendar", "post"),
        ("/events", "post"),
        ("/publish", "post"),
        ("/health", "get"),
        ("/correlation/{message_id}", "get"),
        ("/schemas", "get"),
        ("/schemas/{event_type}", "get"),
        ("/metrics", "get"),
        ("/ws/events", "get"),
        ("/openapi.json", "get"),
    ] {
        for prefix in ["", "/v1"] {
            let full = format!("{prefix}{path}");
            assert!(
                paths.get(&full).and_then(|p| p.get(method)).is_some(),
                "{method} {full} undocumented"
            );
        }
    }
    // Every documented path is served (no "no route" 404).
    for path in paths.keys() {
        let concrete = path
            .replace("{event_type}", "theboard.meeting.created")
            .replace("{message_id}", "00000000-0000-4000-8000-000000000000");
        let method = if paths[path].get("get").is_some() {
            "GET"
        } else {
            "POST"
        };
        let r = request(
            &server.http,
            method,
            &concrete,
            &[("Content-Type", "application/json")],
            b"{}",
        );
        assert!(
            !(r.status == 404
                && r.json()["error"] == "NOT_FOUND"
                && r.json()["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("no route")),
            "{path}"
        );
    }

    // The loop above sent `{}` to both publishEvent paths: two validation failures already.
    let mut invalid = meeting();
    invalid["max_rounds"] = json!(0);
    post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &invalid,
        &[],
    );
    post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    let metrics = get(&server.http, "/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("bloodbank_http_publishes_total{event_type=\"theboard.meeting.created\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "bloodbank_validation_failures_total{event_type=\"theboard.meeting.created\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("bloodbank_http_requests_total{route=\"/events/{event_type}\",method=\"POST\",status=\"200\"} 1"), "{text}");
    assert!(
        text.contains(
            "bloodbank_http_request_duration_seconds_count{route=\"/events/{event_type}\"}"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_and_tail_commands() {
    let (dir, server) = start(&[]);
    let amqp = server.url.clone();
    let mut tail = std::process::Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args([
            "tail",
            "theboard.#",
            "--json",
            "--count",
            "1",
            "--amqp",
            &amqp,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `tail` says on stderr once its queue is bound.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tail.stderr.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert!(said.starts_with("tailing theboard.#"), "{said}");

    let payload = dir.path().join("meeting.json");
    std::fs::write(&payload, meeting().to_string()).unwrap();
    let url = format!("http://{}", server.http);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args([
            "publish",
            "theboard.meeting.created",
            "--data",
            &format!("@{}", payload.display()),
            "--url",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envelope: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(envelope["event_type"], "theboard.meeting.created");

    let tailed = tail.wait_with_output().unwrap();
    assert!(
        tailed.status.success(),
        "{}",
        String::from_utf8_lossy(&tailed.stderr)
    );
    let line: Value = serde_json::from_slice(&tailed.stdout).unwrap();
    assert_eq!(line["routing_key"], "theboard.meeting.created");
    assert_eq!(line["message_id"], envelope["id"]);
    assert_eq!(line["body"], envelope);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args([
            "publish",
            "theboard.meeting.created",
            "--data",
            "{\"topic\": 1}",
            "--url",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("VALIDATION_ERROR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bloodbank.toml");
    std::fs::write(&config, "gateway_body_timeout_secs = 1\n").unwrap();
    let server = process::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--config", config.to_str().unwrap()],
    );
    // The management API bounds a body's time too (30 s, fixed): one trickles in there.
    let management = server.management.clone().unwrap();
    let mut slow_admin =
        std::net::TcpStream::connect(management.trim_start_matches("http://")).unwrap();
    slow_admin
        .write_all(
            b"PUT /api/queues/%2f/slow HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"dur",
        )
        .unwrap();
    // Headers that never end (slow loris), and a body that trickles in.
    let mut loris = std::net::TcpStream::connect(&server.http).unwrap();
    loris
        .write_all(b"POST /events/theboard.meeting.created HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut trickle = std::net::TcpStream::connect(&server.http).unwrap();
    trickle
        .write_all(
            b"POST /events/theboard.meeting.created HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ev",
        )
        .unwrap();
    // Everyone else is served meanwhile.
    let ok = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    // The trickling body is answered 408 with the error body once its time is up.
    trickle
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    // The unfinished headers: the connection is closed (within the 10 s header bound).
    let started = Instant::now();
    loris
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = loris.read_to_end(&mut rest);
    assert!(
        closed.is_ok() || started.elapsed() < Duration::from_secs(30),
        "a client that never finishes its headers keeps its connection: {closed:?}"
    );
    slow_admin
        .set_read_timeout(Some(Duration::from_secs(45)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow_admin.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// What a hostile HTTP client can send: JSON nested deeper than the parser goes, a flood of
/// headers, one header larger than the head buffer, and hundreds of connections left open
/// without a request. Each gets a 4xx in HTTP's own terms or a closed socket, and meanwhile
/// an ordinary publish is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_and_others_are_served() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let (_dir, server) = start(&[]);
    let idle: Vec<_> = (0..300)
        .map(|_| std::net::TcpStream::connect(&server.http).unwrap())
        .collect();

    // 100,000 levels of arrays in the payload: 400 naming the body, not a stack overflow.
    let deep = format!(
        r#"{{"event_type":"theboard.meeting.created","topic":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = request(
        &server.http,
        "POST",
        "/events/theboard.meeting.created",
        &[("Content-Type", "application/json")],
        deep.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["message"].as_str().unwrap().contains("recursion"),
        "{}",
        r.json()
    );

    let raw = |head: String| -> String {
        let mut s = std::net::TcpStream::connect(&server.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // The server may answer and close before reading it all.
        let _ = s.write_all(head.as_bytes());
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    // 1,000 headers, then one header of 1 MB: 431, as hyper counts and bounds them.
    let flood: String = (0..1000).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
    let answer = raw(format!("GET /health HTTP/1.1\r\nHost: x\r\n{flood}\r\n"));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let huge = "a".repeat(1024 * 1024);
    let answer = raw(format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n"
    ));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    let ok = post_json(
        &server.http,
        "/events/theboard.meeting.created",
        &meeting(),
        &[],
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    drop(idle);
}
