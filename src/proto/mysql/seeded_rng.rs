//! A deterministic random generator expanding the caller's 32-byte seed with SHA-256 in counter
//! mode (block i = SHA-256(seed || i)), so the core draws randomness without asking the
//! operating system, and tests can reproduce every byte it sends.
//!
//! Its only use is the OAEP seed (20 bytes) when encrypting the password for
//! `caching_sha2_password` full authentication. It is as unpredictable as the seed and no more:
//! the runtime must pass fresh bytes from the operating system for every connection. It does not
//! reseed, and it is not meant for anything long-lived.

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub(super) struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    pub(super) fn new(seed: [u8; 32]) -> Self {
        SeededRng {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn fill(&mut self, dst: &mut [u8]) {
        for byte in dst {
            if self.used == self.block.len() {
                let mut hasher = Sha256::new();
                hasher.update(self.seed);
                hasher.update(self.counter.to_le_bytes());
                self.block.copy_from_slice(&hasher.finalize());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for SeededRng {}
