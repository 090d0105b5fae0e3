//! Shared helpers for the end-to-end and emulator tests in `tests/tests/`.

pub mod article;
pub mod emulator;
pub mod openapi;
pub mod webdriver;
