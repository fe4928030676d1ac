//! Bytes on the wire and in the file: Ethernet II + IPv4 + UDP framing with correct lengths and
//! checksums, the RTP fixed header (RFC 3550), and a streaming writer of classic pcap files
//! (link type 1, microsecond or nanosecond timestamps).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Ethernet (14) + IPv4 (20) + UDP (8).
pub(crate) const UDP_OVERHEAD: usize = 14 + 20 + 8;
/// RTP fixed header without CSRCs or extension.
pub(crate) const RTP_HEADER_LEN: usize = 12;
/// DSCP CS3 (signalling) in the IPv4 TOS byte.
pub(crate) const TOS_SIGNALLING: u8 = 24 << 2;
/// DSCP EF (expedited forwarding, voice) in the IPv4 TOS byte.
pub(crate) const TOS_VOICE: u8 = 46 << 2;

/// A locally administered MAC address derived from an IPv4 address (02:00:a:b:c:d), so each
/// host in a capture has a stable, distinct MAC.
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// Ones' complement sum of 16-bit big-endian words (odd trailing byte padded with zero).
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// One UDP datagram to frame.
pub(crate) struct Datagram<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub ip_id: u16,
    pub tos: u8,
    /// Written right after the UDP header, before `payload` (e.g. the RTP header).
    pub prefix: &'a [u8],
    pub payload: &'a [u8],
}

/// Builds a complete Ethernet frame for `d`. The caller guarantees the datagram fits an IPv4
/// packet (the generator's SIP messages and RTP packets are far below 64 KiB).
pub(crate) fn udp_frame(d: &Datagram<'_>) -> Vec<u8> {
    let body_len = d.prefix.len() + d.payload.len();
    let udp_len = (8 + body_len) as u16;
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(UDP_OVERHEAD + body_len);
    // Ethernet II
    f.extend_from_slice(&mac_of(*d.dst.ip()));
    f.extend_from_slice(&mac_of(*d.src.ip()));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4, no options, don't fragment, TTL 64, UDP
    let src = d.src.ip().octets();
    let dst = d.dst.ip().octets();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = d.tos;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&d.ip_id.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let ip_sum = fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    f.extend_from_slice(&ip);
    // UDP with the pseudo-header checksum
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&d.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&d.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut acc = sum16(&src, 0);
    acc = sum16(&dst, acc);
    acc += 17 + u32::from(udp_len);
    acc = sum16(&udp, acc);
    if d.prefix.len().is_multiple_of(2) {
        // Word-aligned parts (the RTP header is 12 bytes) can be summed separately.
        acc = sum16(d.prefix, acc);
        acc = sum16(d.payload, acc);
    } else {
        let mut joined = Vec::with_capacity(body_len);
        joined.extend_from_slice(d.prefix);
        joined.extend_from_slice(d.payload);
        acc = sum16(&joined, acc);
    }
    let mut udp_sum = fold(acc);
    if udp_sum == 0 {
        udp_sum = 0xFFFF;
    }
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(d.prefix);
    f.extend_from_slice(d.payload);
    f
}

/// The 12-byte RTP fixed header: version 2, no padding/extension/CSRC.
pub(crate) fn rtp_header(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; RTP_HEADER_LEN];
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (pt & 0x7F);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// Size of the pcap global header.
pub(crate) const PCAP_HEADER_LEN: u64 = 24;
/// Size of a pcap record header.
pub(crate) const PCAP_RECORD_HEADER_LEN: u64 = 16;

/// Writes a classic little-endian pcap stream, record by record.
pub(crate) struct PcapWriter<W: Write> {
    out: W,
    nanos: bool,
    bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (snaplen 262144, link type 1 = Ethernet).
    pub(crate) fn new(mut out: W, nanos: bool) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 };
        let mut h = [0u8; PCAP_HEADER_LEN as usize];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone 0, sigfigs 0
        h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self {
            out,
            nanos,
            bytes: PCAP_HEADER_LEN,
        })
    }

    /// Appends one record stamped `ts_ns` (unix nanoseconds; the caller keeps seconds in u32).
    pub(crate) fn write(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        let secs = (ts_ns / 1_000_000_000) as u32;
        let frac = (ts_ns % 1_000_000_000) as u32;
        let frac = if self.nanos { frac } else { frac / 1_000 };
        let len = frame.len() as u32;
        let mut h = [0u8; PCAP_RECORD_HEADER_LEN as usize];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        self.bytes += PCAP_RECORD_HEADER_LEN + frame.len() as u64;
        Ok(())
    }

    /// Bytes written so far, headers included.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies a checksum by summing the covered bytes including the stored checksum.
    fn verifies(data: &[u8], acc: u32) -> bool {
        fold(sum16(data, acc)) == 0
    }

    #[test]
    fn ip_and_udp_checksums_verify() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 1), 5060);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 1), 5060);
        let hdr = rtp_header(true, 0, 1, 2, 3);
        for (prefix, payload) in [
            (&hdr[..], &b"odd"[..]),
            (&hdr[..], b"even"),
            (&hdr[..], b""),
            (&b"abc"[..], b"de"),
        ] {
            let f = udp_frame(&Datagram {
                src,
                dst,
                ip_id: 7,
                tos: TOS_VOICE,
                prefix,
                payload,
            });
            assert_eq!(f.len(), UDP_OVERHEAD + prefix.len() + payload.len());
            assert!(verifies(&f[14..34], 0));
            let udp = &f[34..];
            let mut acc = sum16(&f[26..34], 0);
            acc += 17 + udp.len() as u32;
            assert!(verifies(udp, acc));
            assert_eq!(
                usize::from(u16::from_be_bytes([f[16], f[17]])),
                f.len() - 14
            );
            assert_eq!(usize::from(u16::from_be_bytes([f[38], f[39]])), udp.len());
        }
    }

    #[test]
    fn pcap_records_carry_timestamp_and_length() {
        let mut w = PcapWriter::new(Vec::new(), false).unwrap_or_else(|e| panic!("{e}"));
        w.write(1_500_000_123_456_789, &[1, 2, 3])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.bytes(), 24 + 16 + 3);
        let v = w.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&v[0..4], &[0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(u32::from_le_bytes([v[24], v[25], v[26], v[27]]), 1_500_000);
        assert_eq!(u32::from_le_bytes([v[28], v[29], v[30], v[31]]), 123_456);
        assert_eq!(&v[40..43], &[1, 2, 3]);
    }
}
