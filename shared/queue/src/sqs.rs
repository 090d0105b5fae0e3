//! The SQS adapter.

use crate::{Message, Outgoing, Queue, QueueError};
use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
    name: String,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// Maps an SDK error. The SDK's text names queue URLs and ARNs (with the account id); it is
/// logged for operators, and the error carries a plain reason, because queue errors can end
/// up in messages merchants read.
fn sdk_err<E>(
    e: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
    let text = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
    if text.contains("NonExistentQueue") || text.contains("QueueDoesNotExist") {
        return QueueError::NoSuchQueue {
            queue: String::new(),
        };
    }
    if text.contains("ReceiptHandleIsInvalid") || text.contains("MessageNotInflight") {
        return QueueError::InvalidReceipt;
    }
    let reason = match &e {
        SdkError::TimeoutError(_) => "SQS did not answer in time".to_string(),
        SdkError::DispatchFailure(_) => "SQS could not be reached".to_string(),
        SdkError::ServiceError(_) => match e.code().filter(|c| {
            c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        }) {
            Some(code) => format!("SQS refused the request ({code})"),
            None => "SQS refused the request".to_string(),
        },
        _ => "SQS failed".to_string(),
    };
    tracing::warn!(service = "SQS", reason = %reason, detail = %text, "AWS call failed");
    QueueError::Unavailable(reason)
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        SqsQueue { client, url, name }
    }

    /// A client configured from the environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn client_from_env() -> Client {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // Tools, the local run and the tests; the functions build their clients from
            // `runtime::aws::sdk_config` with limits that fit their deadline.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .operation_attempt_timeout(std::time::Duration::from_secs(25))
                    .operation_timeout(std::time::Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        Client::new(&conf)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates (or finds) a standard queue, optionally with a redrive policy. For tests, the
    /// local runner on the emulator, and tooling; production queues come from the template.
    pub async fn create(
        client: &Client,
        name: &str,
        redrive_to: Option<(&SqsQueue, u32)>,
    ) -> Result<SqsQueue, QueueError> {
        let mut req = client.create_queue().queue_name(name);
        if let Some((dlq, max)) = redrive_to {
            let arn = dlq.arn().await?;
            req = req.attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max}"}}"#),
            );
        }
        let out = req.send().await.map_err(sdk_err)?;
        let url = out
            .queue_url
            .ok_or_else(|| unavailable("CreateQueue returned no URL"))?;
        Ok(SqsQueue::new(client.clone(), url))
    }

    pub async fn arn(&self) -> Result<String, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sdk_err)?;
        out.attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| unavailable("queue has no ARN"))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, msg: Outgoing) -> Result<String, QueueError> {
        let mut attrs = HashMap::new();
        for (k, v) in msg.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(unavailable)?;
            attrs.insert(k, value);
        }
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(msg.body)
            .delay_seconds(msg.delay.as_secs().min(900) as i32)
            .set_message_attributes((!attrs.is_empty()).then_some(attrs))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let attributes = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                    .collect();
                Message {
                    id: m.message_id.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receipt: m.receipt_handle.unwrap_or_default(),
                    receive_count,
                    attributes,
                }
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn approximate_len(&self) -> Result<usize, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(sdk_err)?;
        let attrs = out.attributes.unwrap_or_default();
        Ok(attrs.values().filter_map(|v| v.parse::<usize>().ok()).sum())
    }
}
