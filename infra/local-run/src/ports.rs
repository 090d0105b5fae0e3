//! The adapters the local run plugs into the handlers: in-process by default, DynamoDB, SQS
//! and Secrets Manager (the emulator or a real account) when asked, with the same handlers.

use anyhow::Context;
use keycrm::{LocalRateGate, RateBudget, RateGate};
use queue::{MemoryQueue, Queue, Redrive, SqsQueue};
use std::sync::Arc;
use store::{
    ConnectionStore, DynamoRateGate, DynamoTable, LinkStore, MemoryConnections, MemoryJournal,
    MemoryLedger, MemoryLinks, MemoryReferenceCache, MemorySecrets, MemoryStock, MemorySync,
    OrderLedger, ReferenceCache, SecretStore, SecretsManager, StatusJournal, StockStore, SyncStore,
};

/// Receives before a message is redriven to its dead-letter queue (as in template.yaml).
pub const ORDER_MAX_RECEIVES: u32 = 5;
pub const STATUS_MAX_RECEIVES: u32 = 10;
pub const SYNC_MAX_RECEIVES: u32 = 5;
pub const STOCK_MAX_RECEIVES: u32 = 10;

pub struct Ports {
    pub connections: Arc<dyn ConnectionStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub journal: Arc<dyn StatusJournal>,
    pub cache: Arc<dyn ReferenceCache>,
    pub ledger: Arc<dyn OrderLedger>,
    pub sync: Arc<dyn SyncStore>,
    pub links: Arc<dyn LinkStore>,
    pub stock: Arc<dyn StockStore>,
    pub gate: Arc<dyn RateGate>,
    pub order_queue: Arc<dyn Queue>,
    pub order_dlq: Arc<dyn Queue>,
    pub status_queue: Arc<dyn Queue>,
    pub status_dlq: Arc<dyn Queue>,
    pub sync_queue: Arc<dyn Queue>,
    pub sync_dlq: Arc<dyn Queue>,
    pub stock_queue: Arc<dyn Queue>,
    pub stock_dlq: Arc<dyn Queue>,
    /// What the summary says about where state lives.
    pub description: String,
}

fn memory_pair(name: &str, max_receives: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
    let dlq = Arc::new(MemoryQueue::new(&format!("{name}-dlq")));
    let q = MemoryQueue::with_redrive(
        name,
        Redrive {
            dead_letter: dlq.clone(),
            max_receives,
        },
    );
    (Arc::new(q), dlq)
}

impl Ports {
    /// Everything in this process.
    pub fn memory(budget: RateBudget) -> Ports {
        let (order_queue, order_dlq) = memory_pair("order-events", ORDER_MAX_RECEIVES);
        let (status_queue, status_dlq) = memory_pair("status-updates", STATUS_MAX_RECEIVES);
        let (sync_queue, sync_dlq) = memory_pair("sync-jobs", SYNC_MAX_RECEIVES);
        let (stock_queue, stock_dlq) = memory_pair("stock-flushes", STOCK_MAX_RECEIVES);
        Ports {
            connections: Arc::new(MemoryConnections::default()),
            secrets: Arc::new(MemorySecrets::default()),
            journal: Arc::new(MemoryJournal::default()),
            cache: Arc::new(MemoryReferenceCache::new()),
            ledger: Arc::new(MemoryLedger::new()),
            sync: Arc::new(MemorySync::new()),
            links: Arc::new(MemoryLinks::default()),
            stock: Arc::new(MemoryStock::new()),
            gate: Arc::new(LocalRateGate::new(budget)),
            order_queue,
            order_dlq,
            status_queue,
            status_dlq,
            sync_queue,
            sync_dlq,
            stock_queue,
            stock_dlq,
            description: "in-process store and queues".into(),
        }
    }

    /// DynamoDB, SQS and Secrets Manager from the environment (`AWS_ENDPOINT_URL` for the
    /// emulator). The table and queues are created if missing, named after `prefix`.
    pub async fn aws(prefix: &str, budget: RateBudget) -> anyhow::Result<Ports> {
        let ddb = DynamoTable::client_from_env().await;
        let table = DynamoTable::create(&ddb, &format!("{prefix}-table"))
            .await
            .context("creating the DynamoDB table")?;
        let sqs = SqsQueue::client_from_env().await;
        let pair = |name: String, max: u32| {
            let sqs = sqs.clone();
            async move {
                let dlq = SqsQueue::create(&sqs, &format!("{name}-dlq"), None).await?;
                let q = SqsQueue::create(&sqs, &name, Some((&dlq, max))).await?;
                Ok::<_, queue::QueueError>((
                    Arc::new(q) as Arc<dyn Queue>,
                    Arc::new(dlq) as Arc<dyn Queue>,
                ))
            }
        };
        let (order_queue, order_dlq) = pair(format!("{prefix}-order-events"), ORDER_MAX_RECEIVES)
            .await
            .context("creating the order queue")?;
        let (status_queue, status_dlq) =
            pair(format!("{prefix}-status-updates"), STATUS_MAX_RECEIVES)
                .await
                .context("creating the status queue")?;
        let (sync_queue, sync_dlq) = pair(format!("{prefix}-sync-jobs"), SYNC_MAX_RECEIVES)
            .await
            .context("creating the sync queue")?;
        let (stock_queue, stock_dlq) = pair(format!("{prefix}-stock-flushes"), STOCK_MAX_RECEIVES)
            .await
            .context("creating the stock flush queue")?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into());
        Ok(Ports {
            connections: Arc::new(table.clone()),
            secrets: Arc::new(SecretsManager::from_env().await),
            journal: Arc::new(table.clone()),
            cache: Arc::new(table.clone()),
            ledger: Arc::new(table.clone()),
            sync: Arc::new(table.clone()),
            links: Arc::new(table.clone()),
            stock: Arc::new(table.clone()),
            gate: Arc::new(DynamoRateGate::new(table.clone(), budget)),
            order_queue,
            order_dlq,
            status_queue,
            status_dlq,
            sync_queue,
            sync_dlq,
            stock_queue,
            stock_dlq,
            description: format!(
                "DynamoDB table {} and SQS queues {prefix}-* at {endpoint}",
                table.name
            ),
        })
    }
}
