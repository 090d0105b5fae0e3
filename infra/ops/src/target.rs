//! Which deployment the operator works on: the AWS configuration, and the table and queues,
//! named directly (flags or the functions' own environment variables) or found from the stage.
//!
//! CloudFormation names the template's table and queues `<stack>-<LogicalId>-<suffix>`
//! (`shop-keycrm-prod-ConnectorTable-1A2B…`, `shop-keycrm-prod-OrderEventsDLQ-x9Y…`), so a
//! stage's resources are found by that prefix with `ListTables` / `ListQueues`. Every resource
//! is checked once before a command uses it, so a wrong stage, a missing table or rejected
//! credentials fail at once with a clear message instead of half-way through.

use crate::cli::{QueueArg, TargetArgs};
use crate::error::{classify_aws, OpsError};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use queue::SqsQueue;
use runtime::aws::AwsTimeouts;
use store::DynamoTable;

/// The template's `Stage` pattern.
pub fn valid_stage(stage: &str) -> bool {
    let b = stage.as_bytes();
    !b.is_empty()
        && b.len() <= 20
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The logical ids of the template's queues.
pub fn queue_logical_id(queue: QueueArg, dead_letters: bool) -> &'static str {
    match (queue, dead_letters) {
        (QueueArg::Orders, false) => "OrderEventsQueue",
        (QueueArg::Orders, true) => "OrderEventsDLQ",
        (QueueArg::Statuses, false) => "StatusUpdatesQueue",
        (QueueArg::Statuses, true) => "StatusUpdatesDLQ",
        (QueueArg::Sync, false) => "SyncJobsQueue",
        (QueueArg::Sync, true) => "SyncJobsDLQ",
        (QueueArg::Stock, false) => "StockFlushQueue",
        (QueueArg::Stock, true) => "StockFlushDLQ",
    }
}

/// The environment variable naming a queue URL (the functions' own).
pub fn queue_env(queue: QueueArg, dead_letters: bool) -> &'static str {
    match (queue, dead_letters) {
        (QueueArg::Orders, false) => "ORDER_QUEUE_URL",
        (QueueArg::Orders, true) => "ORDER_DLQ_URL",
        (QueueArg::Statuses, false) => "STATUS_QUEUE_URL",
        (QueueArg::Statuses, true) => "STATUS_DLQ_URL",
        (QueueArg::Sync, false) => "SYNC_QUEUE_URL",
        (QueueArg::Sync, true) => "SYNC_DLQ_URL",
        (QueueArg::Stock, false) => "STOCK_QUEUE_URL",
        (QueueArg::Stock, true) => "STOCK_DLQ_URL",
    }
}

/// The AWS side of a deployment.
pub struct Target {
    args: TargetArgs,
    pub conf: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Target {
    /// Loads the AWS configuration (profile, region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn new(args: TargetArgs) -> Result<Target, OpsError> {
        if let Some(stage) = &args.stage {
            if !valid_stage(stage) {
                return Err(OpsError::Usage(format!(
                    "`{}` is not a stage name: lower-case letters, digits and dashes, starting \
                     with a letter, at most 20 characters (the template's Stage parameter)",
                    printable(stage)
                )));
            }
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(AwsTimeouts::local().timeout_config());
        if let Some(p) = &args.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &args.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let conf = loader.load().await;
        if conf.region().is_none() {
            return Err(OpsError::Aws(
                "no AWS region: set AWS_REGION or --region (the deployment's region)".into(),
            ));
        }
        Ok(Target {
            dynamodb: aws_sdk_dynamodb::Client::new(&conf),
            sqs: aws_sdk_sqs::Client::new(&conf),
            secrets: aws_sdk_secretsmanager::Client::new(&conf),
            conf,
            args,
        })
    }

    fn region(&self) -> String {
        self.conf
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    fn stack(&self) -> Option<String> {
        self.args
            .stack
            .clone()
            .or_else(|| self.args.stage.as_ref().map(|s| format!("shop-keycrm-{s}")))
    }

    fn no_target() -> OpsError {
        OpsError::Usage(
            "say which deployment: --stage STAGE (with AWS_PROFILE or AWS credentials of its \
             account, and AWS_REGION), or the table and queues with --table / TABLE_NAME, \
             --order-dlq-url / ORDER_DLQ_URL, ..."
                .into(),
        )
    }

    /// The connector's table, checked to exist.
    pub async fn table(&self) -> Result<DynamoTable, OpsError> {
        let name = match &self.args.table {
            Some(t) => t.clone(),
            None => {
                let stack = self.stack().ok_or_else(Self::no_target)?;
                self.find_table(&stack).await?
            }
        };
        self.dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| {
                classify_aws(
                    &DisplayErrorContext(&e).to_string(),
                    &format!("table `{}` (region {})", printable(&name), self.region()),
                )
            })?;
        Ok(DynamoTable::new(self.dynamodb.clone(), name))
    }

    async fn find_table(&self, stack: &str) -> Result<String, OpsError> {
        let prefix = format!("{stack}-ConnectorTable-");
        let mut found = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .dynamodb
                .list_tables()
                .set_exclusive_start_table_name(start.take())
                .send()
                .await
                .map_err(|e| classify_aws(&DisplayErrorContext(&e).to_string(), "the table"))?;
            found.extend(
                out.table_names()
                    .iter()
                    .filter(|n| n.starts_with(&prefix))
                    .cloned(),
            );
            match out.last_evaluated_table_name {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(OpsError::NotFound(format!(
                "stack `{stack}` has no table in region {}: is that stage deployed in this account \
                 and region? (check --stage, AWS_PROFILE and AWS_REGION, or name it with --table)",
                self.region()
            ))),
            _ => Err(OpsError::Usage(format!(
                "several tables belong to stack `{stack}` ({}): a retained table of an earlier \
                 deployment? Name the one to use with --table",
                found.join(", ")
            ))),
        }
    }

    /// A queue of the deployment (`dead_letters`: its dead-letter queue), checked to exist.
    pub async fn queue(&self, queue: QueueArg, dead_letters: bool) -> Result<SqsQueue, OpsError> {
        let given = match (queue, dead_letters) {
            (QueueArg::Orders, false) => &self.args.order_queue_url,
            (QueueArg::Orders, true) => &self.args.order_dlq_url,
            (QueueArg::Statuses, false) => &self.args.status_queue_url,
            (QueueArg::Statuses, true) => &self.args.status_dlq_url,
            (QueueArg::Sync, false) => &self.args.sync_queue_url,
            (QueueArg::Sync, true) => &self.args.sync_dlq_url,
            (QueueArg::Stock, false) => &self.args.stock_queue_url,
            (QueueArg::Stock, true) => &self.args.stock_dlq_url,
        };
        let id = queue_logical_id(queue, dead_letters);
        let url = match given {
            Some(u) => u.clone(),
            None => {
                let Some(stack) = self.stack() else {
                    return Err(OpsError::Usage(format!(
                        "which {id}? Give --stage, or its URL with {}",
                        queue_env(queue, dead_letters)
                    )));
                };
                self.find_queue(&stack, id).await?
            }
        };
        let q = SqsQueue::new(self.sqs.clone(), url.clone());
        q.arn().await.map_err(|e| match e {
            queue::QueueError::NoSuchQueue { .. } => OpsError::NotFound(format!(
                "queue {} does not exist (check {})",
                printable(&url),
                queue_env(queue, dead_letters)
            )),
            queue::QueueError::Unavailable(text) => {
                classify_aws(&text, &format!("queue {}", printable(&url)))
            }
            other => OpsError::Failed(other.to_string()),
        })?;
        Ok(q)
    }

    async fn find_queue(&self, stack: &str, logical_id: &str) -> Result<String, OpsError> {
        let prefix = format!("{stack}-{logical_id}-");
        let out = self
            .sqs
            .list_queues()
            .queue_name_prefix(&prefix)
            .send()
            .await
            .map_err(|e| {
                classify_aws(
                    &aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                    "the queue",
                )
            })?;
        let mut urls: Vec<String> = out
            .queue_urls()
            .iter()
            .filter(|u| u.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix)))
            .cloned()
            .collect();
        match urls.len() {
            1 => Ok(urls.remove(0)),
            0 => Err(OpsError::NotFound(format!(
                "stack `{stack}` has no {logical_id} in region {}: is that stage deployed in this \
                 account and region? (or give the queue URL)",
                self.region()
            ))),
            _ => Err(OpsError::Usage(format!(
                "several queues match {prefix}*: {}; give the URL",
                urls.join(", ")
            ))),
        }
    }
}

/// Input echoed back in a message, without control characters and bounded.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_the_template_pattern() {
        for ok in ["dev", "prod", "eu-1", "a", "abcdefghijklmnopqrst"] {
            assert!(valid_stage(ok), "{ok}");
        }
        for bad in [
            "",
            "Prod",
            "1dev",
            "dev_1",
            "dev!",
            "abcdefghijklmnopqrstu",
            "-dev",
        ] {
            assert!(!valid_stage(bad), "{bad}");
        }
        assert_eq!(printable("a\nb\u{7}c"), "abc");
    }
}
