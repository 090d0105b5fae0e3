//! What an AWS SDK failure becomes in a [`StoreError`]: a plain reason (which service, and
//! whether it timed out, could not be reached or refused the request with which error code).
//! The SDK's own text names ARNs, account ids and request ids; that detail is logged here for
//! operators and never travels further, because store errors end up in places merchants read
//! (`last_error`, order failures, run reports).

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// An error code as AWS sends it (`ThrottlingException`), safe to show.
fn plain_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// The plain reason for `e` from `service` (`DynamoDB`, `Secrets Manager`).
pub fn reason<E, R>(service: &str, e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::TimeoutError(_) => format!("{service} did not answer in time"),
        SdkError::DispatchFailure(_) => format!("{service} could not be reached"),
        SdkError::ResponseError(_) => format!("{service} sent an answer that could not be read"),
        SdkError::ConstructionFailure(_) => format!("the {service} request could not be built"),
        SdkError::ServiceError(_) => match e.code().filter(|c| plain_code(c)) {
            Some(code) => format!("{service} refused the request ({code})"),
            None => format!("{service} refused the request"),
        },
        _ => format!("{service} failed"),
    }
}

/// Logs the SDK's full text for operators and returns the plain reason.
pub fn logged<E, R>(service: &str, e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let reason = reason(service, e);
    tracing::warn!(service, reason = %reason, detail = %DisplayErrorContext(e), "AWS call failed");
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    pub(crate) const DENIED: &str = "User: arn:aws:sts::123456789012:assumed-role/shop-keycrm-dev-OrderPushRole/order-push is not authorized to perform: dynamodb:GetItem on resource: arn:aws:dynamodb:eu-central-1:123456789012:table/shop-keycrm-dev-ConnectorTable";

    #[test]
    fn the_reason_keeps_the_service_and_code_and_drops_arns_and_account_ids() {
        let e: SdkError<GetItemError, ()> = SdkError::service_error(
            GetItemError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message(DENIED)
                    .build(),
            ),
            (),
        );
        let r = reason("DynamoDB", &e);
        assert_eq!(r, "DynamoDB refused the request (AccessDeniedException)");
        let odd: SdkError<GetItemError, ()> = SdkError::service_error(
            GetItemError::generic(ErrorMetadata::builder().code("arn:aws:x 1").build()),
            (),
        );
        assert_eq!(reason("DynamoDB", &odd), "DynamoDB refused the request");
    }
}
