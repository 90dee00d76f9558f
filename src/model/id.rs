//! Unguessable identifiers (command sessions, subscription ids, stanza ids) and secret tokens
//! (export links), stored hashed.

/// 128 random bits as hex. Another user must not be able to guess a session or subid.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is a broken host; time and a counter keep ids unique rather than
        // refusing every request.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 256 random bits as hex, for a secret that grants access by itself (an export link); `None`
/// when the OS has no randomness: unlike [`random_id`], such a token must never be guessable.
pub(crate) fn secret_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the store keeps of a secret token: its SHA-256, lower-case hex.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_long_and_distinct() {
        let a = super::random_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, super::random_id());
    }

    #[test]
    fn secret_tokens_are_256_bits_and_stored_hashed() {
        let token = super::secret_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(Some(&token), super::secret_token().as_ref());
        assert_eq!(
            super::token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
