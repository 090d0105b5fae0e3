//! The Lambda's wiring from its environment: DynamoDB (ledger, journal, rate gate), SQS (the
//! status queue for visibility changes, the dead-letter queue), the shop's order API and the
//! KeyCRM reads that verify an order before adopting it.

use crate::Transport;
use crate::{handle_sqs_event, queue_url_from_arn, KeycrmOrigins, RetryPolicy, StatusApplier};
use aws_lambda_events::event::sqs::SqsEvent;
use keycrm::{ClientConfig, RateBudget};
use queue::{Queue, SqsQueue};
use runtime::config::env_parse;
use runtime::lambda::SdkConfig;
use runtime::lambda::{metered, Deadline, InitError, Invocation, InvocationError, NoSchedule};
use runtime::metrics::{Emitter, Function, MeteredOrders};
use runtime::{env_opt, env_req, KeycrmClients};
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable};

/// The function's timeout (template.yaml); its AWS calls' timeouts follow from it, with the
/// consumer's settle margin.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the function is invoked with (named in the error for anything else).
pub const ACCEPTS: &str = "an SQS batch of status updates";

/// A queue by URL (the status queue named by a batch's ARN).
pub type QueueAt = Box<dyn Fn(String) -> Arc<dyn Queue> + Send + Sync>;

/// The handler, its queues and its metrics, ready to serve.
pub struct App {
    pub applier: StatusApplier,
    /// The status queue when the environment names it (`STATUS_QUEUE_URL`); otherwise it is
    /// found from each batch's event source ARN.
    pub source_url: Option<String>,
    pub queue_at: QueueAt,
    pub dead_letter: Option<Arc<dyn Queue>>,
    pub metrics: Emitter,
}

impl App {
    pub async fn from_env(aws: &SdkConfig) -> Result<App, InitError> {
        let table_name = env_req("TABLE_NAME")?;
        let shop_base_url = env_req("SHOP_API_BASE_URL")?;
        let policy = RetryPolicy {
            base: Duration::from_secs(env_parse("STATUS_RETRY_BASE_SECS", 30u64)?),
            cap: Duration::from_secs(env_parse("STATUS_RETRY_CAP_SECS", 900u64)?),
            // Must equal the status queue's redrive maxReceiveCount (template.yaml).
            max_receives: env_parse("STATUS_MAX_RECEIVES", 10u32)?,
        };
        let table = Arc::new(DynamoTable::new(
            aws_sdk_dynamodb::Client::new(aws),
            table_name,
        ));
        let sqs = aws_sdk_sqs::Client::new(aws);
        let shop_token = runtime::shop_api_token_from_env(aws).await?;
        // Metered: shop API failures show in the metrics. The timeout keeps a batch of
        // concurrent calls well inside the function's 30 s.
        let shop =
            shop::HttpShop::with_timeout(&shop_base_url, shop_token, Duration::from_secs(10))
                .map_err(|e| InitError::invalid("SHOP_API_BASE_URL", e))?;
        let shop: Arc<dyn shop::ShopOrders> = Arc::new(MeteredOrders(Arc::new(shop)));

        // KeyCRM is read only to verify an order before adopting it into the ledger; the
        // reads spend the connection's per-key budget through the shared gate.
        let gate = Arc::new(DynamoRateGate::new((*table).clone(), RateBudget::keycrm()));
        let clients = Arc::new(KeycrmClients::new(
            runtime::key_store(aws, &table, runtime::KeyAccess::Read),
            gate,
            ClientConfig::default(),
        ));
        let keycrm = Arc::new(KeycrmOrigins {
            clients,
            secret_prefix: env_opt("SECRET_PREFIX"),
        });
        // EMF metrics on stdout once per batch; KeyCRM usage (adoption reads) on the status.
        let metrics = Emitter::new(Function::StatusApply).with_journal(table.clone());
        let applier = StatusApplier::new(table.clone(), table.clone(), shop, table, policy)
            .with_keycrm(keycrm);
        let dead_letter = env_opt("STATUS_DLQ_URL")
            .map(|url| Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>);
        Ok(App {
            applier,
            source_url: env_opt("STATUS_QUEUE_URL"),
            queue_at: Box::new(move |url| Arc::new(SqsQueue::new(sqs.clone(), url))),
            dead_letter,
            metrics,
        })
    }

    /// The queues one batch is settled with: the status queue (named, or from the batch's
    /// ARN) for visibility changes, and the dead-letter queue.
    fn transport(&self, event: &SqsEvent) -> Transport {
        let url = self.source_url.clone().or_else(|| {
            let first = event.records.first();
            first
                .and_then(|r| r.event_source_arn.as_deref())
                .and_then(queue_url_from_arn)
        });
        Transport {
            source: url.map(|u| (self.queue_at)(u)),
            dead_letter: self.dead_letter.clone(),
        }
    }

    /// One invocation, as the binary serves it: an SQS batch, metered; any other event is
    /// refused as `InvalidInput`.
    pub async fn invoke(
        &self,
        invocation: Invocation<NoSchedule>,
        deadline: Deadline,
    ) -> Result<serde_json::Value, InvocationError> {
        let event = invocation.into_sqs()?;
        let transport = self.transport(&event);
        let batch = handle_sqs_event(&self.applier, &transport, event, deadline.0);
        metered(&self.metrics, deadline, async { Ok(batch.await) }).await
    }

    /// Serves invocations until the runtime stops.
    pub async fn serve(self) -> Result<(), lambda_runtime::Error> {
        let app = &self;
        runtime::lambda::serve(ACCEPTS, |invocation, deadline| {
            app.invoke(invocation, deadline)
        })
        .await
    }
}
