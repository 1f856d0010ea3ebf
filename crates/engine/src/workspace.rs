//! Task workspaces (placeholder).
