//! HTTP basic authentication against the broker's users, with RabbitMQ's tag rules: a user
//! needs one of the management tags to use the API; `administrator` may do everything,
//! `monitoring` may see everything, `management` and `policymaker` see the vhosts they have
//! permissions in.

use crate::error::ApiError;
use crate::App;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

const MANAGEMENT_TAGS: &[&str] = &["administrator", "monitoring", "policymaker", "management"];

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub tags: Vec<String>,
}

impl Caller {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    /// Sees every vhost's objects.
    pub fn sees_all(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    /// 401 unless the caller is an administrator (users, vhosts, permissions, definitions).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.is_admin() {
            true => Ok(()),
            false => Err(ApiError::Unauthorized("Not administrator user".into())),
        }
    }

    /// 401 unless the caller may see `vhost`.
    pub fn require_vhost(&self, app: &App, vhost: &str) -> Result<(), ApiError> {
        match self.sees_all() || app.admin.may_access(&self.user, vhost) {
            true => Ok(()),
            false => Err(ApiError::Unauthorized(
                "User not authorised to access virtual host".into(),
            )),
        }
    }

    /// Whether the caller may see objects of `vhost` in a listing.
    pub fn sees(&self, app: &App, vhost: &str) -> bool {
        self.sees_all() || app.admin.may_access(&self.user, vhost)
    }
}

/// `user:password` from an `Authorization: Basic` header.
fn credentials(parts: &Parts) -> Option<(String, String)> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let encoded = header.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Some((user, password)) = credentials(parts) else {
            return Err(ApiError::NoCredentials("Not_Authorized".into()));
        };
        let from = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let Some(tags) = app.admin.login(&user, &password, from).await else {
            return Err(ApiError::LoginFailed);
        };
        if !tags.iter().any(|t| MANAGEMENT_TAGS.contains(&t.as_str())) {
            return Err(ApiError::Unauthorized("Not management user".into()));
        }
        Ok(Caller { user, tags })
    }
}
