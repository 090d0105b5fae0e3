//! The Lambda's wiring from its environment: DynamoDB (table, ledger, rate gate), SQS (the
//! order queue for deferred copies, the dead-letter queue), the KeyCRM key store and clients.

use crate::dictionaries::SHARED_TTL;
use crate::{Dictionaries, KeycrmProvider, OrderPush, PushConfig};
use keycrm::{ClientConfig, RateBudget};
use queue::{Queue, SqsQueue};
use runtime::lambda::{Deadline, InitError, Invocation, NoSchedule, SdkConfig};
use runtime::metrics::{Emitter, Function};
use runtime::{env_opt, env_req, KeycrmClients};
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable};

/// The function's timeout (template.yaml); its AWS calls' timeouts follow from it, with the
/// 5 s kept to settle.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The handler and its metrics, ready to serve.
pub struct App {
    pub push: OrderPush,
    pub metrics: Emitter,
}

impl App {
    pub async fn from_env(aws: &SdkConfig) -> Result<App, InitError> {
        let table_name = env_req("TABLE_NAME")?;
        let queue_url = env_req("ORDER_QUEUE_URL")?;
        let dlq_url = env_req("ORDER_DLQ_URL")?;
        let secret_prefix = env_opt("SECRET_PREFIX");

        let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(aws), table_name);
        let sqs = aws_sdk_sqs::Client::new(aws);
        let order_queue = SqsQueue::new(sqs.clone(), queue_url);
        let source_queue = order_queue.name().to_string();
        let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
        let clients = Arc::new(KeycrmClients::new(
            runtime::key_store(aws, &table, runtime::KeyAccess::Read),
            gate,
            ClientConfig {
                max_gate_wait: Some(crate::MAX_GATE_WAIT),
                ..ClientConfig::default()
            },
        ));
        let journal = Arc::new(table.clone());
        // EMF metrics on stdout once per batch; KeyCRM usage per connection on its status.
        let metrics = Emitter::new(Function::OrderPush).with_journal(journal.clone());
        let push = OrderPush {
            connections: Arc::new(table.clone()),
            ledger: Arc::new(table.clone()),
            journal,
            crm: Arc::new(KeycrmProvider {
                clients,
                secret_prefix,
            }),
            retry_queue: Arc::new(order_queue),
            dead_letters: Arc::new(SqsQueue::new(sqs, dlq_url)),
            dictionaries: Arc::new(
                Dictionaries::default().with_shared(Arc::new(table.clone()), SHARED_TTL),
            ),
            config: PushConfig {
                source_queue,
                ..PushConfig::default()
            },
        };
        Ok(App { push, metrics })
    }

    /// Serves invocations until the runtime stops.
    pub async fn serve(self) -> Result<(), lambda_runtime::Error> {
        let app = &self;
        runtime::lambda::serve(
            crate::lambda::ACCEPTS,
            |invocation: Invocation<NoSchedule>, deadline: Deadline| async move {
                crate::lambda::invoke(&app.push, &app.metrics, invocation, deadline).await
            },
        )
        .await
    }
}
