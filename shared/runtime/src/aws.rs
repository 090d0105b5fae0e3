//! The AWS SDK configuration every function builds its clients from, with timeouts that fit
//! the function's own deadline.
//!
//! Without them a stalled DynamoDB, SQS or Secrets Manager call waits until Lambda kills the
//! invocation, and SQS then delivers the whole batch again, work that had succeeded
//! included. With them a stalled call fails within [`AwsTimeouts::operation`] (retried inside
//! that bound after [`AwsTimeouts::attempt`]), the handler turns the failure into a retry of
//! that one message, and it still answers in time (`runtime::sqs_batch`).

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Time limits of every AWS call a process makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One attempt (the SDK retries a failed attempt while the operation has time).
    pub attempt: Duration,
    /// The whole call, retries included.
    pub operation: Duration,
}

impl AwsTimeouts {
    /// Limits for a Lambda function with this timeout (`template.yaml`): a call may take a
    /// fifteenth of it, between 3 and 10 seconds, with two attempts inside that. Every
    /// consumer keeps more than one such call's time back from its deadline to settle its
    /// messages, so a stalled call can never make it miss its answer. DynamoDB and SQS answer
    /// in milliseconds; these bounds only ever bite on a stall.
    pub fn for_function(function_timeout: Duration) -> Self {
        let operation =
            (function_timeout / 15).clamp(Duration::from_secs(3), Duration::from_secs(10));
        AwsTimeouts {
            connect: Duration::from_secs(1),
            attempt: operation / 2,
            operation,
        }
    }

    /// Generous limits for tools, the local run and the tests (long polls of up to 20 s must
    /// fit, and the emulator can be slow on a loaded machine).
    pub fn local() -> Self {
        AwsTimeouts {
            connect: Duration::from_secs(5),
            attempt: Duration::from_secs(25),
            operation: Duration::from_secs(60),
        }
    }

    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// The SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`) with
/// these timeouts. Build every AWS client from it.
pub async fn sdk_config(timeouts: AwsTimeouts) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts.timeout_config())
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn limits_follow_the_function_timeout() {
        let order_push = AwsTimeouts::for_function(Duration::from_secs(60));
        assert_eq!(order_push.operation, Duration::from_secs(4));
        assert_eq!(order_push.attempt, Duration::from_secs(2));
        let webhook = AwsTimeouts::for_function(Duration::from_secs(10));
        assert_eq!(webhook.operation, Duration::from_secs(3));
        let sync = AwsTimeouts::for_function(Duration::from_secs(900));
        assert_eq!(sync.operation, Duration::from_secs(10));
        for t in [order_push, webhook, sync] {
            assert!(t.attempt < t.operation && t.connect <= t.attempt, "{t:?}");
        }
    }

    /// An endpoint that accepts connections and never answers: a stalled AWS service.
    async fn stalled_endpoint() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        format!("http://{addr}")
    }

    async fn config(timeouts: AwsTimeouts) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .timeout_config(timeouts.timeout_config())
            .load()
            .await
    }

    #[tokio::test]
    async fn a_stalled_dynamodb_or_sqs_call_fails_within_its_operation_timeout() {
        let endpoint = stalled_endpoint().await;
        let timeouts = AwsTimeouts {
            connect: Duration::from_millis(500),
            attempt: Duration::from_millis(300),
            operation: Duration::from_millis(800),
        };
        let conf = config(timeouts).await;
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&conf)
                .endpoint_url(&endpoint)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&conf)
                .endpoint_url(&endpoint)
                .build(),
        );
        let started = Instant::now();
        let get = tokio::time::timeout(
            Duration::from_secs(20),
            ddb.get_item().table_name("t").send(),
        )
        .await
        .expect("the SDK gave up by itself");
        assert!(get.is_err());
        let send = tokio::time::timeout(
            Duration::from_secs(20),
            sqs.send_message()
                .queue_url(format!("{endpoint}/000000000000/q"))
                .message_body("x")
                .send(),
        )
        .await
        .expect("the SDK gave up by itself");
        assert!(send.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn no_function_builds_an_aws_client_without_these_timeouts() {
        // Every `aws_config` load in the deployed code goes through `sdk_config`.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut offenders = Vec::new();
        for dir in ["functions", "shared"] {
            let mut stack = vec![root.join(dir)];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        if !p.ends_with("target")
                            && !p.ends_with("tests")
                            && !p.ends_with("benches")
                        {
                            stack.push(p);
                        }
                    } else if p.extension().is_some_and(|x| x == "rs")
                        && !p.ends_with("runtime/src/aws.rs")
                    {
                        let text = std::fs::read_to_string(&p).unwrap_or_default();
                        if text.contains("load_defaults(") {
                            offenders.push(p.display().to_string());
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "AWS config without timeouts: {offenders:?}"
        );
    }
}
