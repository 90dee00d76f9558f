//! The bus key: every device on one xAAL bus shares it.

use std::fmt;

/// A 32-byte ChaCha20-Poly1305 key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

/// Why a hex key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("an xAAL key is 64 hexadecimal digits, got {0} characters")]
    Length(usize),
    #[error("an xAAL key is 64 hexadecimal digits, found a non-hex character")]
    NotHex,
}

impl Key {
    /// The key `xaal-lib` derives from a passphrase: scrypt with a salt of 32 zero bytes,
    /// N = 2^14, r = 8, p = 1, 32 bytes out (what `xaal-keygen` prints).
    ///
    /// Costs about 16 MiB and a noticeable fraction of a second: derive once at start.
    pub fn from_passphrase(passphrase: &str) -> Key {
        let mut out = [0u8; 32];
        // Constant, valid parameters and a 32-byte output: neither call can fail.
        let params = scrypt::Params::new(14, 8, 1, 32).expect("valid scrypt parameters");
        scrypt::scrypt(passphrase.as_bytes(), &[0u8; 32], &params, &mut out)
            .expect("valid scrypt output length");
        Key(out)
    }

    /// A key written as 64 hex digits (the `key=` of `xaal.ini`); surrounding blanks are ignored.
    pub(crate) fn from_hex(hex: &str) -> Result<Key, KeyError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(KeyError::Length(hex.len()));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Key(out))
    }

    /// The key as 64 lowercase hex digits, to compare keys in tests.
    #[cfg(test)]
    pub(crate) fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn nibble(c: u8) -> Result<u8, KeyError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(KeyError::NotHex),
    }
}

impl fmt::Debug for Key {
    /// Never prints the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}
