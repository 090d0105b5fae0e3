//! What goes wrong for an operator, in words that say what to do.

use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The command line does not say something usable (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// AWS refused or could not be reached: credentials, region, permissions, endpoint.
    #[error("{0}")]
    Aws(String),
    /// What was asked for does not exist (a table, a queue, a shop, an order).
    #[error("{0}")]
    NotFound(String),
    /// The deployment refused or failed the operation.
    #[error("{0}")]
    Failed(String),
}

impl OpsError {
    pub fn exit_code(&self) -> i32 {
        match self {
            OpsError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl From<StoreError> for OpsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(text) => classify_aws(&text, "the table"),
            StoreError::NotFound(what) => OpsError::NotFound(format!("not found: {what}")),
            other => OpsError::Failed(other.to_string()),
        }
    }
}

impl From<queue::QueueError> for OpsError {
    fn from(e: queue::QueueError) -> Self {
        match e {
            queue::QueueError::Unavailable(text) => classify_aws(&text, "the queue"),
            queue::QueueError::NoSuchQueue { .. } => {
                OpsError::NotFound("the queue does not exist (check its URL)".into())
            }
            other => OpsError::Failed(other.to_string()),
        }
    }
}

/// Turns an AWS SDK error text into an error that says what to check. `what` names the
/// resource the call was about (for not-found errors).
pub fn classify_aws(text: &str, what: &str) -> OpsError {
    let t = text.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| t.contains(&n.to_ascii_lowercase()));
    if any(&[
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "security token included in the request is invalid",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "AuthFailure",
    ]) {
        return OpsError::Aws(format!(
            "AWS rejected the credentials ({}). Check AWS_PROFILE / --profile, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that a session token has not expired.",
            short(text)
        ));
    }
    if any(&[
        "no credentials",
        "credentials provider",
        "failed to load credentials",
        "CredentialsNotLoaded",
        "the credential provider was not enabled",
        "no providers in chain",
    ]) {
        return OpsError::Aws(
            "no AWS credentials found. Set AWS_PROFILE (or --profile) to a profile of the \
             deployment's account, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
                .into(),
        );
    }
    if any(&[
        "ProfileFile",
        "profile file",
        "could not find profile",
        "profile `",
    ]) {
        return OpsError::Aws(format!(
            "the AWS profile could not be used ({}). Check --profile / AWS_PROFILE against ~/.aws/config.",
            short(text)
        ));
    }
    if any(&["AccessDenied", "not authorized to perform"]) {
        return OpsError::Aws(format!(
            "AWS denied the call ({}). The operator's role needs the permissions listed in docs/operations.md.",
            short(text)
        ));
    }
    if any(&[
        "ResourceNotFoundException",
        "NonExistentQueue",
        "QueueDoesNotExist",
    ]) {
        return OpsError::NotFound(format!(
            "{what} does not exist in this account and region ({})",
            short(text)
        ));
    }
    if any(&["region"])
        && any(&[
            "no region",
            "region is not",
            "missing region",
            "invalid region",
        ])
    {
        return OpsError::Aws(
            "no AWS region: set AWS_REGION or --region (the deployment's region)".into(),
        );
    }
    if any(&[
        "dispatch failure",
        "connection refused",
        "timed out",
        "dns error",
        "io error",
    ]) {
        return OpsError::Aws(format!(
            "AWS could not be reached ({}). Check the network, AWS_REGION and AWS_ENDPOINT_URL.",
            short(text)
        ));
    }
    OpsError::Failed(short(text))
}

/// The first line of an SDK error, bounded: enough to recognise, never a request body.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_texts_become_errors_that_say_what_to_check() {
        let rejected = classify_aws(
            "service error: unhandled error (InvalidClientTokenId): The security token included in the request is invalid.",
            "the table",
        );
        assert!(matches!(&rejected, OpsError::Aws(m) if m.contains("rejected the credentials")));
        let none = classify_aws(
            "dispatch failure: other: the credential provider was not enabled",
            "x",
        );
        assert!(
            matches!(&none, OpsError::Aws(m) if m.contains("no AWS credentials")),
            "{none}"
        );
        let missing = classify_aws(
            "service error: ResourceNotFoundException: Requested resource not found",
            "table `t`",
        );
        assert!(
            matches!(&missing, OpsError::NotFound(m) if m.contains("table `t` does not exist"))
        );
        let denied = classify_aws("AccessDeniedException: User is not authorized", "x");
        assert!(matches!(denied, OpsError::Aws(_)));
        assert_eq!(OpsError::Usage("x".into()).exit_code(), 2);
        assert_eq!(OpsError::Failed("x".into()).exit_code(), 1);
    }
}
