//! The AWS price table the cost model uses: us-east-1, on-demand list prices, in US dollars,
//! without free tiers (a deployment serving thousands of shops is past them, and leaving them
//! out keeps the figures conservative). Update the numbers here when AWS changes them; every
//! figure the bench prints is computed from this table.
//!
//! Sources, as read on 2025-11-28:
//! - Lambda: <https://aws.amazon.com/lambda/pricing/> — Arm, first 7.5 billion GB-s a month:
//!   $0.0000133334 per GB-second; $0.20 per million requests.
//! - DynamoDB on demand: <https://aws.amazon.com/dynamodb/pricing/on-demand/> — since the
//!   price cut of 2024-11-01: $0.625 per million write request units, $0.125 per million read
//!   request units; storage $0.25 per GB-month (first 25 GB free, not counted);
//!   point-in-time recovery $0.20 per GB-month.
//! - SQS: <https://aws.amazon.com/sqs/pricing/> — standard queues $0.40 per million requests
//!   (each 64 KB chunk of a payload is one request).
//! - API Gateway HTTP APIs: <https://aws.amazon.com/api-gateway/pricing/> — $1.00 per million
//!   requests (first 300 million a month).
//! - Secrets Manager: <https://aws.amazon.com/secrets-manager/pricing/> — $0.40 per secret per
//!   month, $0.05 per 10,000 API calls.
//! - KMS: <https://aws.amazon.com/kms/pricing/> — $1.00 per customer managed key per month
//!   (each automatic yearly rotation adds $1 for the first two rotations, so $1-$3), $0.03 per
//!   10,000 symmetric requests.
//! - CloudWatch: <https://aws.amazon.com/cloudwatch/pricing/> — $0.10 per standard alarm
//!   metric per month; logs $0.50 per GB ingested, $0.03 per GB-month stored.
//! - X-Ray: <https://aws.amazon.com/xray/pricing/> — $5.00 per million traces recorded.
//! - EventBridge Scheduler: <https://aws.amazon.com/eventbridge/pricing/> — 14 million
//!   invocations a month free, then $1.00 per million.

/// One price table.
#[derive(Clone, Debug, PartialEq)]
pub struct Prices {
    pub lambda_gb_second: f64,
    pub lambda_request: f64,
    pub dynamodb_wru: f64,
    pub dynamodb_rru: f64,
    pub dynamodb_gb_month: f64,
    pub dynamodb_pitr_gb_month: f64,
    pub sqs_request: f64,
    pub http_api_request: f64,
    pub secret_month: f64,
    pub secrets_manager_call: f64,
    pub kms_key_month: f64,
    pub kms_request: f64,
    pub alarm_month: f64,
    pub logs_gb_ingested: f64,
    pub xray_trace: f64,
    /// Days in the average month (365.25 / 12).
    pub days_per_month: f64,
}

/// The table above.
pub const AWS_US_EAST_1: Prices = Prices {
    lambda_gb_second: 0.000_013_333_4,
    lambda_request: 0.20 / 1e6,
    dynamodb_wru: 0.625 / 1e6,
    dynamodb_rru: 0.125 / 1e6,
    dynamodb_gb_month: 0.25,
    dynamodb_pitr_gb_month: 0.20,
    sqs_request: 0.40 / 1e6,
    http_api_request: 1.00 / 1e6,
    secret_month: 0.40,
    secrets_manager_call: 0.05 / 1e4,
    kms_key_month: 1.00,
    kms_request: 0.03 / 1e4,
    alarm_month: 0.10,
    logs_gb_ingested: 0.50,
    xray_trace: 5.00 / 1e6,
    days_per_month: 365.25 / 12.0,
};
