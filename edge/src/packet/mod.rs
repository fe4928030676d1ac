//! Pure packet decoding from the link layer to the UDP or TCP payload: Ethernet (with 802.1Q/QinQ
//! VLAN tags), Linux cooked capture v1 (113) and v2 (276), raw IP (101, 12, 228, 229) and BSD
//! NULL/loopback (0); tunnels: IP-in-IP, GRE (IP, Ethernet, ERSPAN II/III, PPTP's PPP), GTP-U.
//! IP via etherparse's lax slicer (snaplen-cut packets still decode). IPv4 and
//! IPv6 fragments come out of [`decode_any`] as [`Fragment`]s for [`reassembly`]; a reassembled
//! payload goes through [`decode_transport`].

pub mod reassembly;

use std::net::{IpAddr, SocketAddr};

/// Link types this decoder understands.
pub mod linktype {
    pub const NULL: u16 = 0;
    pub const ETHERNET: u16 = 1;
    pub const RAW_OPENBSD: u16 = 12;
    pub const RAW: u16 = 101;
    pub const LINUX_SLL: u16 = 113;
    pub const IPV4: u16 = 228;
    pub const IPV6: u16 = 229;
    pub const LINUX_SLL2: u16 = 276;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A decoded UDP datagram or TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: &'a [u8],
}

/// Why a packet did not yield a UDP/TCP payload. None of these is an error of the capture: the
/// recorder counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeSkip {
    #[error("unsupported link type {0}")]
    LinkType(u16),
    #[error("truncated link-layer header")]
    ShortLink,
    #[error("not IP (ethertype {0:#06x})")]
    NotIp(u16),
    #[error("malformed IP header")]
    BadIp,
    #[error("IP fragment")]
    Fragment,
    #[error("not UDP or TCP")]
    OtherTransport,
    #[error("truncated transport header")]
    ShortTransport,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// One IPv4 or IPv6 fragment of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 identification (16 bits) or IPv6 fragment header identification.
    pub id: u32,
    /// The fragmented payload's protocol (17 UDP, 6 TCP, ...).
    pub protocol: u8,
    /// Byte offset of `data` in the datagram's payload.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    pub data: &'a [u8],
}

/// The TCP header fields stream reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMeta {
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

/// A decoded frame: a whole UDP/TCP datagram (with its TCP header fields if TCP) or one IP
/// fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    Datagram(Datagram<'a>, Option<TcpMeta>),
    Fragment(Fragment<'a>),
}

/// Decodes a captured frame of the given link type down to its UDP/TCP payload; fragments are
/// [`DecodeSkip::Fragment`].
pub fn decode(linktype: u16, data: &[u8]) -> Result<Datagram<'_>, DecodeSkip> {
    match decode_any(linktype, data)? {
        Decoded::Datagram(d, _) => Ok(d),
        Decoded::Fragment(_) => Err(DecodeSkip::Fragment),
    }
}

/// Decodes a captured frame of the given link type down to its UDP/TCP payload or IP fragment,
/// through the tunnels real captures contain: IP-in-IP (IPv4/IPv6 in IPv4/IPv6), GRE (IP,
/// transparent Ethernet bridging, ERSPAN type II and III) and GTP-U (UDP port 2152), nested at
/// most [`MAX_TUNNELS`] deep.
pub fn decode_any(linktype: u16, data: &[u8]) -> Result<Decoded<'_>, DecodeSkip> {
    decode_link(linktype, data, 0)
}

/// Tunnels decapsulated inside one another at most.
pub const MAX_TUNNELS: u8 = 4;

const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN2: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;
const ETH_PPP: u16 = 0x880b;
const GTP_U_PORT: u16 = 2152;

fn decode_link(linktype: u16, data: &[u8], depth: u8) -> Result<Decoded<'_>, DecodeSkip> {
    let ip = match linktype {
        linktype::ETHERNET => {
            let mut ethertype = be16(data, 12).ok_or(DecodeSkip::ShortLink)?;
            let mut off = 14;
            let mut tags = 0;
            while ETH_VLAN.contains(&ethertype) && tags < 4 {
                ethertype = be16(data, off + 2).ok_or(DecodeSkip::ShortLink)?;
                off += 4;
                tags += 1;
            }
            ip_payload(ethertype, data.get(off..).ok_or(DecodeSkip::ShortLink)?)?
        }
        linktype::LINUX_SLL => {
            let proto = be16(data, 14).ok_or(DecodeSkip::ShortLink)?;
            ip_payload(proto, data.get(16..).ok_or(DecodeSkip::ShortLink)?)?
        }
        linktype::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(DecodeSkip::ShortLink)?;
            ip_payload(proto, data.get(20..).ok_or(DecodeSkip::ShortLink)?)?
        }
        linktype::RAW | linktype::RAW_OPENBSD | linktype::IPV4 | linktype::IPV6 => data,
        linktype::NULL => {
            let fam = data.get(..4).ok_or(DecodeSkip::ShortLink)?;
            // The family is in the capturing host's byte order: AF_INET is 2 everywhere; AF_INET6
            // is 24, 28 or 30 depending on the OS.
            let v = if fam[0] == 0 && fam[1] == 0 {
                u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]])
            } else {
                u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]])
            };
            match v {
                2 | 24 | 28 | 30 => data.get(4..).ok_or(DecodeSkip::ShortLink)?,
                _ => return Err(DecodeSkip::NotIp(v as u16)),
            }
        }
        other => return Err(DecodeSkip::LinkType(other)),
    };
    decode_ip_depth(ip, depth)
}

/// The inner packet of a GRE payload (RFC 2784/2890; ERSPAN II/III carry Ethernet frames).
fn decode_gre(gre: &[u8], depth: u8) -> Result<Decoded<'_>, DecodeSkip> {
    let flags = *gre.first().ok_or(DecodeSkip::ShortTransport)?;
    let proto = be16(gre, 2).ok_or(DecodeSkip::ShortTransport)?;
    let mut off = 4;
    for bit in [0x80u8, 0x20, 0x10] {
        // Checksum (+ reserved), key, sequence number: 4 bytes each when present.
        if flags & bit != 0 {
            off += 4;
        }
    }
    if proto == ETH_PPP && gre.get(1).is_some_and(|b| b & 0x80 != 0) {
        // Enhanced GRE (RFC 2637, PPTP): an acknowledgment number follows.
        off += 4;
    }
    let rest = gre.get(off..).ok_or(DecodeSkip::ShortTransport)?;
    match proto {
        ETH_PPP => {
            // PPP: optional address/control (ff 03), then a 1- or 2-byte protocol.
            let p = rest.strip_prefix(&[0xff, 0x03]).unwrap_or(rest);
            let (proto, hl) = match p.first() {
                Some(b) if b & 1 == 1 => (u16::from(*b), 1),
                _ => (be16(p, 0).ok_or(DecodeSkip::ShortTransport)?, 2),
            };
            match proto {
                0x21 | 0x57 => decode_ip_depth(p.get(hl..).unwrap_or(&[]), depth),
                _ => Err(DecodeSkip::OtherTransport),
            }
        }
        ETH_IPV4 | ETH_IPV6 => decode_ip_depth(rest, depth),
        ETH_TEB => decode_link(linktype::ETHERNET, rest, depth),
        ETH_ERSPAN2 => decode_link(
            linktype::ETHERNET,
            rest.get(8..).ok_or(DecodeSkip::ShortTransport)?,
            depth,
        ),
        ETH_ERSPAN3 => {
            // 12-byte header, plus an 8-byte platform subheader when its O bit is set.
            let o = rest.get(11).ok_or(DecodeSkip::ShortTransport)? & 0x01 != 0;
            let hl = if o { 20 } else { 12 };
            decode_link(
                linktype::ETHERNET,
                rest.get(hl..).ok_or(DecodeSkip::ShortTransport)?,
                depth,
            )
        }
        _ => Err(DecodeSkip::OtherTransport),
    }
}

/// The inner IP packet of a GTP-U (GTPv1) G-PDU, or `None` when it is not one.
fn gtp_u_inner(p: &[u8]) -> Option<&[u8]> {
    let flags = *p.first()?;
    if flags >> 5 != 1 || flags & 0x10 == 0 || *p.get(1)? != 0xff {
        return None;
    }
    let mut off = 8;
    if flags & 0x07 != 0 {
        // Sequence number, N-PDU number, next extension header type.
        let mut next = *p.get(11)?;
        off = 12;
        while next != 0 {
            let units = usize::from(*p.get(off)?);
            if units == 0 {
                return None;
            }
            off += units * 4;
            next = *p.get(off - 1)?;
        }
    }
    let inner = p.get(off..)?;
    matches!(inner.first().map(|b| b >> 4), Some(4 | 6)).then_some(inner)
}

fn ip_payload(ethertype: u16, rest: &[u8]) -> Result<&[u8], DecodeSkip> {
    match ethertype {
        ETH_IPV4 | ETH_IPV6 => Ok(rest),
        other => Err(DecodeSkip::NotIp(other)),
    }
}

/// Decodes an IPv4 or IPv6 packet down to its UDP/TCP payload; fragments are
/// [`DecodeSkip::Fragment`].
pub fn decode_ip(data: &[u8]) -> Result<Datagram<'_>, DecodeSkip> {
    match decode_ip_any(data)? {
        Decoded::Datagram(d, _) => Ok(d),
        Decoded::Fragment(_) => Err(DecodeSkip::Fragment),
    }
}

/// Decodes an IPv4 or IPv6 packet down to its UDP/TCP payload or its fragment.
pub fn decode_ip_any(data: &[u8]) -> Result<Decoded<'_>, DecodeSkip> {
    decode_ip_depth(data, 0)
}

fn decode_ip_depth(data: &[u8], depth: u8) -> Result<Decoded<'_>, DecodeSkip> {
    let (ip, _) = etherparse::LaxIpSlice::from_slice(data).map_err(|_| DecodeSkip::BadIp)?;
    let src_ip: IpAddr = ip.source_addr();
    let dst_ip: IpAddr = ip.destination_addr();
    let payload = ip.payload();
    if payload.fragmented {
        let (id, offset, more) = match &ip {
            etherparse::LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                (
                    u32::from(h.identification()),
                    usize::from(h.fragments_offset().byte_offset()),
                    h.more_fragments(),
                )
            }
            etherparse::LaxIpSlice::Ipv6(v6) => v6
                .extensions()
                .clone()
                .into_iter()
                .find_map(|e| match e {
                    etherparse::Ipv6ExtensionSlice::Fragment(f) => Some((
                        f.identification(),
                        usize::from(f.fragment_offset().byte_offset()),
                        f.more_fragments(),
                    )),
                    _ => None,
                })
                .ok_or(DecodeSkip::BadIp)?,
        };
        return Ok(Decoded::Fragment(Fragment {
            src: src_ip,
            dst: dst_ip,
            id,
            protocol: payload.ip_number.0,
            offset,
            more,
            data: payload.payload,
        }));
    }
    let inner = payload.payload;
    if depth < MAX_TUNNELS {
        match payload.ip_number.0 {
            4 | 41 => return decode_ip_depth(inner, depth + 1),
            47 => return decode_gre(inner, depth + 1),
            _ => {}
        }
    }
    let (d, t) = decode_transport(src_ip, dst_ip, payload.ip_number.0, inner)?;
    if depth < MAX_TUNNELS
        && d.transport == Transport::Udp
        && (d.dst.port() == GTP_U_PORT || d.src.port() == GTP_U_PORT)
        && let Some(ip) = gtp_u_inner(d.payload)
    {
        return decode_ip_depth(ip, depth + 1);
    }
    Ok(Decoded::Datagram(d, t))
}

/// Decodes a UDP or TCP segment (a whole IP payload, e.g. reassembled from fragments), with the
/// TCP header fields when TCP.
pub fn decode_transport(
    src_ip: IpAddr,
    dst_ip: IpAddr,
    protocol: u8,
    seg: &[u8],
) -> Result<(Datagram<'_>, Option<TcpMeta>), DecodeSkip> {
    match etherparse::IpNumber(protocol) {
        etherparse::IpNumber::UDP => {
            let sport = be16(seg, 0).ok_or(DecodeSkip::ShortTransport)?;
            let dport = be16(seg, 2).ok_or(DecodeSkip::ShortTransport)?;
            let ulen = be16(seg, 4).ok_or(DecodeSkip::ShortTransport)? as usize;
            let end = if ulen >= 8 {
                ulen.min(seg.len())
            } else {
                seg.len()
            };
            let d = Datagram {
                src: SocketAddr::new(src_ip, sport),
                dst: SocketAddr::new(dst_ip, dport),
                transport: Transport::Udp,
                payload: seg.get(8..end).unwrap_or(&[]),
            };
            Ok((d, None))
        }
        etherparse::IpNumber::TCP => {
            let sport = be16(seg, 0).ok_or(DecodeSkip::ShortTransport)?;
            let dport = be16(seg, 2).ok_or(DecodeSkip::ShortTransport)?;
            let off = seg.get(12).ok_or(DecodeSkip::ShortTransport)? >> 4;
            let hl = usize::from(off) * 4;
            if hl < 20 {
                return Err(DecodeSkip::ShortTransport);
            }
            let seq = be32(seg, 4).ok_or(DecodeSkip::ShortTransport)?;
            let flags = seg.get(13).copied().unwrap_or(0);
            let d = Datagram {
                src: SocketAddr::new(src_ip, sport),
                dst: SocketAddr::new(dst_ip, dport),
                transport: Transport::Tcp,
                payload: seg.get(hl..).ok_or(DecodeSkip::ShortTransport)?,
            };
            let meta = TcpMeta {
                seq,
                syn: flags & 0x02 != 0,
                fin: flags & 0x01 != 0,
                rst: flags & 0x04 != 0,
            };
            Ok((d, Some(meta)))
        }
        _ => Err(DecodeSkip::OtherTransport),
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        let ulen = 8 + payload.len();
        p.extend_from_slice(&[0x13, 0xc4, 0x4e, 0x20, (ulen >> 8) as u8, ulen as u8, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn decodes_every_link_type() {
        let ip = ipv4_udp(b"hello");
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        for (lt, frame) in [
            (linktype::ETHERNET, eth),
            (linktype::LINUX_SLL, sll),
            (linktype::LINUX_SLL2, sll2),
            (linktype::NULL, null),
            (linktype::RAW, ip.clone()),
            (linktype::IPV4, ip.clone()),
        ] {
            let d = decode(lt, &frame).expect("decodes");
            assert_eq!(d.payload, b"hello", "linktype {lt}");
            assert_eq!(d.src, "10.0.0.1:5060".parse().expect("addr"));
            assert_eq!(d.dst, "10.0.0.2:20000".parse().expect("addr"));
            assert_eq!(d.transport, Transport::Udp);
        }
    }

    fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = 20 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            proto,
        ];
        p.extend_from_slice(&[0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn tunnels_are_decapsulated() {
        let inner = ipv4_udp(b"hello");
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&inner);
        let ipip = ipv4(4, &inner);
        let mut gre = vec![0x00, 0x00, 0x08, 0x00];
        gre.extend_from_slice(&inner);
        let mut erspan2 = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1]; // with sequence number
        erspan2.extend_from_slice(&[0x10, 0, 0, 1, 0, 0, 0, 0]);
        erspan2.extend_from_slice(&eth);
        let mut pptp = vec![0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        pptp.extend_from_slice(&[0xff, 0x03, 0x00, 0x21]);
        pptp.extend_from_slice(&inner);
        let mut gtp = vec![0x30, 0xff, 0, 0, 0, 0, 0, 1];
        gtp.extend_from_slice(&inner);
        let mut udp = vec![0x08, 0x68, 0x08, 0x68, 0, 0, 0, 0];
        udp.extend_from_slice(&gtp);
        for (name, pkt) in [
            ("ipip", ipip),
            ("gre", ipv4(47, &gre)),
            ("erspan2", ipv4(47, &erspan2)),
            ("pptp", ipv4(47, &pptp)),
            ("gtp-u", ipv4(17, &udp)),
        ] {
            let d = decode_ip(&pkt).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d.payload, b"hello", "{name}");
            assert_eq!(d.src, "10.0.0.1:5060".parse().expect("addr"), "{name}");
        }
        // Tunnels nest at most MAX_TUNNELS deep.
        let mut p = inner.clone();
        for _ in 0..=MAX_TUNNELS {
            p = ipv4(4, &p);
        }
        assert_eq!(decode_ip(&p), Err(DecodeSkip::OtherTransport));
    }

    #[test]
    fn garbage_is_skipped_not_panicking() {
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            for lt in [0, 1, 12, 101, 113, 228, 229, 276, 999] {
                let _ = decode(lt, &junk);
            }
        }
    }
}
