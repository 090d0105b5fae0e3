//! The HTTP functions' edge (admin-api, webhook): an API Gateway HTTP API (payload 2.0)
//! request goes to the axum router through `lambda_http`'s own conversion (so requests and
//! answers are what `lambda_http::run` makes of them); any other event is refused as
//! `InvalidInput` instead of the runtime's deserialization error, whose `errorType` is a Rust
//! type name.

use super::{Invocation, InvocationError, NoSchedule};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_runtime::{service_fn, Context, LambdaEvent};
use serde_json::Value;

/// What an HTTP function is invoked with (named in the error for anything else).
pub const HTTP_ACCEPTS: &str = "an API Gateway HTTP API (payload 2.0) request";

/// One invocation of an HTTP function: the payload as API Gateway sends it, the answer as
/// API Gateway reads it (`statusCode`, `headers`, `body`, …).
pub async fn invoke_http(
    router: axum::Router,
    payload: Value,
    context: Context,
) -> Result<Value, InvocationError> {
    let request = match Invocation::<NoSchedule>::from_value(payload, HTTP_ACCEPTS)? {
        Invocation::Http(request) => *request,
        other => {
            return Err(InvocationError::invalid_input(format!(
                "the event is {}; this function handles {HTTP_ACCEPTS}",
                other.shape()
            )))
        }
    };
    let event = LambdaEvent::new(LambdaRequest::ApiGatewayV2(request), context);
    let answer = match lambda_http::Adapter::from(router).oneshot(event).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    };
    Ok(serde_json::to_value(answer)?)
}

/// Serves the router until the runtime stops.
pub async fn serve_http(router: axum::Router) -> Result<(), lambda_runtime::Error> {
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        invoke_http(router.clone(), event.payload, event.context)
            .await
            .inspect_err(|e| {
                tracing::error!(error_type = e.error_type(), error = %e, "invocation refused");
            })
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use serde_json::json;

    fn request(method: &str, path: &str, body: Option<&str>) -> Value {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": path,
                "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "t"},
                "requestId": "r-1", "stage": "$default"},
            "body": body, "isBase64Encoded": false
        })
    }

    fn router() -> axum::Router {
        axum::Router::new().route("/echo", post(|body: String| async move { body }))
    }

    #[tokio::test]
    async fn an_http_api_request_reaches_the_router_and_its_answer_comes_back() {
        let out = invoke_http(
            router(),
            request("POST", "/echo", Some("hello")),
            Context::default(),
        )
        .await
        .unwrap();
        assert_eq!(out["statusCode"], 200, "{out}");
        assert_eq!(out["body"], "hello", "{out}");
        let missing = invoke_http(router(), request("GET", "/nope", None), Context::default())
            .await
            .unwrap();
        assert_eq!(missing["statusCode"], 404, "{missing}");
    }

    #[tokio::test]
    async fn any_other_event_is_invalid_input() {
        for payload in [json!({"Records": []}), json!({"kind": "tick"}), json!(null)] {
            let err = invoke_http(router(), payload, Context::default())
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput");
            assert!(err.to_string().contains(HTTP_ACCEPTS), "{err}");
        }
    }
}
