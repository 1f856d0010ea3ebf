//! Placeholder: the model simulator.
