//! Placeholder: the codex adapter.
