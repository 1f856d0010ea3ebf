//! Run tokens (secret, shown only to the run's process, stored hashed) and run marks (not
//! secret; put in the run's environment to find every process of the run).

use rand::Rng;
use sha2::{Digest, Sha256};

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    hex::encode(buf)
}

pub(crate) fn new_token() -> String {
    format!("atr_{}", random_hex(32))
}

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
