//! Placeholder: the claude adapter.
