//! The audio codecs the recorder decodes ([`Codec`]: G.711, G.722, G.729A/B, Opus) and one
//! stream's decoder ([`AudioDecoder`]), which turns RTP payloads into samples at the recording's
//! WAV rate (8 or 16 kHz): narrowband codecs are upsampled 2x by linear interpolation into a
//! 16 kHz file, G.722 is averaged down 2x into an 8 kHz one, Opus decodes at the WAV rate itself.
//! Decoder state is allocated once per stream; decoding a payload allocates nothing (samples go
//! through a stack buffer to the caller's sink in chunks). Also [`opus_samples`], the duration an
//! Opus packet's TOC byte announces, used to recognise Opus on a payload type no SDP mapped.

use super::g711::Law;
use super::g722::G722Decoder;
use super::g729::{self, G729Decoder, G729Error};

/// A decodable audio encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    G711(Law),
    G722,
    /// G.729 and its Annex A/B variants (one bit stream format).
    G729,
    Opus,
}

/// Why a stream's payload was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("G.729: {0}")]
    G729(#[from] G729Error),
    #[error("Opus: {}", .0.description())]
    Opus(opus::ErrorCode),
    #[error("WAV rate {0} Hz is not 8000 or 16000")]
    Rate(u32),
}

impl Codec {
    /// The codec of an SDP encoding name (any case): `PCMU`, `PCMA`, `G722`, `G729`
    /// (`G729A`/`G729B` too), `opus`.
    pub fn from_encoding(name: &str) -> Option<Codec> {
        if let Some(law) = Law::from_encoding(name) {
            return Some(Codec::G711(law));
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("G722") {
            Some(Codec::G722)
        } else if is("G729") || is("G729A") || is("G729B") || is("G729AB") {
            Some(Codec::G729)
        } else if is("opus") {
            Some(Codec::Opus)
        } else {
            None
        }
    }

    /// Whether the codec carries audio above 4 kHz (wants a 16 kHz WAV).
    pub fn is_wideband(self) -> bool {
        matches!(self, Codec::G722 | Codec::Opus)
    }
}

/// Samples handed to the sink at once (a stack buffer).
const CHUNK: usize = 1024;
/// The longest Opus packet (120 ms) at 16 kHz.
const OPUS_MAX: usize = 1920;

#[derive(Debug)]
enum State {
    G711(Law),
    /// Boxed: the state is ~450 bytes, the other variants a pointer or less.
    G722(Box<G722Decoder>),
    G729(G729Decoder),
    Opus(opus::Decoder),
}

/// One stream's decoder, producing samples at a fixed output rate (8000 or 16000 Hz).
#[derive(Debug)]
pub struct AudioDecoder {
    codec: Codec,
    state: State,
    out_rate: u32,
    /// Last input sample, for interpolating across payloads when upsampling.
    last: i16,
}

impl AudioDecoder {
    pub fn new(codec: Codec, out_rate: u32) -> Result<Self, DecodeError> {
        if out_rate != 8000 && out_rate != 16_000 {
            return Err(DecodeError::Rate(out_rate));
        }
        let state = match codec {
            Codec::G711(law) => State::G711(law),
            Codec::G722 => State::G722(Box::default()),
            Codec::G729 => State::G729(G729Decoder::new()?),
            Codec::Opus => State::Opus(
                opus::Decoder::new(out_rate, opus::Channels::Mono)
                    .map_err(|e| DecodeError::Opus(e.code()))?,
            ),
        };
        Ok(AudioDecoder {
            codec,
            state,
            out_rate,
            last: 0,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Decodes one RTP payload, handing its samples (at the output rate, in order) to `sink` in
    /// chunks; returns how many samples it handed over. A payload the codec rejects hands over
    /// nothing and returns the codec's error (converted into `E`); a sink error stops decoding.
    pub fn decode<E: From<DecodeError>>(
        &mut self,
        payload: &[u8],
        mut sink: impl FnMut(&[i16]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let up = self.out_rate == 16_000;
        let mut total = 0;
        match &mut self.state {
            State::G711(law) => {
                let table = law.table();
                let mut buf = [0i16; CHUNK];
                for part in payload.chunks(CHUNK / 2) {
                    let mut pcm = [0i16; CHUNK / 2];
                    for (o, &b) in pcm.iter_mut().zip(part) {
                        *o = table[usize::from(b)];
                    }
                    let pcm = pcm.get(..part.len()).unwrap_or_default();
                    let n = resample(pcm, up, false, &mut self.last, &mut buf);
                    sink(buf.get(..n).unwrap_or_default())?;
                    total += n;
                }
            }
            State::G722(dec) => {
                let mut pcm = [0i16; CHUNK];
                for part in payload.chunks(CHUNK / 2) {
                    let n = dec.decode(part, &mut pcm);
                    let pcm = pcm.get(..n).unwrap_or_default();
                    if up {
                        sink(pcm)?;
                        total += n;
                    } else {
                        let mut buf = [0i16; CHUNK / 2];
                        let n = resample(pcm, false, true, &mut self.last, &mut buf);
                        sink(buf.get(..n).unwrap_or_default())?;
                        total += n;
                    }
                }
            }
            State::G729(dec) => {
                let frames = g729::frames(payload).map_err(DecodeError::from)?;
                let mut pcm = [0i16; g729::FRAME_SAMPLES];
                let mut buf = [0i16; 2 * g729::FRAME_SAMPLES];
                for frame in frames {
                    dec.decode_frame(frame, &mut pcm)
                        .map_err(DecodeError::from)?;
                    let n = resample(&pcm, up, false, &mut self.last, &mut buf);
                    sink(buf.get(..n).unwrap_or_default())?;
                    total += n;
                }
            }
            State::Opus(dec) => {
                // An empty payload carries nothing (an empty input would ask for concealment).
                if payload.is_empty() {
                    return Ok(0);
                }
                let mut pcm = [0i16; OPUS_MAX];
                let n = dec
                    .decode(payload, &mut pcm, false)
                    .map_err(|e| DecodeError::Opus(e.code()))?;
                sink(pcm.get(..n).unwrap_or_default())?;
                total += n;
            }
        }
        Ok(total)
    }
}

/// Copies `pcm` into `out`, doubling its rate (`up`: each sample preceded by the mean of it and
/// the one before) or halving it (`down`: the mean of each pair); returns the samples written.
#[inline]
fn resample(pcm: &[i16], up: bool, down: bool, last: &mut i16, out: &mut [i16]) -> usize {
    let mut n = 0;
    if up {
        for (&s, pair) in pcm.iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = ((i32::from(*last) + i32::from(s)) >> 1) as i16;
            pair[1] = s;
            *last = s;
            n += 2;
        }
    } else if down {
        for (pair, o) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *o = ((i32::from(pair[0]) + i32::from(pair[1])) >> 1) as i16;
            n += 1;
        }
    } else {
        for (&s, o) in pcm.iter().zip(out.iter_mut()) {
            *o = s;
            n += 1;
        }
        if let Some(&s) = pcm.last() {
            *last = s;
        }
    }
    n
}

/// The samples at 48 kHz an Opus packet holds, from its TOC byte and frame count (RFC 6716
/// section 3.1), or `None` when the packet cannot be Opus (empty, no frame count, over 120 ms).
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u32 = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (frames > 0 && total <= 5760).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Codec::from_encoding("pcmu"), Some(Codec::G711(Law::Ulaw)));
        assert_eq!(Codec::from_encoding("G722"), Some(Codec::G722));
        assert_eq!(Codec::from_encoding("G729"), Some(Codec::G729));
        assert_eq!(Codec::from_encoding("OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_encoding("G723"), None);
        assert!(Codec::Opus.is_wideband() && !Codec::G729.is_wideband());
    }

    #[test]
    fn opus_toc_durations() {
        // config 1 (SILK NB 20 ms), one frame.
        assert_eq!(opus_samples(&[1 << 3]), Some(960));
        // config 31 (CELT FB 20 ms), two frames.
        assert_eq!(opus_samples(&[(31 << 3) | 1, 0]), Some(1920));
        // config 3 (SILK 60 ms), code 3 with 2 frames = 120 ms; 3 frames is too long.
        assert_eq!(opus_samples(&[(3 << 3) | 3, 2]), Some(5760));
        assert_eq!(opus_samples(&[(3 << 3) | 3, 3]), None);
        assert_eq!(opus_samples(&[(3 << 3) | 3, 0]), None);
        assert_eq!(opus_samples(&[(3 << 3) | 3]), None);
        assert_eq!(opus_samples(&[]), None);
    }

    #[test]
    fn g711_up_and_g722_down_keep_timing() {
        let mut d = AudioDecoder::new(Codec::G711(Law::Alaw), 16_000).expect("decoder");
        let mut got = Vec::new();
        let n = d
            .decode(&[0xd5; 1500], |s| {
                got.extend_from_slice(s);
                Ok::<_, DecodeError>(())
            })
            .expect("decodes");
        assert_eq!(n, 3000);
        assert_eq!(got.len(), 3000);
        assert!(got.iter().skip(1).all(|&s| s == 8));
        let mut d = AudioDecoder::new(Codec::G722, 8000).expect("decoder");
        let n = d
            .decode(&[0x55; 700], |_| Ok::<_, DecodeError>(()))
            .expect("decodes");
        assert_eq!(n, 700);
        assert_eq!(
            AudioDecoder::new(Codec::G722, 44_100).err(),
            Some(DecodeError::Rate(44_100))
        );
    }

    #[test]
    fn bad_payloads_hand_over_nothing() {
        let mut d = AudioDecoder::new(Codec::G729, 8000).expect("decoder");
        let mut calls = 0;
        let r = d.decode(&[1; 15], |_| {
            calls += 1;
            Ok::<_, DecodeError>(())
        });
        assert_eq!(r, Err(DecodeError::G729(G729Error::Length(15))));
        let mut d = AudioDecoder::new(Codec::Opus, 16_000).expect("decoder");
        // Code 3 with a zero frame count is invalid.
        let r = d.decode(&[0x03, 0x00], |_| {
            calls += 1;
            Ok::<_, DecodeError>(())
        });
        assert!(matches!(r, Err(DecodeError::Opus(_))), "{r:?}");
        assert_eq!(calls, 0);
    }
}
