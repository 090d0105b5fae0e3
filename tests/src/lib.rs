//! Shared helpers for the end-to-end and emulator tests in `tests/tests/`.

pub mod api;
pub mod article;
pub mod connection;
pub mod emulator;
pub mod faults;
pub mod logs;
pub mod openapi;
pub mod webdriver;
