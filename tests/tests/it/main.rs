//! The end-to-end and emulator tests of the connector, as one test binary: one compile and one
//! link for all of them instead of one per file (the machine that runs them has 2 cores). Each
//! module is one former `tests/tests/<name>.rs` file; shared helpers live in the `e2e_tests`
//! library (`tests/src`).
//!
//! New end-to-end test files go here: put the file in `tests/tests/it/` and declare it below
//! with `mod <name>;`. Keep a test in its own binary under `tests/tests/` only when it needs
//! the process to itself (a process-global tracing subscriber, environment variables set before
//! any thread starts), as `trace_logs.rs` does, and say why at its top.

mod admin_api_flows;
mod admin_api_openapi;
mod admin_api_reference_cache;
mod article_connection_e2e;
mod article_flows_e2e;
mod article_statuses_e2e;
mod catalog_sync_e2e;
mod catalog_sync_store;
mod connection_delete;
mod emulator_queue;
mod emulator_store;
mod fleet_fairness_e2e;
mod key_store;
mod keycrm_client;
mod metrics_emf;
mod order_push_dictionaries;
mod order_push_e2e;
mod order_push_ledger;
mod sim_conformance;
mod stock_e2e;
mod stock_store;
mod template_consistency;
mod webhook_e2e;
