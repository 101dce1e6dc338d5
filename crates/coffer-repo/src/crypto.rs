//! Encryption as restic's design document defines it: AES-256 in counter mode with a random
//! 16-byte IV, authenticated by Poly1305-AES over the ciphertext. Every encrypted object is
//! `IV || ciphertext || MAC` (32 bytes of overhead).

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Bytes that encryption adds to a plaintext: IV and MAC.
pub const OVERHEAD: usize = 32;
const IV: usize = 16;
const MAC: usize = 16;

/// A failed decryption: the data was altered, truncated, or the key is wrong.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The Poly1305 tag does not match.
    #[error("ciphertext verification failed (MAC mismatch): data is damaged or the key is wrong")]
    Mac,
    /// Shorter than IV plus MAC.
    #[error("ciphertext too short ({0} bytes)")]
    TooShort(usize),
}

/// The three secrets of a restic key: AES-256 key and the Poly1305-AES `k` and `r`.
#[derive(Clone)]
pub struct Key {
    encrypt: [u8; 32],
    mac_k: [u8; 16],
    mac_r: [u8; 16],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

impl Key {
    /// A fresh random key (a new repository's master key).
    pub fn random() -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        rand::rngs::OsRng.fill_bytes(&mut k.encrypt);
        rand::rngs::OsRng.fill_bytes(&mut k.mac_k);
        rand::rngs::OsRng.fill_bytes(&mut k.mac_r);
        k.mask_r();
        k
    }

    /// Splits 64 bytes of KDF output: encryption key, then `k`, then `r`.
    pub fn from_kdf_output(b: &[u8; 64]) -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        k.encrypt.copy_from_slice(&b[..32]);
        k.mac_k.copy_from_slice(&b[32..48]);
        k.mac_r.copy_from_slice(&b[48..64]);
        k.mask_r();
        k
    }

    // Poly1305 requires these bits of r to be clear; restic masks on load too.
    fn mask_r(&mut self) {
        const MASK: [u8; 16] = [
            0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff,
            0xff, 0x0f,
        ];
        for (b, m) in self.mac_r.iter_mut().zip(MASK) {
            *b &= m;
        }
    }

    fn poly1305(&self, iv: &[u8]) -> poly1305::Poly1305 {
        let aes = aes::Aes128::new(&self.mac_k.into());
        let mut s = aes::Block::clone_from_slice(iv);
        aes.encrypt_block(&mut s);
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&self.mac_r);
        key[16..].copy_from_slice(&s);
        poly1305::Poly1305::new(&key.into())
    }

    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        self.poly1305(iv).compute_unpadded(ciphertext).into()
    }

    /// The length of the encrypted object that starts at `data[0]` (IV, ciphertext, MAC),
    /// found by checking the MAC at every possible end: for reading a pack whose header and
    /// index are both lost. Linear in the object's length (the MAC state is carried forward
    /// block by block); `None` when no end authenticates (damage, or not an object start).
    pub fn sealed_len_at(&self, data: &[u8]) -> Option<usize> {
        use poly1305::universal_hash::UniversalHash;
        if data.len() < OVERHEAD {
            return None;
        }
        let ct = &data[IV..];
        let mut state = self.poly1305(&data[..IV]);
        let mut absorbed = 0;
        for end in 0..=ct.len() - MAC {
            while absorbed + 16 <= end {
                state.update(&[poly1305::Block::clone_from_slice(
                    &ct[absorbed..absorbed + 16],
                )]);
                absorbed += 16;
            }
            let tag: [u8; 16] = state.clone().compute_unpadded(&ct[absorbed..end]).into();
            // Not secret-dependent in a way that matters here: the scan reads our own data.
            if tag[..] == ct[end..end + MAC] {
                return Some(IV + end + MAC);
            }
        }
        None
    }

    /// Appends `IV || AES-CTR(plaintext) || MAC` to `out`.
    pub fn encrypt_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let mut iv = [0u8; IV];
        rand::thread_rng().fill_bytes(&mut iv);
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        let mut c = Aes256Ctr::new(&self.encrypt.into(), &iv.into());
        c.apply_keystream(&mut out[start + IV..]);
        let tag = self.mac(&iv, &out[start + IV..]);
        out.extend_from_slice(&tag);
    }

    /// Encrypts into a new buffer.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.encrypt_into(plaintext, &mut out);
        out
    }

    /// Verifies the MAC and decrypts.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if data.len() < OVERHEAD {
            return Err(CryptoError::TooShort(data.len()));
        }
        let (iv, rest) = data.split_at(IV);
        let (ct, tag) = rest.split_at(rest.len() - MAC);
        let want = self.mac(iv, ct);
        // Constant-time comparison: the tag is secret-derived.
        let diff = want.iter().zip(tag).fold(0u8, |a, (x, y)| a | (x ^ y));
        if diff != 0 {
            return Err(CryptoError::Mac);
        }
        let mut out = ct.to_vec();
        let iv: [u8; 16] = iv.try_into().expect("split_at(16)");
        let mut c = Aes256Ctr::new(&self.encrypt.into(), &iv.into());
        c.apply_keystream(&mut out);
        Ok(out)
    }

    /// The master key as restic stores it inside a key file.
    pub fn to_json(&self) -> MasterKeyJson {
        let b = base64::engine::general_purpose::STANDARD;
        MasterKeyJson {
            mac: MacJson {
                k: b.encode(self.mac_k),
                r: b.encode(self.mac_r),
            },
            encrypt: b.encode(self.encrypt),
        }
    }

    /// Parses the master key JSON from a decrypted key file.
    pub fn from_json(j: &MasterKeyJson) -> Option<Key> {
        let b = base64::engine::general_purpose::STANDARD;
        let mut k = Key {
            encrypt: b.decode(&j.encrypt).ok()?.try_into().ok()?,
            mac_k: b.decode(&j.mac.k).ok()?.try_into().ok()?,
            mac_r: b.decode(&j.mac.r).ok()?.try_into().ok()?,
        };
        k.mask_r();
        Some(k)
    }
}

/// `{"mac": {"k", "r"}, "encrypt"}`, base64 fields.
#[derive(Serialize, Deserialize)]
pub struct MasterKeyJson {
    /// The Poly1305-AES key.
    pub mac: MacJson,
    /// The AES-256 key.
    pub encrypt: String,
}

/// The two halves of the Poly1305-AES key.
#[derive(Serialize, Deserialize)]
pub struct MacJson {
    /// AES-128 key that encrypts the nonce.
    pub k: String,
    /// The polynomial evaluation key.
    pub r: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = Key::random();
        let ct = k.encrypt(b"attack at dawn");
        assert_eq!(ct.len(), 14 + OVERHEAD);
        assert_eq!(k.decrypt(&ct).unwrap(), b"attack at dawn");
        let mut bad = ct.clone();
        bad[20] ^= 1;
        assert!(matches!(k.decrypt(&bad), Err(CryptoError::Mac)));
        assert!(Key::random().decrypt(&ct).is_err());
        assert_eq!(k.decrypt(&k.encrypt(b"")).unwrap(), b"");
    }

    #[test]
    fn sealed_len_is_found_by_scanning() {
        let k = Key::random();
        let mut buf = Vec::new();
        let sizes = [0usize, 1, 15, 16, 17, 31, 32, 33, 1000, 4099];
        for n in sizes {
            k.encrypt_into(&vec![7u8; n], &mut buf);
        }
        buf.extend_from_slice(&[0xaa; 100]);
        let mut at = 0;
        for n in sizes {
            let len = k.sealed_len_at(&buf[at..]).expect("found");
            assert_eq!(len, n + OVERHEAD);
            assert_eq!(k.decrypt(&buf[at..at + len]).unwrap(), vec![7u8; n]);
            at += len;
        }
        assert_eq!(k.sealed_len_at(&buf[at..]), None);
        // One flipped byte in the 1000-byte object: it no longer authenticates at any end,
        // and the scan does not mistake a later object's end for its own.
        let start: usize = sizes[..8].iter().map(|n| n + OVERHEAD).sum();
        buf[start + IV + 500] ^= 1;
        assert_eq!(k.sealed_len_at(&buf[start..]), None);
        // Not an object start at all.
        assert_eq!(k.sealed_len_at(&buf[start + 1..]), None);
    }

    // Poly1305-AES test vector from Bernstein's paper (also in restic's crypto tests).
    #[test]
    fn poly1305_aes_vector() {
        let h = |s: &str| hex::decode(s).unwrap();
        let mut k = Key::random();
        k.mac_k
            .copy_from_slice(&h("ec074c835580741701425b623235add6"));
        k.mac_r
            .copy_from_slice(&h("851fc40c3467ac0be05cc20404f3f700"));
        let nonce = h("fb447350c4e868c52ac3275cf9d4327e");
        let msg = h("f3f6");
        assert_eq!(
            hex::encode(k.mac(&nonce, &msg)),
            "f4c633c3044fc145f84f335cb81953de"
        );
    }
}
