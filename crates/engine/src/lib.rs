//! The orchestrator: executes the domain's decisions. It owns the store, the harness registry,
//! the forge and the live runs; schedules queued runs under the concurrency caps; supervises each
//! run's child process; recovers after a crash; replays unfinished side-effect intents.

pub mod api;
pub mod error;
mod facade;
pub mod workspace;

pub use error::{EngineError, Result};
pub use facade::{Engine, EngineConfig};
