//! The admin listener: `/` (status page), `/metrics` (Prometheus), `/status` (JSON), `/healthz`,
//! `/readyz`, and `POST /reload`; with `expose: metrics`, only `/metrics`, `/healthz` and
//! `/readyz` (an exporter on an open address gives out neither the gateway's state nor its
//! reload).

pub mod page;
pub mod status;

use crate::config::model::AdminExpose;
use crate::metrics::Metrics;
use crate::upstream::routing::Routing;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// What `POST /reload` does: re-reads the configuration and swaps it in, or says why not.
pub trait Reload: Send + Sync + 'static {
    /// A one-line summary of what changed, or every error found (nothing applied).
    fn reload(&self) -> Result<String, Vec<String>>;
}

pub struct AdminApp {
    /// Credentials for everything but `/healthz` and `/readyz` (which orchestrators probe).
    pub auth: Option<crate::config::model::Auth>,
    /// What the listener serves.
    pub expose: AdminExpose,
    pub routing: Arc<ArcSwap<Routing>>,
    pub metrics: Arc<Metrics>,
    pub reloader: Arc<dyn Reload>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    /// What `expose` and the credentials let through, then the endpoint by method and path.
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let authorization = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION);
        if let Some(refusal) = self.gate(&path, authorization) {
            return refusal;
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/") => self.page(),
            ("GET", "/metrics") => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            ("GET", "/status") => self.status(),
            ("GET", "/healthz") => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            ("GET", "/readyz") => self.readiness(),
            ("POST", "/reload") => self.reload().await,
            (_, "/metrics" | "/status" | "/healthz" | "/readyz" | "/reload") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found; try /status, /metrics, /healthz, /readyz, POST /reload\n".to_vec(),
            ),
        }
    }
}

impl AdminApp {
    /// The refusal of a request for `path` this listener does not serve (`expose: metrics`) or
    /// whose `authorization` it does not accept; `None` lets it through. `/healthz` and `/readyz`
    /// need no credentials: orchestrators probe them.
    fn gate(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Option<Response<Vec<u8>>> {
        if !serves(self.expose, path) {
            return Some(reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found; this admin listener serves /metrics, /healthz and /readyz only (admin.expose: metrics)\n".to_vec(),
            ));
        }
        let auth = self.auth.as_ref()?;
        let open = matches!(path, "/healthz" | "/readyz");
        if open || auth.admits(authorization) {
            return None;
        }
        let mut response = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            b"authentication required\n".to_vec(),
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(auth.challenge),
        );
        Some(response)
    }

    /// `GET /`: the status page.
    fn page(&self) -> Response<Vec<u8>> {
        let routing = self.routing.load();
        let page = page::render(&status::snapshot(&routing.pools, &self.metrics.events));
        reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page.into_bytes(),
        )
    }

    /// `GET /status`: the same snapshot as JSON.
    fn status(&self) -> Response<Vec<u8>> {
        let routing = self.routing.load();
        let status = status::snapshot(&routing.pools, &self.metrics.events);
        match serde_json::to_vec_pretty(&status) {
            Ok(body) => reply(StatusCode::OK, "application/json", body),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string().into_bytes(),
            ),
        }
    }

    /// `GET /readyz`: ready while every pool has a backend to send traffic to; else 503 naming
    /// the pools without one.
    fn readiness(&self) -> Response<Vec<u8>> {
        let routing = self.routing.load();
        let empty: Vec<&str> = routing
            .pools
            .iter()
            .filter(|p| p.active().is_none())
            .map(|p| p.name())
            .collect();
        if empty.is_empty() {
            reply(StatusCode::OK, "text/plain", b"ready\n".to_vec())
        } else {
            let body = format!("no healthy backend in: {}\n", empty.join(", "));
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                body.into_bytes(),
            )
        }
    }

    /// `POST /reload`: re-reads the configuration and says what changed or every error found.
    async fn reload(&self) -> Response<Vec<u8>> {
        // Reading and validating the file is quick, blocking work; keep it off the runtime.
        let reloader = self.reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || reloader.reload())
            .await
            .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]));
        let (status, body) = match outcome {
            Ok(summary) => (
                StatusCode::OK,
                serde_json::json!({ "reloaded": true, "summary": summary }),
            ),
            Err(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({ "reloaded": false, "errors": errors }),
            ),
        };
        reply(status, "application/json", body.to_string().into_bytes())
    }
}

/// Whether a listener that exposes `expose` serves `path`.
fn serves(expose: AdminExpose, path: &str) -> bool {
    match expose {
        AdminExpose::All => true,
        AdminExpose::Metrics => matches!(path, "/metrics" | "/healthz" | "/readyz"),
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metrics_listener_serves_metrics_and_health_only() {
        for path in ["/metrics", "/healthz", "/readyz"] {
            assert!(serves(AdminExpose::Metrics, path), "{path}");
        }
        for path in ["/", "/status", "/reload", "/metrics/", "/nope"] {
            assert!(!serves(AdminExpose::Metrics, path), "{path}");
            assert!(serves(AdminExpose::All, path), "{path}");
        }
    }
}
