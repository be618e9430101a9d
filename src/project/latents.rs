//! The pool's VAE latents (posterior means of every store slice), saved next
//! to the VAE that produced them: `models/latents.bin` holds a small header
//! (magic, store key, dim, count) and little-endian f32 rows.

use std::path::Path;

use crate::fsutil::write_atomic;
use crate::strategy::Latents;

const MAGIC: &[u8; 8] = b"NSLATNT1";

pub fn save(path: &Path, store_key: &str, latents: &Latents) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(40 + latents.values.len() * 4);
    bytes.extend_from_slice(MAGIC);
    let mut key = [0u8; 16];
    let n = store_key.len().min(16);
    key[..n].copy_from_slice(&store_key.as_bytes()[..n]);
    bytes.extend_from_slice(&key);
    bytes.extend_from_slice(&(latents.dim as u64).to_le_bytes());
    bytes.extend_from_slice(&(latents.len() as u64).to_le_bytes());
    for v in &latents.values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// The store key the latents at `path` were written for, if readable.
pub fn key_of(path: &Path) -> Option<String> {
    let mut header = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open(path).ok()?, &mut header).ok()?;
    if &header[..8] != MAGIC {
        return None;
    }
    let key = &header[8..24];
    let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    Some(String::from_utf8_lossy(&key[..end]).into_owned())
}

/// Loads latents written for the store `store_key`; `None` if the file is
/// missing, damaged or belongs to another store (the pool changed).
pub fn load(path: &Path, store_key: &str) -> Option<Latents> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return None;
    }
    let key = String::from_utf8_lossy(&bytes[8..24])
        .trim_end_matches('\0')
        .to_string();
    if key != store_key {
        return None;
    }
    let dim = u64::from_le_bytes(bytes[24..32].try_into().ok()?) as usize;
    let count = u64::from_le_bytes(bytes[32..40].try_into().ok()?) as usize;
    let body = &bytes[40..];
    if dim == 0 || body.len() != dim.checked_mul(count)?.checked_mul(4)? {
        return None;
    }
    let values = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(Latents { dim, values })
}
