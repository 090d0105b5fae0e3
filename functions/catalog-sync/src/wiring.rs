//! The Lambda's wiring from its environment: DynamoDB (connections, runs, links, rate gate),
//! SQS (the sync-jobs queue, the dead-letter queue), the KeyCRM key store and the shop; and
//! the routing of each invocation — an EventBridge Scheduler input or a sync-jobs SQS batch.

use crate::lambda::{handle_sqs, DeadLetters};
use crate::{Config, Deps, Engine, ScheduleInput, SyncError};
use keycrm::{ClientConfig, RateBudget};
use queue::{Queue, SqsQueue};
use runtime::lambda::{metered, Deadline, InitError, Invocation, InvocationError, SdkConfig};
use runtime::metrics::{Emitter, Function, MeteredCatalog};
use runtime::{env_opt, env_req, ClientsError, KeycrmClients};
use shop::HttpShop;
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable};

/// The function's timeout (template.yaml); its AWS calls' timeouts follow from it.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);

/// What the function is invoked with (named in the error for anything else).
pub const ACCEPTS: &str =
    "a schedule input {\"kind\": \"tick\"|\"resume\"|\"full\"|\"prices\"} or an SQS batch of sync jobs";

/// The engine, where unreadable jobs go, and the metrics, ready to serve.
pub struct App {
    pub engine: Engine,
    /// Unreadable or crashing jobs go here with their reason (`SYNC_DLQ_URL`).
    pub dead_letter: Option<Arc<dyn Queue>>,
    /// The sync-jobs queue's name, written into each dead letter.
    pub source_queue: String,
    pub metrics: Emitter,
}

impl App {
    pub async fn from_env(aws: &SdkConfig) -> Result<App, InitError> {
        let table_name = env_req("TABLE_NAME")?;
        let queue_url = env_req("SYNC_QUEUE_URL")?;
        let shop_base = env_req("SHOP_API_BASE_URL")?;
        let dlq_url = env_opt("SYNC_DLQ_URL");

        let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(aws), table_name);
        let token = runtime::shop_api_token_from_env(aws).await?;
        // KeyCRM keys, envelope-encrypted in the table; the nightly tick moves keys an older
        // version kept in Secrets Manager.
        let secrets = runtime::key_store(aws, &table, runtime::KeyAccess::Manage);
        // The per-key budget shared with order push: the sync asks with background priority.
        let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
        // A far slot is handed to a delayed continuation, not slept through
        // (engine::MAX_GATE_WAIT).
        let client_config = ClientConfig {
            max_gate_wait: Some(crate::MAX_GATE_WAIT),
            ..ClientConfig::default()
        };
        let clients = Arc::new(KeycrmClients::new(secrets, gate, client_config));
        let sqs = aws_sdk_sqs::Client::new(aws);
        let jobs = Arc::new(SqsQueue::new(sqs.clone(), queue_url));
        let source_queue = jobs.name().to_string();
        let shop = HttpShop::new(&shop_base, token)
            .map_err(|e| InitError::invalid("SHOP_API_BASE_URL", e))?;
        let table = Arc::new(table);
        let deps = Deps {
            connections: table.clone(),
            sync: table.clone(),
            links: table.clone(),
            // Metered: catalog and stock writes and shop API failures show in the metrics.
            shop: Arc::new(MeteredCatalog(Arc::new(shop))),
            clients,
            journal: table.clone(),
            jobs,
        };
        Ok(App {
            engine: Engine::new(deps, Config::lambda()),
            dead_letter: dlq_url.map(|url| Arc::new(SqsQueue::new(sqs, url)) as Arc<dyn Queue>),
            source_queue,
            metrics: Emitter::new(Function::CatalogSync).with_journal(table),
        })
    }

    /// One invocation, as the binary serves it, metered (one EMF flush per sync job batch or
    /// schedule tick): a sync-jobs batch gets its partial batch response, a schedule input
    /// its fan-out; anything else is refused as `InvalidInput`.
    pub async fn invoke(
        &self,
        invocation: Invocation<ScheduleInput>,
        deadline: Deadline,
    ) -> Result<serde_json::Value, InvocationError> {
        metered(&self.metrics, deadline, self.route(invocation, deadline)).await
    }

    async fn route(
        &self,
        invocation: Invocation<ScheduleInput>,
        deadline: Deadline,
    ) -> Result<serde_json::Value, InvocationError> {
        match invocation {
            Invocation::Sqs(batch) => {
                let dead_letters = self.dead_letter.as_deref().map(|queue| DeadLetters {
                    queue,
                    source_queue: &self.source_queue,
                });
                let answer = handle_sqs(&self.engine, batch, deadline.0, dead_letters.as_ref());
                Ok(serde_json::to_value(answer.await)?)
            }
            Invocation::Schedule(input) => {
                let fan_out = self.engine.on_schedule_input(&input).await;
                Ok(serde_json::to_value(fan_out.map_err(invocation_error)?)?)
            }
            other => Err(InvocationError::invalid_input(format!(
                "the event is {}; this function handles {ACCEPTS}",
                other.shape()
            ))),
        }
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

/// A failed schedule tick, by what failed (EventBridge Scheduler retries the tick).
fn invocation_error(e: SyncError) -> InvocationError {
    let error_type = match &e {
        SyncError::Store(_) | SyncError::Clients(ClientsError::Store(_)) => "StoreUnavailable",
        SyncError::Keycrm(_) | SyncError::Clients(_) => "KeycrmUnavailable",
        SyncError::Shop(_) => "ShopUnavailable",
        SyncError::Queue(_) => "QueueUnavailable",
        SyncError::LeaseLost => "LeaseLost",
    };
    InvocationError::new(error_type, e.to_string())
}
