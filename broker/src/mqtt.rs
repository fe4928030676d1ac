//! A small, bounded MQTT 3.1.1 packet framer and parser: just what the gate needs to authorize
//! clients. Pure: bytes in, typed values or [`MqttError`] out; no IO, no panics on any input.
//!
//! - [`frame`] reads a fixed header (type, flags, remaining length) and says how long the packet
//!   is, refusing a remaining length above the caller's bound before any body is buffered.
//! - [`parse_connect`] / [`encode_connect`]: CONNECT with will, user name and password.
//! - [`parse_subscribe`] / [`encode_subscribe`], [`parse_suback`] / [`encode_suback`].
//! - [`parse_publish`]: the topic, QoS, retain flag and packet id of a PUBLISH (the payload is
//!   passed through untouched).
//!
//! Every other packet is passed through by the gate after framing.

use std::fmt;

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

/// Largest remaining length MQTT can encode (4 bytes of variable length).
pub const MAX_REMAINING_LEN: usize = 268_435_455;

/// CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
pub mod connack {
    pub const ACCEPTED: u8 = 0;
    pub const BAD_PROTOCOL_VERSION: u8 = 1;
    pub const IDENTIFIER_REJECTED: u8 = 2;
    pub const BAD_USER_OR_PASSWORD: u8 = 4;
    pub const NOT_AUTHORIZED: u8 = 5;
}

/// The SUBACK return code of a refused filter.
pub const SUBACK_FAILURE: u8 = 0x80;

/// Why bytes are not a valid MQTT 3.1.1 packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    #[error("malformed remaining length")]
    MalformedLength,
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("packet truncated in {0}")]
    Truncated(&'static str),
    #[error("{0} holds bytes after its end")]
    Trailing(&'static str),
    #[error("string is not valid UTF-8 or holds U+0000")]
    BadString,
    #[error("unsupported protocol {name:?} level {level}")]
    Protocol { name: String, level: u8 },
    #[error("invalid {0} flags")]
    Flags(&'static str),
    #[error("invalid QoS {0}")]
    Qos(u8),
    #[error("SUBSCRIBE without a filter")]
    NoFilters,
    #[error("packet id 0 where one is required")]
    ZeroPacketId,
    #[error("PUBLISH topic is empty or holds a wildcard")]
    BadTopic,
    #[error("packet too large to encode")]
    Encode,
}

/// A packet's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// First byte: type (high nibble) and flags (low nibble).
    pub byte1: u8,
    /// Bytes of the fixed header (2 to 5).
    pub header_len: usize,
    /// Bytes after the fixed header.
    pub remaining_len: usize,
}

impl FixedHeader {
    pub fn packet_type(&self) -> u8 {
        self.byte1 >> 4
    }

    pub fn flags(&self) -> u8 {
        self.byte1 & 0x0f
    }

    /// Length of the whole packet.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads the fixed header at the start of `buf`. `Ok(None)`: more bytes are needed to know the
/// length. A remaining length above `max_remaining` is refused as soon as it is known.
pub fn frame(buf: &[u8], max_remaining: usize) -> Result<Option<FixedHeader>, MqttError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A non-minimal encoding (trailing 0x80 .. 0x00) is accepted like brokers do.
            if len > max_remaining {
                return Err(MqttError::TooLarge {
                    len,
                    max: max_remaining,
                });
            }
            return Ok(Some(FixedHeader {
                byte1,
                header_len: 2 + i,
                remaining_len: len,
            }));
        }
    }
    Err(MqttError::MalformedLength)
}

/// Appends the variable-length encoding of `len`.
fn put_remaining_len(out: &mut Vec<u8>, mut len: usize) -> Result<(), MqttError> {
    if len > MAX_REMAINING_LEN {
        return Err(MqttError::Encode);
    }
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            return Ok(());
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Result<(), MqttError> {
    let n = u16::try_from(s.len()).map_err(|_| MqttError::Encode)?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

/// A packet from a type byte and a body.
fn packet(byte1: u8, body: &[u8]) -> Result<Vec<u8>, MqttError> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(byte1);
    put_remaining_len(&mut out, body.len())?;
    out.extend_from_slice(body);
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MqttError> {
        if self.b.len() < n {
            return Err(MqttError::Truncated(self.what));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, MqttError> {
        let b = self.take(1)?;
        b.first().copied().ok_or(MqttError::Truncated(self.what))
    }

    fn u16(&mut self) -> Result<u16, MqttError> {
        let b = self.take(2)?;
        match b {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(MqttError::Truncated(self.what)),
        }
    }

    fn binary(&mut self) -> Result<&'a [u8], MqttError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn string(&mut self) -> Result<String, MqttError> {
        let b = self.binary()?;
        let s = std::str::from_utf8(b).map_err(|_| MqttError::BadString)?;
        if s.contains('\0') {
            return Err(MqttError::BadString);
        }
        Ok(s.to_owned())
    }

    fn end(&self) -> Result<(), MqttError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(MqttError::Trailing(self.what))
        }
    }
}

/// The body of a packet (after its fixed header); `pkt` must be one whole frame.
pub fn body<'a>(pkt: &'a [u8], h: &FixedHeader) -> &'a [u8] {
    pkt.get(h.header_len..h.frame_len()).unwrap_or_default()
}

/// A CONNECT's Will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub message: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A CONNECT packet (MQTT 3.1.1 only). Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    pub clean_session: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("will", &self.will.as_ref().map(|w| &w.topic))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Parses a CONNECT body. Protocol name `MQTT` level 4 only ([`MqttError::Protocol`] otherwise,
/// answered with CONNACK 1).
pub fn parse_connect(flags: u8, body: &[u8]) -> Result<Connect, MqttError> {
    if flags != 0 {
        return Err(MqttError::Flags("CONNECT"));
    }
    let mut r = Reader {
        b: body,
        what: "CONNECT",
    };
    let name = r.binary()?;
    let level = r.u8()?;
    if name != b"MQTT" || level != 4 {
        return Err(MqttError::Protocol {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        });
    }
    let cflags = r.u8()?;
    let keep_alive = r.u16()?;
    let will_flag = cflags & 0x04 != 0;
    let will_qos = (cflags >> 3) & 0x03;
    let will_retain = cflags & 0x20 != 0;
    let has_pass = cflags & 0x40 != 0;
    let has_user = cflags & 0x80 != 0;
    if cflags & 0x01 != 0
        || will_qos == 3
        || (!will_flag && (will_qos != 0 || will_retain))
        || (has_pass && !has_user)
    {
        return Err(MqttError::Flags("CONNECT"));
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let topic = r.string()?;
        let message = r.binary()?.to_vec();
        Some(Will {
            topic,
            message,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if has_user { Some(r.string()?) } else { None };
    let password = if has_pass {
        Some(r.binary()?.to_vec())
    } else {
        None
    };
    r.end()?;
    Ok(Connect {
        clean_session: cflags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

/// Encodes a whole CONNECT packet.
pub fn encode_connect(c: &Connect) -> Result<Vec<u8>, MqttError> {
    let mut b = Vec::with_capacity(64);
    put_str(&mut b, b"MQTT")?;
    b.push(4);
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        if w.qos > 2 {
            return Err(MqttError::Qos(w.qos));
        }
        flags |= 0x04 | (w.qos << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    if c.password.is_some() {
        if c.username.is_none() {
            return Err(MqttError::Flags("CONNECT"));
        }
        flags |= 0x40;
    }
    b.push(flags);
    b.extend_from_slice(&c.keep_alive.to_be_bytes());
    put_str(&mut b, c.client_id.as_bytes())?;
    if let Some(w) = &c.will {
        put_str(&mut b, w.topic.as_bytes())?;
        put_str(&mut b, &w.message)?;
    }
    if let Some(u) = &c.username {
        put_str(&mut b, u.as_bytes())?;
    }
    if let Some(p) = &c.password {
        put_str(&mut b, p)?;
    }
    packet(CONNECT << 4, &b)
}

/// A CONNACK packet (no session present unless `session_present`).
pub fn encode_connack(session_present: bool, code: u8) -> [u8; 4] {
    [CONNACK << 4, 2, u8::from(session_present), code]
}

/// What the gate needs of a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishInfo {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub packet_id: Option<u16>,
    /// Where the payload starts in the body (after topic and packet id).
    pub payload_at: usize,
}

/// Parses a PUBLISH's flags and variable header (the payload is not looked at).
pub fn parse_publish(flags: u8, body: &[u8]) -> Result<PublishInfo, MqttError> {
    let qos = (flags >> 1) & 0x03;
    if qos == 3 {
        return Err(MqttError::Qos(qos));
    }
    let mut r = Reader {
        b: body,
        what: "PUBLISH",
    };
    let topic = r.string()?;
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(MqttError::BadTopic);
    }
    let packet_id = if qos > 0 {
        let id = r.u16()?;
        if id == 0 {
            return Err(MqttError::ZeroPacketId);
        }
        Some(id)
    } else {
        None
    };
    Ok(PublishInfo {
        topic,
        qos,
        retain: flags & 0x01 != 0,
        packet_id,
        payload_at: body.len() - r.b.len(),
    })
}

/// A SUBSCRIBE: packet id and (filter, requested QoS) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<(String, u8)>,
}

/// Parses a SUBSCRIBE body (fixed header flags must be 0b0010).
pub fn parse_subscribe(flags: u8, body: &[u8]) -> Result<Subscribe, MqttError> {
    if flags != 0x02 {
        return Err(MqttError::Flags("SUBSCRIBE"));
    }
    let mut r = Reader {
        b: body,
        what: "SUBSCRIBE",
    };
    let packet_id = r.u16()?;
    if packet_id == 0 {
        return Err(MqttError::ZeroPacketId);
    }
    let mut filters = Vec::new();
    while !r.b.is_empty() {
        let f = r.string()?;
        let q = r.u8()?;
        if q > 2 {
            return Err(MqttError::Qos(q));
        }
        filters.push((f, q));
    }
    if filters.is_empty() {
        return Err(MqttError::NoFilters);
    }
    Ok(Subscribe { packet_id, filters })
}

/// Encodes a whole SUBSCRIBE packet.
pub fn encode_subscribe(s: &Subscribe) -> Result<Vec<u8>, MqttError> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&s.packet_id.to_be_bytes());
    for (f, q) in &s.filters {
        put_str(&mut b, f.as_bytes())?;
        b.push(*q);
    }
    packet((SUBSCRIBE << 4) | 0x02, &b)
}

/// Parses a SUBACK body: packet id and return codes.
pub fn parse_suback(body: &[u8]) -> Result<(u16, Vec<u8>), MqttError> {
    let mut r = Reader {
        b: body,
        what: "SUBACK",
    };
    let id = r.u16()?;
    Ok((id, r.b.to_vec()))
}

/// Encodes a whole SUBACK packet.
pub fn encode_suback(packet_id: u16, codes: &[u8]) -> Result<Vec<u8>, MqttError> {
    let mut b = Vec::with_capacity(2 + codes.len());
    b.extend_from_slice(&packet_id.to_be_bytes());
    b.extend_from_slice(codes);
    packet(SUBACK << 4, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(pkt: &[u8]) -> (FixedHeader, &[u8]) {
        let h = frame(pkt, MAX_REMAINING_LEN)
            .expect("valid")
            .expect("complete");
        assert_eq!(h.frame_len(), pkt.len());
        (h, body(pkt, &h))
    }

    #[test]
    fn remaining_length_limits_and_partial_headers() {
        assert_eq!(frame(&[], 10), Ok(None));
        assert_eq!(frame(&[0x30], 10), Ok(None));
        assert_eq!(frame(&[0x30, 0x80], 10), Ok(None));
        let h = frame(&[0x30, 0x05], 10).expect("ok").expect("some");
        assert_eq!((h.packet_type(), h.header_len, h.remaining_len), (3, 2, 5));
        let h = frame(&[0x30, 0x80, 0x01], 1000).expect("ok").expect("some");
        assert_eq!(h.remaining_len, 128);
        assert_eq!(
            frame(&[0x30, 0x80, 0x01], 100),
            Err(MqttError::TooLarge { len: 128, max: 100 })
        );
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(MqttError::MalformedLength)
        );
        let mut out = Vec::new();
        put_remaining_len(&mut out, MAX_REMAINING_LEN).expect("fits");
        assert_eq!(out, [0xff, 0xff, 0xff, 0x7f]);
        assert!(put_remaining_len(&mut out, MAX_REMAINING_LEN + 1).is_err());
    }

    #[test]
    fn connect_round_trips_and_hides_the_password() {
        let c = Connect {
            clean_session: true,
            keep_alive: 30,
            client_id: "edge-1".into(),
            will: Some(Will {
                topic: "t/state".into(),
                message: b"offline".to_vec(),
                qos: 1,
                retain: true,
            }),
            username: Some("edge-1".into()),
            password: Some(b"s3cret".to_vec()),
        };
        let pkt = encode_connect(&c).expect("encodes");
        let (h, b) = whole(&pkt);
        assert_eq!(h.packet_type(), CONNECT);
        assert_eq!(parse_connect(h.flags(), b), Ok(c.clone()));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_connects_are_refused() {
        let good = encode_connect(&Connect {
            clean_session: true,
            keep_alive: 5,
            client_id: "c".into(),
            will: None,
            username: Some("u".into()),
            password: Some(b"p".to_vec()),
        })
        .expect("encodes");
        let (h, b) = whole(&good);
        // Every truncation is an error, never a panic.
        for n in 0..b.len() {
            assert!(parse_connect(h.flags(), b.get(..n).expect("in range")).is_err());
        }
        let mut level3 = b.to_vec();
        level3[6] = 3;
        assert!(matches!(
            parse_connect(0, &level3),
            Err(MqttError::Protocol { level: 3, .. })
        ));
        let mut pass_no_user = b.to_vec();
        pass_no_user[7] = 0x40 | 0x02;
        assert!(parse_connect(0, &pass_no_user).is_err());
        let mut trailing = b.to_vec();
        trailing.push(0);
        assert_eq!(
            parse_connect(0, &trailing),
            Err(MqttError::Trailing("CONNECT"))
        );
    }

    #[test]
    fn subscribe_publish_and_suback() {
        let s = Subscribe {
            packet_id: 7,
            filters: vec![("a/+".into(), 1), ("#".into(), 0)],
        };
        let pkt = encode_subscribe(&s).expect("encodes");
        let (h, b) = whole(&pkt);
        assert_eq!(parse_subscribe(h.flags(), b), Ok(s));
        assert_eq!(parse_subscribe(0, b), Err(MqttError::Flags("SUBSCRIBE")));
        assert_eq!(parse_subscribe(2, &[0, 7]), Err(MqttError::NoFilters));
        assert_eq!(
            parse_subscribe(2, &[0, 7, 0, 1, b'a', 3]),
            Err(MqttError::Qos(3))
        );

        // PUBLISH QoS1 "a/b" id 9 payload "xy"
        let p = [0x32, 9, 0, 3, b'a', b'/', b'b', 0, 9, b'x', b'y'];
        let (h, b) = whole(&p);
        let info = parse_publish(h.flags(), b).expect("parses");
        assert_eq!(
            info,
            PublishInfo {
                topic: "a/b".into(),
                qos: 1,
                retain: false,
                packet_id: Some(9),
                payload_at: 7,
            }
        );
        assert_eq!(b.get(info.payload_at..), Some(&b"xy"[..]));
        assert_eq!(
            parse_publish(0, &[0, 3, b'a', b'/', b'#']),
            Err(MqttError::BadTopic)
        );
        assert_eq!(
            parse_publish(2, &[0, 1, b'a', 0, 0]),
            Err(MqttError::ZeroPacketId)
        );

        let sa = encode_suback(7, &[1, SUBACK_FAILURE]).expect("encodes");
        let (h, b) = whole(&sa);
        assert_eq!(h.packet_type(), SUBACK);
        assert_eq!(parse_suback(b), Ok((7, vec![1, SUBACK_FAILURE])));
    }
}
