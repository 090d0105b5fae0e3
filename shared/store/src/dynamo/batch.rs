//! Batch reads and writes with DynamoDB's limits enforced here (25 items a batch; unprocessed items
//! retried), since the emulator does not enforce them.

use crate::dynamo::{self, DynamoTable, Item};
use crate::StoreError;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};
use std::time::Duration;

pub const MAX_BATCH: usize = 25;

pub async fn put_items(table: &DynamoTable, items: Vec<Item>) -> Result<(), StoreError> {
    let reqs = items
        .into_iter()
        .map(|i| {
            PutRequest::builder()
                .set_item(Some(i))
                .build()
                .map(|p| WriteRequest::builder().put_request(p).build())
                .map_err(dynamo::unavailable)
        })
        .collect::<Result<Vec<_>, _>>()?;
    write(table, reqs).await
}

pub async fn delete_keys(table: &DynamoTable, keys: Vec<Item>) -> Result<(), StoreError> {
    let reqs = keys
        .into_iter()
        .map(|k| {
            DeleteRequest::builder()
                .set_key(Some(k))
                .build()
                .map(|d| WriteRequest::builder().delete_request(d).build())
                .map_err(dynamo::unavailable)
        })
        .collect::<Result<Vec<_>, _>>()?;
    write(table, reqs).await
}

async fn write(table: &DynamoTable, reqs: Vec<WriteRequest>) -> Result<(), StoreError> {
    for chunk in reqs.chunks(MAX_BATCH) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let out = table
                .client
                .batch_write_item()
                .request_items(&table.name, pending)
                .send()
                .await
                .map_err(dynamo::sdk)?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&table.name))
                .unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt > 8 {
                    return Err(StoreError::Unavailable(
                        "DynamoDB kept items unprocessed".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
        }
    }
    Ok(())
}

/// Reads items by key: BatchGetItem in chunks of 100 keys, retrying what DynamoDB leaves unprocessed.
pub async fn get_items(table: &DynamoTable, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(100) {
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .build()
                .map_err(dynamo::unavailable)?,
        );
        let mut attempt = 0u32;
        while let Some(req) = pending.take() {
            let res = table
                .client
                .batch_get_item()
                .request_items(&table.name, req)
                .send()
                .await
                .map_err(dynamo::sdk)?;
            if let Some(mut r) = res.responses {
                out.extend(r.remove(&table.name).unwrap_or_default());
            }
            pending = res
                .unprocessed_keys
                .and_then(|mut m| m.remove(&table.name))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                attempt += 1;
                if attempt > 8 {
                    return Err(StoreError::Unavailable(
                        "DynamoDB kept keys unprocessed".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
        }
    }
    Ok(out)
}
