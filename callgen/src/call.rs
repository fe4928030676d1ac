//! One call as a lazy packet sequence: [`CallGen::plan`] draws the call's parties, timings, SSRCs
//! and tones from its own seeded stream; [`CallGen::step`] yields its packets one by one in send
//! order (SIP messages and two 20 ms G.711 streams carrying sine tones), applying loss and
//! arrival jitter, and records the truth as it goes. Nothing but a tone table per direction is
//! held, so thousands of calls can be active at once.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::g711;
use crate::options::{Codec, CodecChoice, GenOptions, HOSTS_PER_NET, RTP_PORT_SLOTS};
use crate::rng::Rng;
use crate::sip::{Dialog, SipMessage};
use crate::truth::{CallTruth, PartyTruth, Side, StreamTruth};
use crate::wire::{self, Datagram, TOS_SIGNALLING, TOS_VOICE};

/// 20 ms packetisation.
pub(crate) const PTIME_NS: u64 = 20_000_000;
/// G.711 samples (= bytes) per 20 ms packet at 8 kHz.
pub(crate) const SAMPLES_PER_PACKET: usize = 160;
const SAMPLE_RATE: u32 = 8_000;
/// Tone amplitude (about -10 dBFS).
const TONE_AMPLITUDE: f64 = 10_000.0;
const MS: u64 = 1_000_000;

const FIRST_NAMES: [&str; 16] = [
    "Anna", "Lukas", "Mia", "Jonas", "Sofia", "Felix", "Lea", "Paul", "Emma", "Leon", "Hannah",
    "Noah", "Lina", "Elias", "Clara", "Ben",
];
const LAST_NAMES: [&str; 16] = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Braun",
];
const USER_AGENTS: [&str; 6] = [
    "Yealink SIP-T54W 96.86.0.70",
    "Poly/VVX-450 6.4.3.5156",
    "Grandstream GXP2170 1.0.11.35",
    "Cisco-CP8845/14.2.1",
    "snom D785/10.1.141.13",
    "Asterisk PBX 20.5.0",
];

/// Address of call `index` in a block whose base is `net`: hosts .1–.250 in consecutive /24s.
fn host_addr(net: Ipv4Addr, index: u32) -> Ipv4Addr {
    let h = index % HOSTS_PER_NET;
    let offset = (h / 250) * 256 + h % 250 + 1;
    Ipv4Addr::from(u32::from(net).wrapping_add(offset))
}

/// Caller and callee tone frequencies (Hz) of call `index`: multiples of 10 in 300..=1200,
/// always different from each other.
pub(crate) fn tones(index: u32) -> (u32, u32) {
    let k = u64::from(index) * 37;
    let f = |off: u64| 300 + 10 * ((k + off) % 91) as u32;
    (f(0), f(45))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One period of a `hz` sine at 8 kHz, G.711-encoded. With `hz` a multiple of 10 the period is
/// at most 800 samples.
fn tone_table(hz: u32, codec: Codec) -> Vec<u8> {
    let period = SAMPLE_RATE / gcd(hz, SAMPLE_RATE).max(1);
    (0..period)
        .map(|n| {
            let phase =
                2.0 * std::f64::consts::PI * f64::from(hz) * f64::from(n) / f64::from(SAMPLE_RATE);
            let s = (TONE_AMPLITUDE * phase.sin()).round() as i16;
            match codec {
                Codec::Pcmu => g711::linear_to_ulaw(s),
                Codec::Pcma => g711::linear_to_alaw(s),
            }
        })
        .collect()
}

/// One RTP direction being generated.
#[derive(Debug)]
struct StreamGen {
    side: Side,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    start_ns: u64,
    count: u64,
    next: u64,
    table: Vec<u8>,
}

impl StreamGen {
    fn next_send(&self) -> Option<u64> {
        (self.next < self.count).then(|| self.start_ns + self.next * PTIME_NS)
    }
}

/// A packet to put in the capture.
#[derive(Debug)]
pub(crate) struct Packet {
    pub arrival_ns: u64,
    pub frame: Vec<u8>,
    pub is_rtp: bool,
}

/// The call's next packet in send order.
#[derive(Debug)]
pub(crate) enum Step {
    /// Reaches the capture point at `arrival_ns`.
    Sent(Packet),
    /// Lost before the capture point (recorded in the truth).
    Dropped,
}

/// A call being generated.
#[derive(Debug)]
pub(crate) struct CallGen {
    truth: CallTruth,
    dialog: Dialog,
    rng: Rng,
    sip: VecDeque<(u64, SipMessage)>,
    streams: [StreamGen; 2],
    /// IPv4 identification counters of caller and callee host.
    ip_id: [u16; 2],
    loss: f64,
    jitter_ns: u64,
}

impl CallGen {
    /// Draws call `index` of `opts` (deterministic in `opts.seed` and `index` only).
    pub(crate) fn plan(opts: &GenOptions, index: u32) -> Self {
        let mut rng = Rng::fork(opts.seed, u64::from(index));
        let spacing = opts.spacing_ns();
        // Call 0 starts exactly at `start_unix_s`; later calls at their slot plus up to half a
        // spacing, so starts stay in index order.
        let offset = if index == 0 {
            0
        } else {
            rng.range(0, spacing / 2 + 1)
        };
        let start_ns = opts.start_unix_s * 1_000_000_000 + u64::from(index) * spacing + offset;
        let codec = match opts.codec {
            CodecChoice::Pcmu => Codec::Pcmu,
            CodecChoice::Pcma => Codec::Pcma,
            CodecChoice::Mixed => {
                if rng.next_u64() & 1 == 0 {
                    Codec::Pcmu
                } else {
                    Codec::Pcma
                }
            }
        };
        let i = u64::from(index);
        let name = |rng: &mut Rng| {
            let r = rng.next_u64();
            format!(
                "{} {}",
                FIRST_NAMES[(r % 16) as usize],
                LAST_NAMES[((r >> 8) % 16) as usize]
            )
        };
        let caller_ip = host_addr(opts.caller_net, index);
        let callee_ip = host_addr(opts.callee_net, index);
        let caller = PartyTruth {
            number: format!("+4930{:07}", 1_000_000 + (i * 7_919) % 9_000_000),
            display_name: name(&mut rng),
            ip: caller_ip,
            sip_port: opts.sip_port,
            rtp_port: opts.rtp_port_base + 2 * (index % RTP_PORT_SLOTS) as u16,
            tag: rng.hex(10),
            user_agent: USER_AGENTS[(rng.next_u64() % 6) as usize].to_string(),
        };
        let callee = PartyTruth {
            number: format!("+4940{:07}", 1_000_000 + (i * 104_729 + 12_345) % 9_000_000),
            display_name: name(&mut rng),
            ip: callee_ip,
            sip_port: opts.sip_port,
            rtp_port: opts.rtp_port_base + 2 * ((i * 7 + 13) % u64::from(RTP_PORT_SLOTS)) as u16,
            tag: rng.hex(10),
            user_agent: USER_AGENTS[(rng.next_u64() % 6) as usize].to_string(),
        };
        let hangup_by = if rng.next_u64().is_multiple_of(3) {
            Side::Callee
        } else {
            Side::Caller
        };
        let mut dialog = Dialog {
            call_id: format!("{}@{}", rng.hex(24), caller_ip),
            codec,
            invite_cseq: rng.range(1, 1000) as u32,
            bye_cseq: rng.range(1, 1000) as u32,
            invite_branch: rng.hex(16),
            ack_branch: rng.hex(16),
            bye_branch: rng.hex(16),
            caller_session: rng.range(1_000_000, 9_999_999),
            callee_session: rng.range(1_000_000, 9_999_999),
            hangup_by,
        };
        if hangup_by == Side::Caller {
            // The caller's BYE follows its INVITE in the caller's CSeq space.
            dialog.bye_cseq = dialog.invite_cseq + 1;
        }

        // Timeline.
        let ring_mean = u64::from(opts.ring_ms) * MS;
        let ring = rng
            .range(ring_mean / 2, ring_mean * 3 / 2 + 1)
            .max(150 * MS);
        let trying = start_ns + rng.range(2 * MS, 8 * MS);
        let ringing = start_ns + rng.range(30 * MS, 120 * MS);
        let answer = start_ns + ring;
        let ack = answer + rng.range(MS, 6 * MS);
        let j = opts.duration_jitter;
        let duration_s = opts.duration_s * (1.0 + j * (2.0 * rng.next_f64() - 1.0));
        let talk_end = answer + (duration_s * 1e9) as u64;
        let callee_rtp = answer + rng.range(MS, 4 * MS);
        let caller_rtp = ack + rng.range(MS, 4 * MS);
        let jitter_ns = (opts.jitter_ms * 1e6) as u64;
        let bye = talk_end + jitter_ns + rng.range(MS, 5 * MS);
        let bye_ok = bye + rng.range(2 * MS, 10 * MS);
        let count = |from: u64| (talk_end.saturating_sub(from) / PTIME_NS).max(2);

        let (caller_hz, callee_hz) = tones(index);
        let pt = codec.payload_type();
        let mut stream_truth = |src: &PartyTruth, dst: &PartyTruth, hz: u32, first: u64| {
            StreamTruth {
                src_ip: src.ip,
                src_port: src.rtp_port,
                dst_ip: dst.ip,
                dst_port: dst.rtp_port,
                ssrc: rng.next_u32(),
                payload_type: pt,
                tone_hz: hz,
                // Below 2^15 like many stacks choose, so calls under ~11 minutes never wrap the
                // sequence number (longer ones do, as in real traffic).
                first_seq: rng.next_u16() & 0x7FFF,
                first_rtp_ts: rng.next_u32(),
                first_send_ns: first,
                packets_sent: 0,
                dropped_seqs: Vec::new(),
                packets_in_file: 0,
            }
        };
        let up = stream_truth(&caller, &callee, caller_hz, caller_rtp);
        let down = stream_truth(&callee, &caller, callee_hz, callee_rtp);
        let sock = |p: &PartyTruth| SocketAddrV4::new(p.ip, p.rtp_port);
        let streams = [
            StreamGen {
                side: Side::Caller,
                src: sock(&caller),
                dst: sock(&callee),
                start_ns: caller_rtp,
                count: count(caller_rtp),
                next: 0,
                table: tone_table(caller_hz, codec),
            },
            StreamGen {
                side: Side::Callee,
                src: sock(&callee),
                dst: sock(&caller),
                start_ns: callee_rtp,
                count: count(callee_rtp),
                next: 0,
                table: tone_table(callee_hz, codec),
            },
        ];
        let sip = VecDeque::from([
            (start_ns, SipMessage::Invite),
            (trying, SipMessage::Trying),
            (ringing, SipMessage::Ringing),
            (answer, SipMessage::InviteOk),
            (ack, SipMessage::Ack),
            (bye, SipMessage::Bye),
            (bye_ok, SipMessage::ByeOk),
        ]);
        let ip_id = [rng.next_u16(), rng.next_u16()];
        let truth = CallTruth {
            index,
            call_id: dialog.call_id.clone(),
            caller,
            callee,
            codec,
            payload_type: pt,
            start_ns,
            answer_ns: answer,
            end_ns: bye,
            hangup_by,
            sip_packets: 0,
            caller_to_callee: up,
            callee_to_caller: down,
        };
        Self {
            truth,
            dialog,
            rng,
            sip,
            streams,
            ip_id,
            loss: opts.loss,
            jitter_ns,
        }
    }

    /// Time of the INVITE.
    pub(crate) fn start_ns(&self) -> u64 {
        self.truth.start_ns
    }

    pub(crate) fn index(&self) -> u32 {
        self.truth.index
    }

    /// Send time of the next packet, `None` when the call is over.
    pub(crate) fn next_send_ns(&self) -> Option<u64> {
        let sip = self.sip.front().map(|(t, _)| *t);
        [
            sip,
            self.streams[0].next_send(),
            self.streams[1].next_send(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn next_ip_id(&mut self, side: Side) -> u16 {
        let slot = match side {
            Side::Caller => 0,
            Side::Callee => 1,
        };
        let id = self.ip_id[slot];
        self.ip_id[slot] = id.wrapping_add(1);
        id
    }

    /// Produces the next packet in send order (`None` when the call is over).
    pub(crate) fn step(&mut self) -> Option<Step> {
        let sip = self.sip.front().map(|(t, _)| *t);
        let s0 = self.streams[0].next_send();
        let s1 = self.streams[1].next_send();
        let t = [sip, s0, s1].into_iter().flatten().min()?;
        if sip == Some(t) {
            let (t, msg) = self.sip.pop_front()?;
            return Some(self.sip_packet(t, msg));
        }
        let which = usize::from(s0 != Some(t));
        Some(self.rtp_packet(which, t))
    }

    fn sip_packet(&mut self, t: u64, msg: SipMessage) -> Step {
        let (side, text) = self
            .dialog
            .render(msg, &self.truth.caller, &self.truth.callee);
        let (from, to) = match side {
            Side::Caller => (&self.truth.caller, &self.truth.callee),
            Side::Callee => (&self.truth.callee, &self.truth.caller),
        };
        let src = SocketAddrV4::new(from.ip, from.sip_port);
        let dst = SocketAddrV4::new(to.ip, to.sip_port);
        let ip_id = self.next_ip_id(side);
        let frame = wire::udp_frame(&Datagram {
            src,
            dst,
            ip_id,
            tos: TOS_SIGNALLING,
            prefix: &[],
            payload: text.as_bytes(),
        });
        self.truth.sip_packets += 1;
        Step::Sent(Packet {
            arrival_ns: t,
            frame,
            is_rtp: false,
        })
    }

    fn rtp_packet(&mut self, which: usize, t: u64) -> Step {
        let (side, src, dst, k, count) = {
            let s = &self.streams[which];
            (s.side, s.src, s.dst, s.next, s.count)
        };
        let ip_id = self.next_ip_id(side);
        let lost_draw = self.rng.next_f64();
        // The first packet arrives undelayed and the last with the full jitter, so reordering
        // never moves a stream's first or last packet: a receiver's sequence-number based loss
        // count (expected = last - first + 1) then equals the truth.
        let delay = if self.jitter_ns == 0 || k == 0 {
            0
        } else if k + 1 == count {
            self.jitter_ns
        } else {
            (self.rng.next_f64() * self.jitter_ns as f64) as u64
        };
        let truth = match side {
            Side::Caller => &mut self.truth.caller_to_callee,
            Side::Callee => &mut self.truth.callee_to_caller,
        };
        let seq = truth.first_seq.wrapping_add(k as u16);
        truth.packets_sent += 1;
        let stream = &mut self.streams[which];
        stream.next += 1;
        // Never drop the first or last packet: a receiver counting loss from sequence numbers
        // then sees exactly the truth.
        if k != 0 && k + 1 != count && lost_draw < self.loss {
            truth.dropped_seqs.push(seq);
            return Step::Dropped;
        }
        truth.packets_in_file += 1;
        let ts = truth
            .first_rtp_ts
            .wrapping_add((k as u32).wrapping_mul(SAMPLES_PER_PACKET as u32));
        let header = wire::rtp_header(k == 0, truth.payload_type, seq, ts, truth.ssrc);
        let mut payload = [0u8; SAMPLES_PER_PACKET];
        let period = stream.table.len();
        if period > 0 {
            let mut pos = (k as usize).wrapping_mul(SAMPLES_PER_PACKET) % period;
            for b in payload.iter_mut() {
                *b = stream.table.get(pos).copied().unwrap_or(0);
                pos += 1;
                if pos == period {
                    pos = 0;
                }
            }
        }
        let frame = wire::udp_frame(&Datagram {
            src,
            dst,
            ip_id,
            tos: TOS_VOICE,
            prefix: &header,
            payload: &payload,
        });
        Step::Sent(Packet {
            arrival_ns: t + delay,
            frame,
            is_rtp: true,
        })
    }

    /// The call's truth once every packet has been produced.
    pub(crate) fn into_truth(self) -> CallTruth {
        self.truth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_for_many_calls() {
        let net = Ipv4Addr::new(10, 1, 0, 0);
        assert_eq!(host_addr(net, 0), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(host_addr(net, 249), Ipv4Addr::new(10, 1, 0, 250));
        assert_eq!(host_addr(net, 250), Ipv4Addr::new(10, 1, 1, 1));
        let all: std::collections::HashSet<_> = (0..10_000).map(|i| host_addr(net, i)).collect();
        assert_eq!(all.len(), 10_000);
    }

    #[test]
    fn tones_differ_and_stay_in_band() {
        for i in 0..1000 {
            let (a, b) = tones(i);
            assert_ne!(a, b);
            assert!((300..=1200).contains(&a) && (300..=1200).contains(&b));
            assert_eq!(a % 10, 0);
            assert!(tone_table(a, Codec::Pcmu).len() <= 800);
        }
    }

    #[test]
    fn a_call_yields_sip_then_rtp_then_bye_in_send_order() {
        let opts = GenOptions {
            duration_s: 1.0,
            ..Default::default()
        };
        let mut call = CallGen::plan(&opts, 3);
        let mut last = 0;
        let mut sent = 0;
        while let Some(t) = call.next_send_ns() {
            assert!(t >= last);
            last = t;
            match call.step() {
                Some(Step::Sent(_)) => sent += 1,
                Some(Step::Dropped) => panic!("no loss configured"),
                None => panic!("next_send_ns said there was a packet"),
            }
        }
        let truth = call.into_truth();
        assert_eq!(truth.sip_packets, 7);
        let rtp = truth.caller_to_callee.packets_sent + truth.callee_to_caller.packets_sent;
        assert_eq!(sent, 7 + rtp);
        // About 50 packets per second per direction.
        assert!((95..=100).contains(&rtp), "{rtp}");
        assert!(truth.end_ns > truth.answer_ns && truth.answer_ns > truth.start_ns);
    }
}
