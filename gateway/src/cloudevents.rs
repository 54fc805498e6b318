//! CloudEvents 1.0 over HTTP: binary mode (`ce-*` headers, the body is the data) and
//! structured mode (`application/cloudevents+json`, the event is the body).

use axum::http::HeaderMap;
use serde_json::Value;

use crate::error::ApiError;

pub const STRUCTURED: &str = "application/cloudevents+json";

/// The attributes Bloodbank uses.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub correlation_id: Option<String>,
    pub data: Value,
}

/// The binary-mode event of a request, if it carries `ce-specversion`.
pub fn binary(headers: &HeaderMap, data: &Value) -> Result<Option<CloudEvent>, ApiError> {
    let Some(version) = headers.get("ce-specversion") else {
        return Ok(None);
    };
    check_version(version.to_str().unwrap_or(""))?;
    let attr = |name: &str| {
        headers
            .get(format!("ce-{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let required = |name: &str| {
        attr(name).ok_or_else(|| {
            ApiError::BadRequest(format!("CloudEvents header ce-{name} is required"))
        })
    };
    Ok(Some(CloudEvent {
        id: required("id")?,
        source: required("source")?,
        event_type: required("type")?,
        correlation_id: attr("correlationid"),
        data: data.clone(),
    }))
}

/// A structured-mode event (the whole body).
pub fn structured(body: &Value) -> Result<CloudEvent, ApiError> {
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let required = |name: &str| {
        text(name).ok_or_else(|| {
            ApiError::BadRequest(format!("CloudEvents attribute {name:?} is required"))
        })
    };
    check_version(&required("specversion")?)?;
    if let Some(kind) = text("datacontenttype").filter(|k| !k.starts_with("application/json")) {
        return Err(ApiError::BadRequest(format!(
            "datacontenttype {kind:?}: only application/json data is accepted"
        )));
    }
    Ok(CloudEvent {
        id: required("id")?,
        source: required("source")?,
        event_type: required("type")?,
        correlation_id: text("correlationid"),
        data: body.get("data").cloned().ok_or_else(|| {
            ApiError::BadRequest("CloudEvents attribute \"data\" is required".into())
        })?,
    })
}

fn check_version(version: &str) -> Result<(), ApiError> {
    match version {
        "1.0" => Ok(()),
        other => Err(ApiError::BadRequest(format!(
            "CloudEvents specversion {other:?} is not supported (1.0 is)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_mode_reads_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(binary(&h, &json!({})).unwrap(), None);
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-id", "42".parse().unwrap());
        h.insert("ce-source", "/board".parse().unwrap());
        assert!(binary(&h, &json!({})).is_err(), "ce-type missing");
        h.insert("ce-type", "theboard.meeting.created".parse().unwrap());
        let ce = binary(&h, &json!({"a": 1})).unwrap().unwrap();
        assert_eq!(
            (ce.id.as_str(), ce.event_type.as_str(), ce.data.clone()),
            ("42", "theboard.meeting.created", json!({"a": 1}))
        );
    }

    #[test]
    fn structured_mode_reads_the_body() {
        let ce = structured(&json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b.c", "data": {"x": 1}, "correlationid": "c"})).unwrap();
        assert_eq!(ce.correlation_id.as_deref(), Some("c"));
        assert!(structured(
            &json!({"specversion": "0.3", "id": "1", "source": "s", "type": "a.b.c", "data": {}})
        )
        .is_err());
        assert!(structured(
            &json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a.b.c"})
        )
        .is_err());
    }
}
