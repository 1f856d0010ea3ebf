//! One module per command group of `atelier`; each defines its clap arguments and runs them.

pub mod account;
pub mod codex_bridge;
pub mod demo;
pub mod doctor;
pub mod me;
pub mod opencode_bridge;
pub mod pipeline;
pub mod project;
pub mod prompt;
pub mod scratch;
pub mod serve;
pub mod signal;
pub mod simulator;
pub mod task;
