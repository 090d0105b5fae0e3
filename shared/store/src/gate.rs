//! The rate gate's adapter on the shared table. The port (`keycrm::RateGate`), the GCRA
//! decision and the in-memory gate live in `keycrm`, beside the client that waits on them;
//! this crate adds the DynamoDB store every Lambda shares.

mod dynamo;

pub use dynamo::DynamoRateGate;
