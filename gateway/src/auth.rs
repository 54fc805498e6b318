//! Who is calling: `X-API-Key` keys from the config, each with the event-type patterns it may
//! publish. With no keys configured the API answers loopback callers only, unless anonymous
//! access is allowed explicitly.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use bloodbank_broker::topic::reference_match;

use crate::error::ApiError;
use crate::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Becomes the `source` of what the key publishes.
    pub name: String,
    pub key: String,
    /// Topic patterns (`theboard.#`) of the event types the key may publish.
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub keys: Vec<ApiKey>,
    pub allow_anonymous: bool,
}

/// An identified caller. As an extractor it answers 401/403 before the handler runs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub source: String,
    /// The caller's address (the source of anonymous events).
    pub peer: SocketAddr,
    key: Option<ApiKey>,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied()
        else {
            return Err(ApiError::Internal("the peer's address is unknown".into()));
        };
        state.auth.identify(&parts.headers, peer)
    }
}

impl Auth {
    pub fn identify(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, ApiError> {
        let presented = headers.get("x-api-key").map(|v| v.to_str().unwrap_or(""));
        match (presented, self.keys.is_empty()) {
            (Some(given), false) => match self.keys.iter().find(|k| bloodbank_broker::same_secret(k.key.as_bytes(), given.as_bytes())) {
                Some(key) => Ok(Caller { source: key.name.clone(), peer, key: Some(key.clone()) }),
                None => Err(ApiError::Unauthorized("the X-API-Key is not one of the configured keys".into())),
            },
            (None, false) if !self.allow_anonymous => Err(ApiError::Unauthorized("an X-API-Key header is required".into())),
            _ if self.keys.is_empty() && !self.allow_anonymous && !peer.ip().is_loopback() => Err(ApiError::Unauthorized(
                "no API keys are configured, so only loopback callers are served (see --allow-anonymous)".into(),
            )),
            _ => Ok(Caller { source: format!("http/{}", peer.ip()), peer, key: None }),
        }
    }
}

impl Caller {
    pub fn may_publish(&self, event_type: &str) -> Result<(), ApiError> {
        match &self.key {
            Some(key) if !key.patterns.iter().any(|p| reference_match(p, event_type)) => {
                Err(ApiError::Forbidden(format!(
                    "key {:?} may publish {} only, not {event_type:?}",
                    key.name,
                    key.patterns.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(keys: bool, anonymous: bool) -> Auth {
        let keys = if keys {
            vec![ApiKey {
                name: "board".into(),
                key: "s3cret".into(),
                patterns: vec!["theboard.#".into()],
            }]
        } else {
            vec![]
        };
        Auth {
            keys,
            allow_anonymous: anonymous,
        }
    }

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert("x-api-key", k.parse().unwrap());
        }
        h
    }

    const LOCAL: &str = "127.0.0.1:9";
    const REMOTE: &str = "10.0.0.7:9";

    #[test]
    fn without_keys_only_loopback_unless_anonymous() {
        assert!(auth(false, false)
            .identify(&headers(None), LOCAL.parse().unwrap())
            .is_ok());
        assert!(matches!(
            auth(false, false).identify(&headers(None), REMOTE.parse().unwrap()),
            Err(ApiError::Unauthorized(_))
        ));
        let caller = auth(false, true)
            .identify(&headers(None), REMOTE.parse().unwrap())
            .unwrap();
        assert_eq!(caller.source, "http/10.0.0.7");
    }

    #[test]
    fn keys_name_the_source_and_limit_event_types() {
        let a = auth(true, false);
        assert!(matches!(
            a.identify(&headers(None), LOCAL.parse().unwrap()),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            a.identify(&headers(Some("wrong")), LOCAL.parse().unwrap()),
            Err(ApiError::Unauthorized(_))
        ));
        let caller = a
            .identify(&headers(Some("s3cret")), REMOTE.parse().unwrap())
            .unwrap();
        assert_eq!(caller.source, "board");
        assert!(caller.may_publish("theboard.meeting.created").is_ok());
        assert!(matches!(
            caller.may_publish("calendar.event.created"),
            Err(ApiError::Forbidden(_))
        ));
    }
}
