//! G.729 (Annex A, with Annex B comfort noise) decoding through the system's bcg729 library
//! (Debian `libbcg729-dev`), behind a safe [`G729Decoder`]. This is the crate's only foreign code:
//! the three `extern "C"` functions of `bcg729/decoder.h`, called with lengths checked here.
//!
//! RTP payload (RFC 3551 section 4.5.6): any number of 10-byte frames (10 ms, 80 samples at
//! 8 kHz each), optionally followed by one 2-byte Annex B SID frame (comfort noise: 80 samples).
//! An empty payload carries nothing.
#![allow(unsafe_code)]

use std::ptr::NonNull;

/// Output sample rate.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples per frame.
pub const FRAME_SAMPLES: usize = 80;
const FRAME_BYTES: usize = 10;
const SID_BYTES: usize = 2;

/// bcg729's opaque decoder context.
#[repr(C)]
struct Bcg729Context {
    _private: [u8; 0],
}

#[link(name = "bcg729")]
unsafe extern "C" {
    fn initBcg729DecoderChannel() -> *mut Bcg729Context;
    fn closeBcg729DecoderChannel(ctx: *mut Bcg729Context);
    fn bcg729Decoder(
        ctx: *mut Bcg729Context,
        bit_stream: *const u8,
        bit_stream_length: u8,
        frame_erasure_flag: u8,
        sid_frame_flag: u8,
        rfc3389_payload_flag: u8,
        signal: *mut i16,
    );
}

/// Why a G.729 decoder could not be made or a payload decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum G729Error {
    #[error("bcg729 could not allocate a decoder")]
    Init,
    #[error("G.729 payload of {0} bytes is not 10-byte frames plus an optional 2-byte SID")]
    Length(usize),
}

/// A G.729A/B decoder for one stream (bcg729 context, a few KiB, allocated once).
#[derive(Debug)]
pub struct G729Decoder {
    ctx: NonNull<Bcg729Context>,
}

// SAFETY: the context is plain heap memory owned by this value and used only through `&mut self`;
// bcg729 keeps no thread-local or global state.
unsafe impl Send for G729Decoder {}

impl G729Decoder {
    pub fn new() -> Result<Self, G729Error> {
        // SAFETY: no arguments; returns a new context or null.
        let ctx = unsafe { initBcg729DecoderChannel() };
        NonNull::new(ctx)
            .map(|ctx| G729Decoder { ctx })
            .ok_or(G729Error::Init)
    }

    /// Decodes one frame: 10 bytes (speech) or 2 bytes (Annex B SID) into 80 samples.
    pub fn decode_frame(
        &mut self,
        frame: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), G729Error> {
        let sid = match frame.len() {
            FRAME_BYTES => false,
            SID_BYTES => true,
            n => return Err(G729Error::Length(n)),
        };
        // SAFETY: `frame` holds `frame.len()` (10 or 2) readable bytes, which is what the length
        // argument says; `out` has room for the 80 samples bcg729 writes; the context is valid
        // and exclusively borrowed.
        unsafe {
            bcg729Decoder(
                self.ctx.as_ptr(),
                frame.as_ptr(),
                frame.len() as u8,
                0,
                u8::from(sid),
                0,
                out.as_mut_ptr(),
            );
        }
        Ok(())
    }
}

/// Splits an RTP payload into its frames (10-byte frames, then an optional 2-byte SID), or says
/// why it cannot be split.
pub fn frames(payload: &[u8]) -> Result<std::slice::Chunks<'_, u8>, G729Error> {
    match payload.len() % FRAME_BYTES {
        0 | SID_BYTES => Ok(payload.chunks(FRAME_BYTES)),
        _ => Err(G729Error::Length(payload.len())),
    }
}

impl Drop for G729Decoder {
    fn drop(&mut self) {
        // SAFETY: the context came from `initBcg729DecoderChannel` and is closed exactly once.
        unsafe { closeBcg729DecoderChannel(self.ctx.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_sid_and_bad_lengths() {
        let mut d = G729Decoder::new().expect("decoder");
        let mut out = [0i16; FRAME_SAMPLES];
        let f: Vec<&[u8]> = frames(&[0x55; 22]).expect("splits").collect();
        assert_eq!(f.iter().map(|f| f.len()).collect::<Vec<_>>(), [10, 10, 2]);
        for frame in f {
            d.decode_frame(frame, &mut out).expect("decodes");
        }
        assert_eq!(frames(&[0x55; 13]).err(), Some(G729Error::Length(13)));
        assert_eq!(frames(&[]).expect("empty").count(), 0);
        assert_eq!(d.decode_frame(&[0; 3], &mut out), Err(G729Error::Length(3)));
    }
}
