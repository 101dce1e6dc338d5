//! What the archiver's integration tests share.

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
