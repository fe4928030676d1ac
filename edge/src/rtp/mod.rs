//! RTP: header parsing ([`parse`]), RFC 3550 per-stream statistics ([`stats`]) and their E-model
//! MOS per codec ([`emodel`]), RTCP SR/RR/XR ([`rtcp`]), RFC 4733
//! telephone events ([`parse_telephone_event`]) and audio decoding: [`codec`] (which codecs, one
//! stream's decoder at the WAV rate) over [`g711`], [`g722`] (pure Rust), [`g729`] (bcg729, the
//! crate's only foreign code) and Opus (libopus through the `opus` crate); video depacketization:
//! [`h264`] (RFC 6184) and [`vp8`] (RFC 7741) into frames ([`frame`]). Pure: no IO.

pub mod codec;
pub mod emodel;
pub mod frame;
pub mod g711;
pub mod g722;
pub mod g729;
pub mod h264;
pub mod rtcp;
pub mod stats;
pub mod vp8;

pub use stats::StreamStats;

/// Why a payload is not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    Short,
    #[error("RTP version {0} (expected 2)")]
    Version(u8),
    #[error("CSRC list, extension or padding exceeds the packet")]
    BadLength,
}

/// A parsed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    pub has_extension: bool,
    /// The payload without header, CSRCs, extension and padding.
    pub payload: &'a [u8],
}

/// Parses an RTP packet (RFC 3550 section 5.1).
pub fn parse(data: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let h = data.get(..12).ok_or(RtpError::Short)?;
    let version = h[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let padding = h[0] & 0x20 != 0;
    let has_extension = h[0] & 0x10 != 0;
    let csrc_count = h[0] & 0x0f;
    let mut off = 12 + usize::from(csrc_count) * 4;
    if has_extension {
        let ext = data.get(off..off + 4).ok_or(RtpError::BadLength)?;
        off += 4 + usize::from(u16::from_be_bytes([ext[2], ext[3]])) * 4;
    }
    let mut end = data.len();
    if padding {
        let pad = usize::from(*data.last().ok_or(RtpError::BadLength)?);
        end = end.checked_sub(pad).ok_or(RtpError::BadLength)?;
    }
    let payload = data.get(off..end).ok_or(RtpError::BadLength)?;
    Ok(RtpPacket {
        marker: h[1] & 0x80 != 0,
        payload_type: h[1] & 0x7f,
        seq: u16::from_be_bytes([h[2], h[3]]),
        timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        csrc_count,
        has_extension,
        payload,
    })
}

/// Whether a version-2 packet carries an RTCP packet type (RFC 5761: 192..=223).
pub fn is_rtcp(data: &[u8]) -> bool {
    matches!(data, [b0, b1, ..] if b0 >> 6 == 2 && (192..=223).contains(b1))
}

/// An RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

/// Parses a telephone-event payload.
pub fn parse_telephone_event(p: &[u8]) -> Option<TelephoneEvent> {
    let b = p.get(..4)?;
    Some(TelephoneEvent {
        event: b[0],
        end: b[1] & 0x80 != 0,
        volume: b[1] & 0x3f,
        duration: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// The DTMF digit of an RFC 4733 event code.
pub fn dtmf_digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        16 => '!', // flash
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_with_csrc_extension_padding() {
        let mut p = vec![
            0xb1, 0x88, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef,
        ];
        p.extend_from_slice(&[1, 2, 3, 4]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension of 1 word
        p.extend_from_slice(&[7, 7, 7]); // payload
        p.extend_from_slice(&[0, 2]); // padding of 2
        let r = parse(&p).expect("parses");
        assert!(r.marker);
        assert_eq!(r.payload_type, 8);
        assert_eq!(r.seq, 0x1234);
        assert_eq!(r.timestamp, 320);
        assert_eq!(r.ssrc, 0xdeadbeef);
        assert_eq!(r.payload, &[7, 7, 7]);
        assert_eq!(parse(&p[..11]), Err(RtpError::Short));
        let mut bad = p.clone();
        bad[0] = 0x40;
        assert_eq!(parse(&bad), Err(RtpError::Version(1)));
        let mut pad = p.clone();
        if let Some(l) = pad.last_mut() {
            *l = 200;
        }
        assert_eq!(parse(&pad), Err(RtpError::BadLength));
    }
}
