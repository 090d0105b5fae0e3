//! HTTP functions (admin API, webhook): one invocation per request. The layer wraps every
//! request of a router in [`Emitter::run`], so whatever the handlers record is flushed when
//! the answer is ready, on Lambda and in the local run alike.

use super::{count, Emitter, Metric};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::Router;

/// The answer's class (`2xx`, `4xx`, `5xx`, ...), a low-cardinality label.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// `router` with every request run as one metrics invocation of `emitter`; with
/// `by_status`, each answer is also counted in that metric by its class.
pub fn layer(router: Router, emitter: Emitter, by_status: Option<&'static Metric>) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let emitter = emitter.clone();
        async move {
            emitter
                .run(async move {
                    let resp = next.run(req).await;
                    if let Some(m) = by_status {
                        count(m, &[status_class(resp.status().as_u16())], 1);
                    }
                    resp
                })
                .await
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalog::{Function, ADMIN_REQUESTS, WEBHOOKS_ACCEPTED};
    use crate::metrics::Sink;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn each_request_is_one_flush_with_its_answer_class() {
        let (sink, lines) = Sink::memory();
        let app = Router::new()
            .route(
                "/ok",
                get(|| async {
                    count(&WEBHOOKS_ACCEPTED, &[], 1);
                    "ok"
                }),
            )
            .route("/bad", get(|| async { StatusCode::UNPROCESSABLE_ENTITY }));
        let app = layer(
            app,
            Emitter::new(Function::AdminApi).with_sink(sink),
            Some(&ADMIN_REQUESTS),
        );
        for path in ["/ok", "/bad"] {
            let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let docs = lines.documents();
        // Two requests, two flushes: the handler's own count and the answer class of each.
        assert_eq!(docs.len(), 3, "{docs:#?}");
        assert!(docs.iter().any(|d| d["WebhooksAccepted"] == 1.0));
        assert!(docs
            .iter()
            .any(|d| d["outcome"] == "2xx" && d["AdminRequests"] == 1.0));
        assert!(docs
            .iter()
            .any(|d| d["outcome"] == "4xx" && d["AdminRequests"] == 1.0));
        assert_eq!(status_class(503), "5xx");
    }
}
