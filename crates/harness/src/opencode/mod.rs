//! Placeholder: the opencode adapter.
