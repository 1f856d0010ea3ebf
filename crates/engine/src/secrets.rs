//! Secrets at rest: the values of roles' `env` (where credentials live) are stored sealed with
//! XChaCha20-Poly1305 under a key kept in `<data_dir>/secret.key` (32 random bytes, mode 0600,
//! made at the first start). A value is opened only to build the environment of the run that
//! needs it; the database, its WAL and its backups hold ciphertext only.
//!
//! A sealed value reads `sealed:v1:<hex of nonce ‖ ciphertext>`; the variable's name is bound as
//! associated data, so a sealed value moved to another variable does not open. Users' own
//! credentials (`credentials`) use this box too, bound to `user:<id>/<harness>/<name>`.

use crate::api::{ProjectSettings, RoleConfig};
use crate::error::{EngineError, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::path::Path;

const PREFIX: &str = "sealed:v1:";
const KEY_FILE: &str = "secret.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the instance's key.
pub(crate) struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// Reads `<data_dir>/secret.key`, or creates it (mode 0600) when it does not exist yet.
    pub fn open_or_create(data_dir: &Path) -> Result<SecretBox> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(KEY_FILE);
        let shown = path.display();
        let key = match std::fs::read(&path) {
            Ok(key) => key,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; KEY_LEN] = rand::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| EngineError::Internal(format!("cannot create {shown}: {e}")))?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| EngineError::Internal(format!("cannot write {shown}: {e}")))?;
                tracing::info!(key = %shown, "created the key that seals credentials at rest");
                key.to_vec()
            }
            Err(err) => {
                return Err(EngineError::Internal(format!("cannot read {shown}: {err}")));
            }
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| {
            EngineError::Internal(format!(
                "{shown} is not a {KEY_LEN}-byte key: restore it from a backup (sealed credentials cannot be opened without it)"
            ))
        })?;
        Ok(SecretBox { cipher })
    }

    /// Whether `value` is already sealed.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }

    /// Seals the value of variable `name`.
    pub fn seal(&self, name: &str, value: &str) -> Result<String> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| EngineError::Internal(format!("cannot seal the value of {name}")))?;
        let mut bytes = nonce_bytes.to_vec();
        bytes.extend(sealed);
        Ok(format!("{PREFIX}{}", hex::encode(bytes)))
    }

    /// Opens the sealed value of variable `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String> {
        let broken = || {
            EngineError::Internal(format!(
                "the stored value of {name} cannot be opened with this instance's secret.key (was the key replaced?): set the credential again"
            ))
        };
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(broken)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(plain).map_err(|_| broken())
    }

    /// Seals every role `env` value and forge secret of `settings` that is not sealed yet; true
    /// when one was.
    pub fn seal_settings(&self, settings: &mut ProjectSettings) -> Result<bool> {
        let mut changed = crate::forges::seal_github(self, settings)?;
        for role in settings.roles.values_mut() {
            for (name, value) in role.env.iter_mut() {
                if !Self::is_sealed(value) {
                    *value = self.seal(name, value)?;
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// `role` with its `env` values opened, for the run that needs them.
    pub fn open_role(&self, role: &RoleConfig) -> Result<RoleConfig> {
        let mut open = role.clone();
        for (name, value) in open.env.iter_mut() {
            if Self::is_sealed(value) {
                *value = self.open(name, value)?;
            }
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_never_appear_in_the_sealed_text() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(dir.path()).unwrap();
        let sealed = sb.seal("API_KEY", "sk-secret-123").unwrap();
        assert!(SecretBox::is_sealed(&sealed));
        assert!(!sealed.contains("sk-secret-123"));
        assert_ne!(
            sealed,
            sb.seal("API_KEY", "sk-secret-123").unwrap(),
            "fresh nonce"
        );
        assert_eq!(sb.open("API_KEY", &sealed).unwrap(), "sk-secret-123");
        // The same key file opens it after a restart.
        let again = SecretBox::open_or_create(dir.path()).unwrap();
        assert_eq!(again.open("API_KEY", &sealed).unwrap(), "sk-secret-123");
    }

    #[test]
    fn the_key_file_is_private_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        SecretBox::open_or_create(dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
    }

    #[test]
    fn tampered_moved_or_foreign_values_do_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(dir.path()).unwrap();
        let sealed = sb.seal("API_KEY", "sk-secret-123").unwrap();
        assert!(sb.open("OTHER_VAR", &sealed).is_err(), "bound to its name");
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(sb.open("API_KEY", &tampered).is_err());
        assert!(sb.open("API_KEY", "sealed:v1:zz").is_err());
        let other = tempfile::tempdir().unwrap();
        let foreign = SecretBox::open_or_create(other.path()).unwrap();
        let err = foreign.open("API_KEY", &sealed).unwrap_err().to_string();
        assert!(err.contains("secret.key"), "{err}");
    }

    #[test]
    fn settings_are_sealed_once_and_roles_open_for_their_run() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(dir.path()).unwrap();
        let mut settings = ProjectSettings::default();
        let mut role = RoleConfig::default();
        role.env.insert("API_KEY".into(), "sk-1".into());
        settings.roles.insert(domain::Stage::Plan, role.clone());
        assert!(sb.seal_settings(&mut settings).unwrap());
        let sealed = settings.roles[&domain::Stage::Plan].clone();
        assert!(SecretBox::is_sealed(&sealed.env["API_KEY"]));
        assert!(!sb.seal_settings(&mut settings).unwrap(), "already sealed");
        assert_eq!(sb.open_role(&sealed).unwrap(), role);
    }
}
