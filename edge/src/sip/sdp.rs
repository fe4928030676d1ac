//! SDP parsing (RFC 8866) for what the recorder needs: connection addresses (session and media
//! level, IPv4 and IPv6), media lines with port and payload types, `a=rtpmap`, `a=fmtp`, `a=ptime`,
//! and the direction attributes.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, ...
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub payload_types: Vec<u8>,
    /// The media-level `c=` or else the session's.
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <parameters>`: payload type and its parameters, as written.
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    pub direction: Direction,
}

impl MediaDescription {
    /// The rtpmap of a payload type, falling back to the static RFC 3551 assignments.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.rtpmaps
            .iter()
            .find(|m| m.payload_type == pt)
            .cloned()
            .or_else(|| static_rtpmap(pt))
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    pub connection: Option<IpAddr>,
    pub media: Vec<MediaDescription>,
}

/// Why a body is not SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP does not start with v=0")]
    NoVersion,
    #[error("too many media sections")]
    TooManyMedia,
}

const MAX_MEDIA: usize = 32;
const MAX_FORMATS: usize = 64;
/// Longer `a=fmtp` parameters are ignored.
const MAX_FMTP_LEN: usize = 4096;

/// Parses an SDP body. Unknown or malformed lines are ignored; a body without `v=` is refused.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut sd = SessionDescription::default();
    let mut session_dir = Direction::SendRecv;
    let mut seen_v = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "v" => seen_v = true,
            "c" => {
                let addr = parse_connection(v);
                match sd.media.last_mut() {
                    Some(m) => m.connection = addr.or(m.connection),
                    None => sd.connection = addr,
                }
            }
            "m" => {
                if sd.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                let mut it = v.split_whitespace();
                let media = it.next().unwrap_or("").to_string();
                let port = it
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let proto = it.next().unwrap_or("").to_string();
                let payload_types = it
                    .filter_map(|f| f.parse().ok())
                    .take(MAX_FORMATS)
                    .collect();
                sd.media.push(MediaDescription {
                    media,
                    port,
                    proto,
                    payload_types,
                    connection: sd.connection,
                    rtpmaps: Vec::new(),
                    fmtps: Vec::new(),
                    ptime: None,
                    direction: session_dir,
                });
            }
            "a" => {
                let (name, value) = v.split_once(':').unwrap_or((v, ""));
                let dir = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                match (sd.media.last_mut(), dir) {
                    (Some(m), Some(d)) => m.direction = d,
                    (None, Some(d)) => session_dir = d,
                    (Some(m), None) => match name {
                        "rtpmap" => {
                            if let Some(map) = parse_rtpmap(value)
                                && m.rtpmaps.len() < MAX_FORMATS
                            {
                                m.rtpmaps.push(map);
                            }
                        }
                        "fmtp" => {
                            if let Some((pt, params)) = value.trim().split_once(' ')
                                && let Ok(pt) = pt.parse()
                                && params.len() <= MAX_FMTP_LEN
                                && m.fmtps.len() < MAX_FORMATS
                            {
                                m.fmtps.push((pt, params.trim().to_string()));
                            }
                        }
                        "ptime" => m.ptime = value.trim().parse().ok(),
                        _ => {}
                    },
                    (None, None) => {}
                }
            }
            _ => {}
        }
    }
    if !seen_v {
        return Err(SdpError::NoVersion);
    }
    Ok(sd)
}

/// `IN IP4 1.2.3.4[/ttl]` or `IN IP6 ::1`.
fn parse_connection(v: &str) -> Option<IpAddr> {
    let mut it = v.split_whitespace();
    let _net = it.next()?;
    let _kind = it.next()?;
    let addr = it.next()?.split('/').next()?;
    addr.parse().ok()
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = parts
        .next()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(1);
    Some(RtpMap {
        payload_type: pt.parse().ok()?,
        encoding,
        clock_rate,
        channels,
    })
}

/// The RFC 3551 static payload types.
pub fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (enc, rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        18 => ("G729", 8000),
        26 => ("JPEG", 90000),
        31 => ("H261", 90000),
        32 => ("MPV", 90000),
        34 => ("H263", 90000),
        _ => return None,
    };
    Some(RtpMap {
        payload_type: pt,
        encoding: enc.to_string(),
        clock_rate: rate,
        channels: if pt == 10 { 2 } else { 1 },
    })
}
