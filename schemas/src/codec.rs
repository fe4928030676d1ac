//! CBOR encoding and bounded decoding of every tapfleet message.
//!
//! Decoding takes bytes from the network, so it is bounded: the input length is checked against
//! the message's [`Message::MAX_BYTES`] before parsing, nesting is limited to [`MAX_DEPTH`], and
//! ciborium never pre-allocates from a declared length. A schema version other than the one
//! this crate speaks is reported as [`DecodeError::UnsupportedVersion`], not as a shape error.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The schema version every message of this crate carries in its `v` field.
pub const SCHEMA_VERSION: u16 = 1;

/// Deepest CBOR nesting accepted when decoding.
pub const MAX_DEPTH: usize = 32;

/// A tapfleet wire message.
pub trait Message: Serialize + DeserializeOwned {
    /// Name used in errors and logs.
    const KIND: &'static str;
    /// Largest encoded size accepted by [`decode`].
    const MAX_BYTES: usize;
    /// The message's schema version (its `v` field).
    fn version(&self) -> u16;
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind}: {len} bytes exceeds the limit of {max}")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind}: schema version {found} is not supported (this build speaks {SCHEMA_VERSION})")]
    UnsupportedVersion { kind: &'static str, found: u16 },
    #[error("{kind}: malformed CBOR: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

/// Why a message could not be encoded (only an I/O failure of the sink can cause it).
#[derive(Debug, thiserror::Error)]
#[error("{kind}: cannot encode: {reason}")]
pub struct EncodeError {
    pub kind: &'static str,
    pub reason: String,
}

/// Encodes a message as CBOR.
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    ciborium::into_writer(msg, &mut out).map_err(|e| EncodeError {
        kind: M::KIND,
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes a message from untrusted bytes, within the message's bounds.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    if bytes.len() > M::MAX_BYTES {
        return Err(DecodeError::TooLarge {
            kind: M::KIND,
            len: bytes.len(),
            max: M::MAX_BYTES,
        });
    }
    match ciborium::de::from_reader_with_recursion_limit::<M, _>(bytes, MAX_DEPTH) {
        Ok(msg) if msg.version() == SCHEMA_VERSION => Ok(msg),
        Ok(msg) => Err(DecodeError::UnsupportedVersion {
            kind: M::KIND,
            found: msg.version(),
        }),
        Err(e) => {
            // A message of another version may not have this version's shape: say so.
            #[derive(Deserialize)]
            struct Probe {
                v: u16,
            }
            match ciborium::de::from_reader_with_recursion_limit::<Probe, _>(bytes, MAX_DEPTH) {
                Ok(p) if p.v != SCHEMA_VERSION => Err(DecodeError::UnsupportedVersion {
                    kind: M::KIND,
                    found: p.v,
                }),
                _ => Err(DecodeError::Malformed {
                    kind: M::KIND,
                    reason: e.to_string(),
                }),
            }
        }
    }
}

/// Implements [`Message`] for a struct with a `v: u16` field.
macro_rules! message {
    ($ty:ty, $kind:literal, $max:expr) => {
        impl $crate::codec::Message for $ty {
            const KIND: &'static str = $kind;
            const MAX_BYTES: usize = $max;
            fn version(&self) -> u16 {
                self.v
            }
        }
    };
}
pub(crate) use message;
