//! What the archiver's integration tests share.

use std::sync::Arc;

use coffer_repo::backend::Location;
use coffer_repo::{InitOptions, Repository};

/// A new repository in `dir/repo`, with a cheap key derivation.
pub fn new_repo(dir: &std::path::Path) -> Arc<Repository> {
    std::env::set_var("COFFER_KDF_N", "1024");
    let loc = Location::Local(dir.join("repo"));
    Arc::new(Repository::init(&loc, "pw", &InitOptions::default()).expect("init"))
}

/// Pseudo-random bytes (xorshift): the same for the same `state`, and incompressible.
pub struct Noise(pub u64);

impl Noise {
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}
