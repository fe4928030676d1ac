//! RTCP (RFC 3550 section 6, RFC 3611): a compound packet's sender reports (SR), receiver
//! reports (RR) and extended reports (XR, with the VoIP metrics block's R factor and MOS), and the
//! per-stream summary a recording keeps of them ([`RtcpSummary`]). Pure, bounded: a compound
//! packet is walked once without allocation, anything malformed ends the walk.

/// One report block of an SR or RR: what the sender of the report received of `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in the stream's RTP clock units.
    pub jitter: u32,
}

/// XR VoIP metrics (RFC 3611 4.7) of the stream `ssrc`; 127 means unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoipMetrics {
    pub ssrc: u32,
    pub loss_rate: u8,
    pub r_factor: u8,
    /// MOS-LQ and MOS-CQ in tenths (10..50).
    pub mos_lq: u8,
    pub mos_cq: u8,
}

/// One RTCP packet of a compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpItem {
    /// Sender report of `ssrc`: its packet and octet counts.
    SenderReport {
        ssrc: u32,
        packets: u32,
        octets: u32,
    },
    ReceiverReport {
        ssrc: u32,
    },
    /// A report block of an SR or RR sent by `reporter`.
    Block {
        reporter: u32,
        block: ReportBlock,
    },
    ExtendedReport {
        ssrc: u32,
    },
    Voip(VoipMetrics),
    /// SDES, BYE, APP, feedback and other types.
    Other(u8),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let x = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

/// Walks a compound RTCP packet, calling `f` for each item. Returns the number of RTCP packets
/// read, or `None` when the first one is not valid RTCP (version 2, type 192..=223, length
/// within the datagram). A later malformed packet ends the walk.
pub fn walk(data: &[u8], mut f: impl FnMut(RtcpItem)) -> Option<usize> {
    let mut off = 0usize;
    let mut n = 0usize;
    while let Some(h) = data.get(off..off + 4) {
        let (v, count, pt) = (h[0] >> 6, usize::from(h[0] & 0x1f), h[1]);
        let len = (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1) * 4;
        let Some(p) = data.get(off..off + len) else {
            break;
        };
        if v != 2 || !(192..=223).contains(&pt) {
            break;
        }
        n += 1;
        off += len;
        let ssrc = be32(p, 4).unwrap_or(0);
        let blocks = |first: usize, f: &mut dyn FnMut(RtcpItem)| {
            for i in 0..count {
                let at = first + i * 24;
                let (Some(s), Some(l), Some(hs), Some(j)) = (
                    be32(p, at),
                    be32(p, at + 4),
                    be32(p, at + 8),
                    be32(p, at + 12),
                ) else {
                    break;
                };
                // 24-bit two's complement.
                let cum = ((l & 0x00ff_ffff) << 8) as i32 >> 8;
                f(RtcpItem::Block {
                    reporter: ssrc,
                    block: ReportBlock {
                        ssrc: s,
                        fraction_lost: (l >> 24) as u8,
                        cumulative_lost: cum,
                        highest_seq: hs,
                        jitter: j,
                    },
                });
            }
        };
        match pt {
            200 if len >= 28 => {
                f(RtcpItem::SenderReport {
                    ssrc,
                    packets: be32(p, 20).unwrap_or(0),
                    octets: be32(p, 24).unwrap_or(0),
                });
                blocks(28, &mut f);
            }
            201 if len >= 8 => {
                f(RtcpItem::ReceiverReport { ssrc });
                blocks(8, &mut f);
            }
            207 if len >= 8 => {
                f(RtcpItem::ExtendedReport { ssrc });
                let mut at = 8;
                while let Some(bh) = p.get(at..at + 4) {
                    let blen = (usize::from(u16::from_be_bytes([bh[2], bh[3]])) + 1) * 4;
                    let Some(b) = p.get(at..at + blen) else { break };
                    if bh[0] == 7 && blen >= 36 {
                        f(RtcpItem::Voip(VoipMetrics {
                            ssrc: be32(b, 4).unwrap_or(0),
                            loss_rate: b[8],
                            r_factor: b[24],
                            mos_lq: b[26],
                            mos_cq: b[27],
                        }));
                    }
                    at += blen;
                }
            }
            _ => f(RtcpItem::Other(pt)),
        }
    }
    (n > 0).then_some(n)
}

/// What a recording learnt from RTCP about one RTP stream (one SSRC): the reports its sender
/// sent (SR) and the reports its receiver sent about it (report blocks, XR VoIP metrics).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RtcpSummary {
    /// Sender reports from the stream's SSRC, and the packet/octet counts of the last one.
    pub sender_reports: u32,
    pub sender_packets: u32,
    pub sender_octets: u32,
    /// Report blocks about the stream, and the last one's values.
    pub reports: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub jitter: u32,
    pub max_jitter: u32,
    /// XR VoIP metrics about the stream (last).
    pub voip: Option<VoipMetrics>,
}

impl RtcpSummary {
    /// Accounts an item that concerns `ssrc` (the stream this summary is for); others are
    /// ignored.
    pub fn apply(&mut self, ssrc: u32, item: &RtcpItem) {
        match *item {
            RtcpItem::SenderReport {
                ssrc: s,
                packets,
                octets,
            } if s == ssrc => {
                self.sender_reports = self.sender_reports.saturating_add(1);
                self.sender_packets = packets;
                self.sender_octets = octets;
            }
            RtcpItem::Block { block, .. } if block.ssrc == ssrc => {
                self.reports = self.reports.saturating_add(1);
                self.fraction_lost = block.fraction_lost;
                self.cumulative_lost = block.cumulative_lost;
                self.jitter = block.jitter;
                self.max_jitter = self.max_jitter.max(block.jitter);
            }
            RtcpItem::Voip(v) if v.ssrc == ssrc => self.voip = Some(v),
            _ => {}
        }
    }

    /// Whether any RTCP concerned the stream.
    pub fn is_empty(&self) -> bool {
        self.sender_reports == 0 && self.reports == 0 && self.voip.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SR of 0x11111111 with one block about 0x22222222, then SDES, then an XR with a VoIP
    /// metrics block about 0x22222222.
    fn compound() -> Vec<u8> {
        let mut p = vec![0x81, 200, 0, 12];
        p.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        p.extend_from_slice(&[0; 12]); // NTP + RTP timestamp
        p.extend_from_slice(&500u32.to_be_bytes());
        p.extend_from_slice(&80_000u32.to_be_bytes());
        p.extend_from_slice(&0x2222_2222u32.to_be_bytes());
        p.extend_from_slice(&[64, 0xff, 0xff, 0xfe]); // 25%, cumulative -2
        p.extend_from_slice(&70_000u32.to_be_bytes());
        p.extend_from_slice(&40u32.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0x81, 202, 0, 2, 0x11, 0x11, 0x11, 0x11, 1, 0, 0, 0]);
        let mut xr = vec![0x80, 207, 0, 10];
        xr.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        xr.extend_from_slice(&[7, 0, 0, 8]);
        xr.extend_from_slice(&0x2222_2222u32.to_be_bytes());
        let mut m = [0u8; 28];
        m[0] = 5; // loss rate
        m[16] = 80; // R factor
        m[18] = 41; // MOS-LQ 4.1
        m[19] = 39;
        xr.extend_from_slice(&m);
        p.extend_from_slice(&xr);
        p
    }

    #[test]
    fn sr_rr_xr_are_walked_and_summarised() {
        let p = compound();
        let mut items = Vec::new();
        assert_eq!(walk(&p, |i| items.push(i)), Some(3));
        assert_eq!(
            items[0],
            RtcpItem::SenderReport {
                ssrc: 0x1111_1111,
                packets: 500,
                octets: 80_000
            }
        );
        let RtcpItem::Block { reporter, block } = items[1] else {
            panic!("a report block: {items:?}")
        };
        assert_eq!(reporter, 0x1111_1111);
        assert_eq!(block.ssrc, 0x2222_2222);
        assert_eq!((block.fraction_lost, block.cumulative_lost), (64, -2));
        assert_eq!((block.highest_seq, block.jitter), (70_000, 40));
        assert_eq!(items[2], RtcpItem::Other(202));
        assert_eq!(
            items[4],
            RtcpItem::Voip(VoipMetrics {
                ssrc: 0x2222_2222,
                loss_rate: 5,
                r_factor: 80,
                mos_lq: 41,
                mos_cq: 39
            })
        );
        let (mut sender, mut receiver) = (RtcpSummary::default(), RtcpSummary::default());
        for i in &items {
            sender.apply(0x1111_1111, i);
            receiver.apply(0x2222_2222, i);
        }
        assert_eq!((sender.sender_reports, sender.sender_packets), (1, 500));
        assert_eq!(sender.reports, 0);
        assert_eq!((receiver.reports, receiver.jitter), (1, 40));
        assert_eq!(receiver.voip.map(|v| v.mos_lq), Some(41));
    }

    #[test]
    fn malformed_rtcp_ends_the_walk_without_panicking() {
        let p = compound();
        for n in 0..p.len() {
            let _ = walk(&p[..n], |_| {});
        }
        assert_eq!(
            walk(&[0x80, 0x00, 0, 0], |_| {}),
            None,
            "RTP payload type 0"
        );
        assert_eq!(walk(&p[..27], |_| {}), None, "SR longer than the datagram");
        // An RR claiming 3 blocks in a packet with room for none reports only itself.
        let mut items = Vec::new();
        assert_eq!(
            walk(&[0x83, 201, 0, 1, 0, 0, 0, 9], |i| items.push(i)),
            Some(1)
        );
        assert_eq!(items, [RtcpItem::ReceiverReport { ssrc: 9 }]);
    }
}
