//! tapfleet-callgen: generates realistic SIP/RTP call captures and their ground truth, for the
//! quickstart, tests and benchmarks.
//!
//! A capture is a classic pcap (Ethernet, IPv4, UDP with valid checksums) holding N basic calls —
//! INVITE/100/180/200/ACK with SDP offer/answer, two-way 20 ms G.711 RTP carrying a different sine
//! tone per party, then BYE/200 — overlapping so that about `concurrency` are active at once, with
//! optional RTP loss and arrival jitter. The [`Truth`] says what every call and stream contained.
//!
//! Code map: [`options`](GenOptions) what to generate; `call` one call as a lazy packet sequence;
//! `sip` message text; `wire` frames and the pcap writer; [`g711`] the codecs; `rng` the seeded
//! PRNG; [`truth`](Truth) the ground truth. This file merges the calls' sequences by timestamp.
//!
//! Architecture invariant: output is a pure function of [`GenOptions`] (seed included): no clock,
//! no OS randomness. Memory is bounded by active calls plus the packets inside one jitter window,
//! never by the total packet count.

mod call;
pub mod g711;
mod options;
mod rng;
mod sip;
mod truth;
mod wire;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use options::{Codec, CodecChoice, DEFAULT_START_UNIX_S, GenOptions};
pub use truth::{CallTruth, PartyTruth, Side, StreamTruth, Totals, Truth};

use call::{CallGen, Packet, Step};

/// Why a capture could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Writing the capture failed.
    #[error("writing the capture: {0}")]
    Io(#[from] io::Error),
    /// Creating or writing a file failed.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Serialising the truth failed.
    #[error("writing the truth JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A call in the merge heap, ordered by its next send time (then index, for determinism).
struct Active {
    next_ns: u64,
    call: Box<CallGen>,
}

impl Active {
    fn key(&self) -> (u64, u32) {
        (self.next_ns, self.call.index())
    }
}

impl PartialEq for Active {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Active {}
impl PartialOrd for Active {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Active {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// A packet waiting for its arrival time to be safe to write, ordered by (arrival, production
/// order).
struct Pending {
    order: u64,
    packet: Packet,
}

impl Pending {
    fn key(&self) -> (u64, u64) {
        (self.packet.arrival_ns, self.order)
    }
}
impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

fn write_packet<W: Write>(
    pcap: &mut wire::PcapWriter<W>,
    totals: &mut Totals,
    p: &Packet,
) -> io::Result<()> {
    pcap.write(p.arrival_ns, &p.frame)?;
    if totals.packets == 0 {
        totals.first_ns = p.arrival_ns;
    }
    totals.last_ns = p.arrival_ns;
    totals.packets += 1;
    totals.frame_bytes += p.frame.len() as u64;
    if p.is_rtp {
        totals.rtp_packets += 1;
    } else {
        totals.sip_packets += 1;
    }
    Ok(())
}

/// Generates the capture described by `opts` into `out` (a pcap stream) and returns its truth.
///
/// Calls are produced lazily and merged by timestamp: a heap orders active calls by their next
/// send time, and a second heap holds packets whose arrival (send + jitter) is not yet safe to
/// write. A packet is written once no active or future call can produce an earlier arrival, which
/// holds because arrival >= send and calls start in order.
pub fn generate(opts: &GenOptions, out: impl Write) -> Result<Truth, GenError> {
    opts.validate()?;
    let mut pcap = wire::PcapWriter::new(
        BufWriter::with_capacity(1 << 20, out),
        opts.nanosecond_timestamps,
    )?;
    let mut totals = Totals::default();
    let mut done: Vec<Option<CallTruth>> = Vec::new();
    let mut active: BinaryHeap<Reverse<Active>> = BinaryHeap::new();
    let mut pending: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut next_index = 0u32;
    let mut next_call = (opts.calls > 0).then(|| CallGen::plan(opts, 0));
    let mut order = 0u64;

    loop {
        let next_active = active.peek().map(|Reverse(a)| a.next_ns);
        let next_start = next_call.as_ref().map(CallGen::start_ns);
        let horizon = match (next_active, next_start) {
            (None, None) => break,
            (Some(a), None) => a,
            (None, Some(s)) => s,
            (Some(a), Some(s)) => a.min(s),
        };
        while pending
            .peek()
            .is_some_and(|Reverse(p)| p.packet.arrival_ns <= horizon)
        {
            if let Some(Reverse(p)) = pending.pop() {
                write_packet(&mut pcap, &mut totals, &p.packet)?;
            }
        }
        if next_start == Some(horizon) {
            if let Some(call) = next_call.take() {
                next_index += 1;
                if next_index < opts.calls {
                    next_call = Some(CallGen::plan(opts, next_index));
                }
                active.push(Reverse(Active {
                    next_ns: call.start_ns(),
                    call: Box::new(call),
                }));
            }
            continue;
        }
        let Some(Reverse(mut a)) = active.pop() else {
            break;
        };
        if let Some(Step::Sent(packet)) = a.call.step() {
            pending.push(Reverse(Pending { order, packet }));
            order += 1;
        }
        match a.call.next_send_ns() {
            Some(next_ns) => {
                a.next_ns = next_ns;
                active.push(Reverse(a));
            }
            None => {
                let truth = a.call.into_truth();
                let slot = truth.index as usize;
                if done.len() <= slot {
                    done.resize(slot + 1, None);
                }
                totals.rtp_dropped += (truth.caller_to_callee.dropped_seqs.len()
                    + truth.callee_to_caller.dropped_seqs.len())
                    as u64;
                if let Some(s) = done.get_mut(slot) {
                    *s = Some(truth);
                }
            }
        }
    }
    while let Some(Reverse(p)) = pending.pop() {
        write_packet(&mut pcap, &mut totals, &p.packet)?;
    }
    totals.file_bytes = pcap.bytes();
    pcap.finish()?;
    Ok(Truth {
        generator: format!("tapfleet-callgen {}", env!("CARGO_PKG_VERSION")),
        options: opts.clone(),
        calls: done.into_iter().flatten().collect(),
        totals,
    })
}

/// The default truth path beside a capture: `calls.pcap` → `calls.truth.json`.
pub fn default_truth_path(pcap_path: &Path) -> PathBuf {
    pcap_path.with_extension("truth.json")
}

/// Generates into the file `pcap_path` and writes the truth as pretty JSON to `truth_path`
/// (default: [`default_truth_path`]).
pub fn generate_to_file(
    opts: &GenOptions,
    pcap_path: &Path,
    truth_path: Option<&Path>,
) -> Result<Truth, GenError> {
    opts.validate()?;
    let file_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GenError::File { path, source }
    };
    let file = File::create(pcap_path).map_err(file_err(pcap_path))?;
    let truth = generate(opts, file)?;
    let truth_path = truth_path.map_or_else(|| default_truth_path(pcap_path), Path::to_path_buf);
    let tf = File::create(&truth_path).map_err(file_err(&truth_path))?;
    let mut w = BufWriter::new(tf);
    serde_json::to_writer_pretty(&mut w, &truth)?;
    w.write_all(b"\n").map_err(file_err(&truth_path))?;
    w.flush().map_err(file_err(&truth_path))?;
    Ok(truth)
}
