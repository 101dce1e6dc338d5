//! The repository `config` file and the encoding of every other JSON file ("unpacked" files:
//! index, snapshots, locks). In format version 2 those carry a leading version byte: `{` or `[`
//! means plain JSON, `0x02` means zstd-compressed JSON follows. The config itself is never
//! compressed, so that any version of restic can read the version number.

use coffer_chunker::Pol;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::Id;

/// The decrypted `config` file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Config {
    /// Repository format version: 1 or 2.
    pub version: u32,
    /// Random repository id (hex).
    pub id: String,
    /// The Rabin polynomial all clients of this repository chunk with.
    #[serde(serialize_with = "ser_pol", deserialize_with = "de_pol")]
    pub chunker_polynomial: Pol,
}

fn ser_pol<S: Serializer>(p: &Pol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

fn de_pol<'de, D: Deserializer<'de>>(d: D) -> Result<Pol, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("invalid chunker polynomial {s:?}")))
}

impl Config {
    /// A new version-2 config with a random id and polynomial.
    pub fn new() -> Config {
        Config {
            version: 2,
            id: Id::random().to_hex(),
            chunker_polynomial: Pol::random(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// Prefixes and compresses a JSON document for a version-2 repository.
pub fn encode_unpacked(json: &[u8], version: u32) -> Vec<u8> {
    if version < 2 {
        return json.to_vec();
    }
    let mut out = Vec::with_capacity(json.len() / 3 + 16);
    out.push(2u8);
    // Level 3 matches restic's default for metadata; these files are small.
    let mut enc = zstd::stream::Encoder::new(&mut out, 3).expect("zstd encoder on a Vec");
    std::io::Write::write_all(&mut enc, json).expect("writing to a Vec");
    enc.finish().expect("finishing zstd into a Vec");
    out
}

/// The failure to interpret a decrypted JSON file.
#[derive(Debug, thiserror::Error)]
pub enum UnpackedError {
    /// Unknown leading byte.
    #[error("unsupported file format version byte {0:#x}")]
    Version(u8),
    /// zstd failed.
    #[error("decompressing: {0}")]
    Zstd(std::io::Error),
    /// Empty file.
    #[error("file is empty")]
    Empty,
}

/// Undoes [`encode_unpacked`]: returns plain JSON bytes.
pub fn decode_unpacked(data: Vec<u8>) -> Result<Vec<u8>, UnpackedError> {
    match data.first() {
        None => Err(UnpackedError::Empty),
        Some(b'{') | Some(b'[') => Ok(data),
        Some(2) => zstd::stream::decode_all(&data[1..]).map_err(UnpackedError::Zstd),
        Some(&b) => Err(UnpackedError::Version(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_shape() {
        let c = Config::new();
        let j = serde_json::to_string(&c).unwrap();
        assert!(j.contains("\"version\":2"));
        let back: Config = serde_json::from_str(&j).unwrap();
        assert_eq!(back.chunker_polynomial, c.chunker_polynomial);
        let r: Config = serde_json::from_str(
            r#"{"version":2,"id":"aa","chunker_polynomial":"25b468838dcb75"}"#,
        )
        .unwrap();
        assert_eq!(r.chunker_polynomial, Pol(0x25b468838dcb75));
    }

    #[test]
    fn unpacked_round_trip() {
        let j = br#"{"a":1}"#;
        assert_eq!(decode_unpacked(encode_unpacked(j, 2)).unwrap(), j);
        assert_eq!(decode_unpacked(encode_unpacked(j, 1)).unwrap(), j);
        assert!(decode_unpacked(vec![7, 1]).is_err());
    }
}
