//! `GET /openapi.json`: the OpenAPI 3.1 document, made from the same table of operations the
//! router is built from, so every route is documented and nothing documented is missing.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestBody {
    None,
    /// `application/json` with this schema (a `#/components/schemas` name, or "object").
    Json(&'static str),
    /// A CloudEvent: structured JSON or binary with `ce-*` headers.
    CloudEvent,
}

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub method: Method,
    pub path: &'static str,
    pub id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub body: RequestBody,
    /// The schema of the 200 response (a component name), or "text" for plain text.
    pub ok: &'static str,
    pub errors: &'static [u16],
}

pub(crate) fn document(ops: &[Op]) -> Value {
    let mut paths = Map::new();
    for prefix in ["", "/v1"] {
        for op in ops {
            let path = format!("{prefix}{}", op.path);
            let method = match op.method {
                Method::Get => "get",
                Method::Post => "post",
                Method::Delete => "delete",
            };
            let entry = paths.entry(path).or_insert_with(|| json!({}));
            entry[method] = operation(op, prefix);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Bloodbank Event Publisher API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publishes events to the 33GOD event bus: each payload is checked against its contract, wrapped in an envelope and published to the `events` topic exchange; answered once the broker has it on disk. Every path is also served under /v1."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
        }
    })
}

fn operation(op: &Op, prefix: &str) -> Value {
    let mut parameters = Vec::new();
    for segment in op.path.split('/').filter(|s| s.starts_with('{')) {
        let name = segment.trim_matches(|c| c == '{' || c == '}');
        let schema = match name {
            "message_id" | "id" => json!({"type": "string", "format": "uuid"}),
            _ => json!({"type": "string", "pattern": "^[a-z0-9]+\\.[a-z0-9._]+$"}),
        };
        parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
    }
    if op.id == "getCorrelationChain" {
        parameters.push(json!({"name": "depth", "in": "query", "required": false, "schema": {"type": "string", "enum": ["all"]}}));
    }
    if op.id == "streamEvents" {
        parameters.push(json!({"name": "pattern", "in": "query", "required": false, "schema": {"type": "string", "default": "#"}}));
    }
    if op.method == Method::Post && op.tag == "Events" {
        for (name, description) in [
            (
                "X-Correlation-ID",
                "UUID of the event this one follows from",
            ),
            (
                "Idempotency-Key",
                "A repeat within the dedup window returns the first envelope, not published again",
            ),
            (
                "traceparent",
                "W3C trace context, carried into the AMQP headers",
            ),
        ] {
            parameters.push(json!({"name": name, "in": "header", "required": false, "description": description, "schema": {"type": "string"}}));
        }
    }
    let mut responses = Map::new();
    let ok = match op.ok {
        "websocket" => json!({"description": "Switching Protocols: one JSON text frame per event"}),
        "text" => {
            json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        name => {
            json!({"description": "OK", "content": {"application/json": {"schema": reference(name)}}})
        }
    };
    let status = match (op.ok, op.method) {
        ("websocket", _) => "101",
        ("none", _) => "204",
        (_, Method::Post) if op.tag == "Webhooks" => "201",
        _ => "200",
    };
    let ok = match op.ok {
        "none" => json!({"description": "Done"}),
        _ => ok,
    };
    responses.insert(status.into(), ok);
    for code in op.errors {
        responses.insert(
            code.to_string(),
            json!({"description": reason(*code), "content": {"application/json": {"schema": reference("Error")}}}),
        );
    }
    let mut out = json!({
        "operationId": format!("{}{}", op.id, if prefix.is_empty() { "" } else { "V1" }),
        "tags": [op.tag],
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
    });
    match op.body {
        RequestBody::None => {}
        RequestBody::Json(schema) => {
            out["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": reference(schema)}}});
        }
        RequestBody::CloudEvent => {
            out["requestBody"] = json!({"required": true, "content": {
                "application/cloudevents+json": {"schema": reference("CloudEvent")},
                "application/json": {"schema": {"type": "object"}}
            }});
        }
    }
    out
}

fn reference(name: &str) -> Value {
    match name {
        "object" => json!({"type": "object"}),
        name => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => {
            "Malformed request, or the payload does not satisfy its contract (details.violations)"
        }
        401 => "No or unknown API key",
        403 => "The API key may not publish this event type (or hold more subscriptions, or target this URL)",
        404 => "Unknown event type, message or route",
        413 => "Body too large",
        415 => "Content type not accepted",
        503 => "The broker or a store is not available now (Retry-After)",
        _ => "Error",
    }
}

fn schemas() -> Value {
    json!({
        "EventEnvelope": {
            "type": "object",
            "required": ["id", "event_type", "timestamp", "source", "data"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "event_type": {"type": "string", "pattern": "^[a-z0-9]+\\.[a-z0-9._]+$"},
                "timestamp": {"type": "string", "format": "date-time"},
                "source": {"type": "string"},
                "data": {},
                "correlation_id": {"type": ["string", "null"], "format": "uuid"},
                "schema_version": {"type": ["integer", "null"]}
            }
        },
        "CalendarEvent": {
            "description": "The contract calendar.event.created v1 (schemas/calendar/event.created.v1.json)",
            "type": "object",
            "required": ["summary", "start_time", "end_time"],
            "additionalProperties": false,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "start_time": {"type": "string", "format": "date-time"},
                "end_time": {"type": "string", "format": "date-time"},
                "location": {"type": ["string", "null"], "maxLength": 1024}
            }
        },
        "V02Envelope": {
            "type": "object",
            "required": ["event_type", "payload"],
            "properties": {
                "event_id": {"type": "string", "format": "uuid"},
                "event_type": {"type": "string"},
                "timestamp": {"type": "string"},
                "version": {"type": "string"},
                "source": {"type": "object"},
                "correlation_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "agent_context": {},
                "payload": {}
            }
        },
        "SubscriptionRequest": {
            "type": "object",
            "required": ["pattern", "url", "secret"],
            "additionalProperties": false,
            "properties": {
                "pattern": {"type": "string", "minLength": 1, "maxLength": 255, "description": "Topic pattern over event types (theboard.meeting.*, #)"},
                "url": {"type": "string", "pattern": "^http://", "description": "Receives each matching envelope as a POST"},
                "secret": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key of the HMAC-SHA256 of the body in X-Bloodbank-Signature (sha256=<hex>)"},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                "backoff_ms": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"type": "integer", "minimum": 10, "maximum": 86400000}}
            }
        },
        "Subscription": {
            "type": "object",
            "required": ["id", "pattern", "url", "max_attempts", "backoff_ms", "created_at", "queue", "dead_letter_queue"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "pattern": {"type": "string"},
                "url": {"type": "string"},
                "max_attempts": {"type": "integer"},
                "backoff_ms": {"type": "array", "items": {"type": "integer"}},
                "created_at": {"type": "string", "format": "date-time"},
                "queue": {"type": "string"},
                "dead_letter_queue": {"type": "string"},
                "delivered": {"type": "integer"},
                "failed_attempts": {"type": "integer"},
                "dead_lettered": {"type": "integer"},
                "last_error": {"type": ["string", "null"]}
            }
        },
        "Subscriptions": {"type": "array", "items": {"$ref": "#/components/schemas/Subscription"}},
        "CloudEvent": {
            "type": "object",
            "required": ["specversion", "id", "source", "type", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string"},
                "source": {"type": "string"},
                "type": {"type": "string"},
                "datacontenttype": {"type": "string"},
                "correlationid": {"type": "string"},
                "data": {}
            }
        },
        "Health": {
            "type": "object",
            "required": ["status", "timestamp"],
            "properties": {
                "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                "broker": {"type": "string"},
                "rabbitmq": {"type": "string", "enum": ["connected", "disconnected"]},
                "correlation": {"type": "string"},
                "redis": {"type": "string", "enum": ["connected", "disconnected", "not_configured"]},
                "schemas": {
                    "type": "object",
                    "description": "Where the event contracts come from (built-in, or the --schemas directory) and how many event types they cover",
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded"]},
                        "source": {"type": "string"},
                        "event_types": {"type": "integer", "minimum": 0},
                        "problem": {"type": ["string", "null"]}
                    }
                },
                "timestamp": {"type": "string", "format": "date-time"}
            }
        },
        "CorrelationChain": {
            "type": "object",
            "required": ["message_id", "event_type", "timestamp", "source", "children", "depth", "root_id"],
            "properties": {
                "message_id": {"type": "string", "format": "uuid"},
                "event_type": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "source": {"type": "string"},
                "parent_id": {"type": ["string", "null"], "format": "uuid"},
                "children": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "depth": {"type": "integer", "minimum": 0},
                "root_id": {"type": "string", "format": "uuid"},
                "metadata": {"type": "object"},
                "tree": {"type": "object"}
            }
        },
        "Catalog": {"type": "object", "required": ["events"], "properties": {"events": {"type": "array"}}},
        "SchemaVersions": {"type": "object", "required": ["event_type", "versions"], "properties": {"event_type": {"type": "string"}, "versions": {"type": "array"}}},
        "OpenApi": {"type": "object"},
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"}
            }
        }
    })
}
