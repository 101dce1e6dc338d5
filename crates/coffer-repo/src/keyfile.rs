//! Key files under `keys/`: plain JSON holding scrypt parameters, a salt, and the repository's
//! master key encrypted with the key derived from a password. Several key files may wrap the
//! same master key; changing a password writes a new key file and never touches the data.

use base64::Engine;
use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};

use crate::crypto::{Key, MasterKeyJson};

/// Default scrypt cost: restic's minimum (N = 2^15, r = 8, p = 1; 32 MiB, ~0.1 s).
pub const DEFAULT_N: u32 = 1 << 15;

/// One key file as stored (restic's `Key` JSON).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct KeyFile {
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<DateTime<Local>>,
    /// Who created it.
    #[serde(default)]
    pub username: String,
    /// Where it was created.
    #[serde(default)]
    pub hostname: String,
    /// Always "scrypt".
    pub kdf: String,
    /// scrypt cost.
    #[serde(rename = "N")]
    pub n: u32,
    /// scrypt block size.
    pub r: u32,
    /// scrypt parallelism.
    pub p: u32,
    /// base64 salt (64 bytes).
    pub salt: String,
    /// base64 of the encrypted master key JSON.
    pub data: String,
}

/// Why a key file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The password does not decrypt this key.
    #[error("wrong password for this key")]
    WrongPassword,
    /// The file is not a valid key file.
    #[error("invalid key file: {0}")]
    Invalid(String),
}

fn derive(password: &str, salt: &[u8], n: u32, r: u32, p: u32) -> Result<Key, KeyFileError> {
    if !n.is_power_of_two() || n < 2 {
        return Err(KeyFileError::Invalid(format!(
            "scrypt N={n} is not a power of two"
        )));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 64)
        .map_err(|e| KeyFileError::Invalid(format!("scrypt parameters: {e}")))?;
    let mut out = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
        .map_err(|e| KeyFileError::Invalid(format!("scrypt: {e}")))?;
    Ok(Key::from_kdf_output(&out))
}

impl KeyFile {
    /// Wraps `master` under `password` with fresh salt.
    pub fn create(password: &str, master: &Key, n: u32) -> Result<KeyFile, KeyFileError> {
        let mut salt = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        let user_key = derive(password, &salt, n, 8, 1)?;
        let json = serde_json::to_vec(&master.to_json())
            .map_err(|e| KeyFileError::Invalid(e.to_string()))?;
        let b = base64::engine::general_purpose::STANDARD;
        Ok(KeyFile {
            created: Some(Local::now()),
            username: crate::sysinfo::username(),
            hostname: crate::sysinfo::hostname(),
            kdf: "scrypt".into(),
            n,
            r: 8,
            p: 1,
            salt: b.encode(salt),
            data: b.encode(user_key.encrypt(&json)),
        })
    }

    /// Recovers the master key with `password`.
    pub fn open(&self, password: &str) -> Result<Key, KeyFileError> {
        if self.kdf != "scrypt" {
            return Err(KeyFileError::Invalid(format!("unknown kdf {:?}", self.kdf)));
        }
        let b = base64::engine::general_purpose::STANDARD;
        let salt = b
            .decode(&self.salt)
            .map_err(|e| KeyFileError::Invalid(format!("salt: {e}")))?;
        let data = b
            .decode(&self.data)
            .map_err(|e| KeyFileError::Invalid(format!("data: {e}")))?;
        let user_key = derive(password, &salt, self.n, self.r, self.p)?;
        let plain = user_key
            .decrypt(&data)
            .map_err(|_| KeyFileError::WrongPassword)?;
        let j: MasterKeyJson = serde_json::from_slice(&plain)
            .map_err(|e| KeyFileError::Invalid(format!("master key: {e}")))?;
        Key::from_json(&j).ok_or_else(|| KeyFileError::Invalid("master key fields".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let m = Key::random();
        let kf = KeyFile::create("secret", &m, 1 << 10).unwrap();
        let back = kf.open("secret").unwrap();
        let ct = m.encrypt(b"x");
        assert_eq!(back.decrypt(&ct).unwrap(), b"x");
        assert!(matches!(kf.open("nope"), Err(KeyFileError::WrongPassword)));
    }
}
