//! Table-driven tests of every pipeline transition.
use super::*;
