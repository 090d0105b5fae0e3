//! The AWS SDK configuration of tools, the local run and the tests (region, credentials and
//! `AWS_ENDPOINT_URL` from the environment). The functions build their clients from
//! `runtime::aws::sdk_config` instead, with limits that fit their deadline.

use std::time::Duration;

/// Loads the configuration once per client: generous limits, since nothing here races a
/// Lambda deadline.
pub async fn from_env() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(25))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}
