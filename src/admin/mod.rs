//! The admin listener: `/metrics` (Prometheus), `/status` (JSON), `/healthz` and `/readyz`.

pub mod metrics;
pub mod status;

use crate::upstream::Pool;
use async_trait::async_trait;
use http::{Response, StatusCode};
use metrics::Metrics;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub pools: Vec<Arc<Pool>>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        match path {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            "/status" => {
                let status = status::snapshot(&self.pools);
                match serde_json::to_vec_pretty(&status) {
                    Ok(body) => reply(StatusCode::OK, "application/json", body),
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        e.to_string().into_bytes(),
                    ),
                }
            }
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let empty: Vec<&str> = self
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
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found; try /status, /metrics, /healthz, /readyz\n".to_vec(),
            ),
        }
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
