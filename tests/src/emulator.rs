//! Access to the real-protocol AWS emulator (moto) the test command starts.
//!
//! Tests that need DynamoDB or SQS call [`require`]; without the emulator they fail with
//! instructions instead of skipping, so a green run always means the adapters were exercised.

use std::sync::atomic::{AtomicU32, Ordering};

/// Panics with instructions unless `AWS_ENDPOINT_URL` points at a loopback emulator.
pub fn require() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if endpoint.is_empty() {
        panic!(
            "this test needs the DynamoDB/SQS emulator. Run the whole suite with \
             `bash infra/scripts/test-all.sh` (it installs and starts moto_server), or start it \
             yourself: `moto_server -H 127.0.0.1 -p 5055 &` and export \
             AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_REGION=us-east-1 \
             AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test"
        );
    }
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "AWS_ENDPOINT_URL={endpoint} is not a loopback emulator; refusing to run tests against it"
    );
    endpoint
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A fresh table with the production key schema.
pub async fn table() -> store::DynamoTable {
    require();
    let client = store::DynamoTable::client_from_env().await;
    store::DynamoTable::create(&client, &unique("t"))
        .await
        .expect("create table on the emulator")
}

/// A fresh queue, optionally redriving to a fresh dead-letter queue after `max_receives`.
pub async fn queue(max_receives: Option<u32>) -> (queue::SqsQueue, Option<queue::SqsQueue>) {
    require();
    let client = queue::SqsQueue::client_from_env().await;
    match max_receives {
        None => (
            queue::SqsQueue::create(&client, &unique("q"), None)
                .await
                .expect("create queue"),
            None,
        ),
        Some(max) => {
            let dlq = queue::SqsQueue::create(&client, &unique("dlq"), None)
                .await
                .expect("create dlq");
            let q = queue::SqsQueue::create(&client, &unique("q"), Some((&dlq, max)))
                .await
                .expect("create queue");
            (q, Some(dlq))
        }
    }
}

/// A fresh symmetric KMS key on the emulator: its client and key id.
pub async fn kms_key() -> (aws_sdk_kms::Client, String) {
    require();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let key = kms
        .create_key()
        .description(unique("keycrm-keys"))
        .send()
        .await
        .expect("create a KMS key on the emulator (moto needs the kms extra)");
    let id = key
        .key_metadata
        .map(|m| m.key_id)
        .expect("the new key's id");
    (kms, id)
}
