//! The recorder: feeds packets through decoding, SIP parsing and the call tracker, and writes each
//! call into its own folder `OUT/<recording-id>/`:
//! - `call.pcap`: every packet of the call (SIP, RTP, RTCP) in capture order;
//! - `audio.wav`: G.711 audio, caller left and callee right, when the call has G.711 media;
//! - `video-<ssrc hex>.h264` / `.ivf`: each H.264 / VP8 video stream's frames ([`video`]);
//! - `manifest.json`: the [`tapfleet_schemas::Manifest`], written last, after the other files
//!   are synced; its presence means the recording is complete on disk.
//!
//! Packets are handled one at a time and written through small buffers, so memory per call is
//! bounded. Bad packets are counted in [`RecorderStats`], never errors; only IO fails.
//!
//! Ended calls are finished (files synced, manifest written) by the [`finisher`] thread, so the
//! packet thread never waits for a sync; their `Finished` events (or failures) appear in
//! [`Recorder::drain_events`] / [`Recorder::drain_failures`] once done, always after the
//! recording's `Started`. [`Recorder::finish`] waits for all of them.
//!
//! The recording id is `tapfleet_schemas::recording_id(start_ns, d)` where `d` is the first 8 bytes
//! of SHA-256 over `edge_id || 0x00 || call_id || 0x00 || start_ns (i64 BE) || part (u32 BE)`.

pub mod budget;
mod call;
pub mod finisher;
mod parts;
pub mod pcap_writer;
mod prefetch;
pub mod video;
pub mod wav_writer;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tapfleet_schemas::Manifest;

pub use call::{MANIFEST_NAME, PCAP_NAME, WAV_NAME, emodel_mos};

use crate::calls::direction::SiteNetworks;
use crate::calls::legs::Legs;
use crate::calls::orphan::{OrphanDetector, OrphanOptions, OrphanVerdict};
use crate::calls::{
    CallEnd, CallKey, CallTracker, Dialog, MediaDirection, MediaRoute, SipVerdict, TrackerOptions,
};
use crate::capture::{OwnedPacket, RawPacket};
use crate::packet::reassembly::{Reassembler, ReassemblyLimits};
use crate::packet::{self, Datagram, Decoded, TcpMeta, Transport};
use crate::sip::stream::{Pushed, SipStreams, StreamLimits};
use crate::{rtp, sip};
use call::CallRecording;
use finisher::{Finisher, Job, Outcome};

/// The recorder's maps: keyed by addresses and internal call keys, looked up per packet.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// How the recorder behaves.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Written into manifests and mixed into recording ids (None offline).
    pub edge_id: Option<String>,
    /// An answered call with no packet for this long ends (end reason `rtp_timeout`).
    pub rtp_timeout_ns: i64,
    /// An unanswered call with no packet for this long ends.
    pub setup_timeout_ns: i64,
    /// After BYE, CANCEL or a final error, the call ends once no SIP was seen for this long.
    pub closing_grace_ns: i64,
    /// Calls recorded at once; further INVITEs are counted and ignored.
    pub max_calls: usize,
    /// Write `audio.wav` for G.711 calls.
    pub audio: bool,
    /// Bounds of IP fragment reassembly.
    pub reassembly: ReassemblyLimits,
    /// Bounds of SIP-over-TCP stream reassembly.
    pub tcp: StreamLimits,
    /// Whether and how RTP no SIP announced is recorded as orphan streams.
    pub orphans: OrphanOptions,
    /// Finish ended calls on a background thread (true) or inside `process`/`tick` (false).
    pub background_finish: bool,
    /// Sync each finished recording's files before publishing its manifest and reporting it
    /// `Finished` (the service's cache relies on it). Off only for the offline `record` command
    /// by default: like `cp`, it leaves the writing back to the kernel.
    pub durable: bool,
    /// A call recorded for this long is cut (end reason `max_duration`) and goes on as a next
    /// part with the same Call-ID ([`parts`]); 0: never.
    pub max_call_ns: i64,
    /// The site's networks: each call's manifest `direction` (inbound, outbound, internal)
    /// comes from its INVITE's addresses relative to them; empty: `unknown`.
    pub networks: SiteNetworks,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        let t = TrackerOptions::default();
        RecorderOptions {
            edge_id: None,
            rtp_timeout_ns: t.media_timeout_ns,
            setup_timeout_ns: t.setup_timeout_ns,
            closing_grace_ns: t.closing_grace_ns,
            max_calls: t.max_calls,
            audio: true,
            reassembly: ReassemblyLimits::default(),
            tcp: StreamLimits::default(),
            orphans: OrphanOptions::default(),
            background_finish: true,
            durable: true,
            max_call_ns: 4 * 3600 * 1_000_000_000,
            networks: SiteNetworks::default(),
        }
    }
}

/// Counters of everything the recorder saw; every packet lands in exactly one of `undecoded`,
/// `ip_fragments`, `sip_packets`, `rtp_packets`, `rtcp_packets`, `orphan_rtp_packets`,
/// `sip_tls_packets`, `other_packets`, `tcp_retransmissions`. A datagram reassembled from fragments is counted once
/// more, in what it carries (`sip_packets`, `rtp_packets`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderStats {
    pub packets: u64,
    pub bytes: u64,
    /// Link layer or IP not decodable (unknown link type, not IP, malformed).
    pub undecoded: u64,
    /// IP fragment packets.
    pub ip_fragments: u64,
    /// Datagrams reassembled from fragments.
    pub reassembled: u64,
    /// Datagrams dropped because fragments were still missing after the timeout.
    pub fragment_timeouts: u64,
    /// Datagrams dropped to keep reassembly within its memory bounds, or invalid.
    pub fragment_overflows: u64,
    /// TCP segments of SIP flows whose bytes were all seen before (not written).
    pub tcp_retransmissions: u64,
    /// SIP-over-TCP flows reset (a hole that did not fill, over the bound, not SIP) or evicted.
    pub tcp_resets: u64,
    /// Packets carrying SIP (any, including unparsable ones).
    pub sip_packets: u64,
    pub sip_messages: u64,
    pub sip_parse_errors: u64,
    /// TCP segments of SIP over TLS (port 5061, a TLS record): counted, not recorded, as their
    /// SIP is encrypted (reported in `record`'s summary).
    pub sip_tls_packets: u64,
    /// SIP messages not belonging to a call (REGISTER, OPTIONS, stray responses).
    pub sip_not_call: u64,
    pub sdp_parse_errors: u64,
    /// RTP packets of a recorded call.
    pub rtp_packets: u64,
    /// RTCP (or unparsable media) packets on a call's media ports.
    pub rtcp_packets: u64,
    /// RTP-looking UDP that no call announced (recorded in orphan streams once recognised).
    pub orphan_rtp_packets: u64,
    /// Orphan stream recordings started (also counted in `calls_started`).
    pub orphan_streams: u64,
    /// Orphan RTP packets not recorded: held for a candidate that turned out not to be a stream.
    pub orphan_discarded: u64,
    pub other_packets: u64,
    /// Packets written to some `call.pcap`.
    pub call_packets: u64,
    /// Packets of a call not written because their link type differs from its first packet's.
    pub linktype_mismatch: u64,
    pub calls_started: u64,
    pub calls_finished: u64,
    /// Calls whose files could not be written or finished.
    pub calls_failed: u64,
    /// INVITEs ignored because `max_calls` calls were active.
    pub calls_refused: u64,
    /// Calls cut at the maximum duration (each went on as a next part, counted in
    /// `calls_started`).
    pub calls_cut: u64,
    /// Packets the capture reported dropped by the kernel ([`Recorder::note_drops`]).
    pub capture_drops: u64,
    pub active_calls: u64,
}

/// A recording whose files are synced and whose `manifest.json` is written.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRecording {
    pub recording_id: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What happened to recordings since the last [`Recorder::drain_events`].
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderEvent {
    Started {
        recording_id: String,
        dir: PathBuf,
        start_ns: i64,
    },
    Finished(Box<FinishedRecording>),
}

/// A recording whose files could not be written: its folder may hold partial files and has no
/// manifest. Taken with [`Recorder::drain_failures`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecording {
    pub recording_id: String,
    pub dir: PathBuf,
    pub error: String,
}

/// An IO failure while recording.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("recording {recording_id} in {dir}: {source}")]
    Io {
        recording_id: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How often `process` expires calls as packet time advances.
const AUTO_TICK_NS: i64 = 100_000_000;

/// Records calls from a stream of packets.
#[derive(Debug)]
pub struct Recorder {
    out_dir: PathBuf,
    opts: RecorderOptions,
    tracker: CallTracker,
    calls: HashMap<CallKey, CallRecording>,
    events: Vec<RecorderEvent>,
    failures: Vec<FailedRecording>,
    stats: RecorderStats,
    last_tick_ns: Option<i64>,
    frags: Reassembler<OwnedPacket>,
    /// SIP-over-TCP flows; a tag is the packet (or the fragments) that carried a segment.
    tcp: SipStreams<Arc<[OwnedPacket]>>,
    orphans: OrphanDetector<Held>,
    legs: Legs,
    orphan_recs: HashMap<u64, (Dialog, CallRecording)>,
    /// (source, destination) -> orphan recording and direction; both directions of a stream.
    orphan_index: HashMap<(SocketAddr, SocketAddr), (u64, MediaDirection)>,
    next_orphan: u64,
    finisher: Finisher,
    /// The call and stream of the last RTP packet of a call, which gets the next one's
    /// [`prefetch::Hint`].
    prev_rtp: Option<(CallKey, usize)>,
}

/// An RTP packet held while its orphan stream is not yet recognised.
#[derive(Debug)]
struct Held {
    pkts: Vec<OwnedPacket>,
    now_ns: i64,
    payload: Vec<u8>,
}

impl Recorder {
    /// A recorder writing recordings under `out_dir` (created when the first call starts).
    pub fn new(out_dir: PathBuf, opts: RecorderOptions) -> Self {
        let mut tracker = CallTracker::new(TrackerOptions {
            media_timeout_ns: opts.rtp_timeout_ns,
            setup_timeout_ns: opts.setup_timeout_ns,
            closing_grace_ns: opts.closing_grace_ns,
            max_calls: opts.max_calls,
        });
        tracker.set_networks(opts.networks.clone());
        let frags = Reassembler::new(opts.reassembly);
        let tcp = SipStreams::new(opts.tcp);
        let orphan_opts = opts.orphans;
        let finisher = Finisher::new(opts.edge_id.clone(), opts.background_finish, opts.durable);
        Recorder {
            out_dir,
            opts,
            tracker,
            calls: HashMap::default(),
            events: Vec::new(),
            failures: Vec::new(),
            stats: RecorderStats::default(),
            last_tick_ns: None,
            frags,
            tcp,
            orphans: OrphanDetector::new(orphan_opts),
            legs: Legs::default(),
            orphan_recs: HashMap::default(),
            orphan_index: HashMap::default(),
            next_orphan: 0,
            finisher,
            prev_rtp: None,
        }
    }

    /// Handles one packet. Also ends calls that are over as packet time advances (every 100 ms
    /// of packet time), so [`Recorder::tick`] is only needed when no packets arrive.
    /// Fails only on IO, for one call: that call is dropped and also reported through
    /// [`Recorder::drain_failures`]; the recorder goes on with the others, so a caller may log
    /// the error and continue.
    pub fn process(&mut self, pkt: &RawPacket<'_>) -> Result<(), RecorderError> {
        self.stats.packets += 1;
        self.stats.bytes += pkt.data.len() as u64;
        match self.last_tick_ns {
            None => self.last_tick_ns = Some(pkt.ts_ns),
            Some(t) if (pkt.ts_ns - t).abs() >= AUTO_TICK_NS => self.tick(pkt.ts_ns),
            _ => {}
        }
        let (dg, tcp) = match packet::decode_any(pkt.linktype, pkt.data) {
            Ok(Decoded::Datagram(d, t)) => (d, t),
            Ok(Decoded::Fragment(f)) => {
                self.stats.ip_fragments += 1;
                let owned = OwnedPacket::from_raw(pkt);
                let cost = owned.cost();
                let done = self.frags.push(pkt.ts_ns, &f, owned, cost);
                self.sync_frag_stats();
                let Some(r) = done else { return Ok(()) };
                self.stats.reassembled += 1;
                let raws: Vec<RawPacket<'_>> = r.tags.iter().map(OwnedPacket::as_raw).collect();
                return match packet::decode_transport(r.src, r.dst, r.protocol, &r.payload) {
                    Ok((d, t)) => self.on_datagram(&raws, pkt.ts_ns, d, t),
                    Err(_) => {
                        self.stats.undecoded += 1;
                        Ok(())
                    }
                };
            }
            Err(_) => {
                self.stats.undecoded += 1;
                return Ok(());
            }
        };
        self.on_datagram(std::slice::from_ref(pkt), pkt.ts_ns, dg, tcp)
    }

    fn sync_frag_stats(&mut self) {
        let f = self.frags.stats();
        self.stats.fragment_timeouts = f.timeouts;
        self.stats.fragment_overflows = f.overflows + f.invalid;
        let t = self.tcp.stats();
        self.stats.tcp_retransmissions = t.retransmissions;
        self.stats.tcp_resets = t.resets + t.evicted;
    }

    /// Handles a UDP datagram or TCP segment carried by `pkts` (one packet, or the fragments
    /// it was reassembled from), seen at `now_ns`.
    fn on_datagram(
        &mut self,
        pkts: &[RawPacket<'_>],
        now_ns: i64,
        dg: Datagram<'_>,
        tcp: Option<TcpMeta>,
    ) -> Result<(), RecorderError> {
        if let Some(meta) = tcp
            && (self.tcp.follows(dg.src, dg.dst) || maybe_sip(dg.payload))
        {
            let owned: Arc<[OwnedPacket]> = pkts.iter().map(OwnedPacket::from_raw).collect();
            let pushed = self
                .tcp
                .push(now_ns, dg.src, dg.dst, meta, dg.payload, owned);
            self.sync_frag_stats();
            match pushed {
                Pushed::NotSip => {}
                Pushed::Retransmission => return Ok(()),
                Pushed::Sip(msgs) => {
                    self.stats.sip_packets += 1;
                    let mut result = Ok(());
                    for m in msgs {
                        let raws: Vec<RawPacket<'_>> = m
                            .tags
                            .iter()
                            .flat_map(|t| t.iter().map(OwnedPacket::as_raw))
                            .collect();
                        let hop = (dg.src.ip(), dg.dst.ip());
                        if let Err(e) = self.on_sip(&raws, now_ns, hop, &m.bytes) {
                            result = Err(e);
                        }
                    }
                    return result;
                }
            }
        } else if maybe_sip(dg.payload) {
            self.stats.sip_packets += 1;
            return self.on_sip(pkts, now_ns, (dg.src.ip(), dg.dst.ip()), dg.payload);
        }
        if dg.transport == Transport::Udp
            && let Some((route, route_at, route_len)) = self.tracker.route_media_at(dg.src, dg.dst)
        {
            let dialog = self.tracker.touch_dialog(route.key, now_ns);
            // T.38 (UDPTL) negotiated on a media line (often by a re-INVITE of an audio call) is
            // not RTP, even when its first bits look like it.
            let rtp = (!route.rtcp && !route.udptl && !rtp::is_rtcp(dg.payload))
                .then(|| rtp::parse(dg.payload).ok())
                .flatten();
            if rtp.is_some() {
                self.stats.rtp_packets += 1;
            } else {
                self.stats.rtcp_packets += 1;
            }
            let (Some(rec), Some(dialog)) = (self.calls.get_mut(&route.key), dialog) else {
                return Ok(());
            };
            let res = (|| {
                for pkt in pkts {
                    if rec.write_packet(pkt)? {
                        self.stats.call_packets += 1;
                    } else {
                        self.stats.linktype_mismatch += 1;
                    }
                }
                if let Some(r) = rtp {
                    rec.on_rtp(dialog, route, dg.src, dg.dst, &r, now_ns)?;
                } else if !route.udptl && rtp::is_rtcp(dg.payload) {
                    rec.on_rtcp(dg.payload);
                }
                Ok(())
            })();
            if let Err(e) = res {
                return Err(self.fail_call(route.key, e));
            }
            if rtp.is_some() {
                let mut hint = prefetch::Hint::default();
                rec.hint_last(&mut hint);
                hint.set(prefetch::slot::ROUTE, route_at, route_len);
                // The map's key just before the dialog, and the time every packet updates.
                let key = std::mem::size_of::<CallKey>();
                let at = dialog as *const crate::calls::Dialog as usize;
                hint.set(prefetch::slot::DIALOG, at.saturating_sub(key), 2 * key);
                hint.set_of(prefetch::slot::DIALOG_TIME, &dialog.last_ns, 0);
                let stream = rec.last_stream();
                if let Some((k, s)) = self.prev_rtp.replace((route.key, stream))
                    && let Some(prev) = self.calls.get_mut(&k)
                {
                    prev.set_next_hint(s, hint);
                }
            }
            return Ok(());
        }
        if dg.transport == Transport::Udp
            && !rtp::is_rtcp(dg.payload)
            && let Ok(r) = rtp::parse(dg.payload)
        {
            self.stats.orphan_rtp_packets += 1;
            if self.opts.orphans.enabled {
                return self.on_orphan(pkts, now_ns, dg, &r);
            }
        } else if tcp.is_some() && is_sip_tls(&dg) {
            self.stats.sip_tls_packets += 1;
        } else {
            self.stats.other_packets += 1;
        }
        Ok(())
    }

    /// RTP no call claims: part of a recorded orphan stream, or a candidate for one.
    fn on_orphan(
        &mut self,
        pkts: &[RawPacket<'_>],
        now_ns: i64,
        dg: Datagram<'_>,
        r: &rtp::RtpPacket<'_>,
    ) -> Result<(), RecorderError> {
        if let Some(&(k, dir)) = self.orphan_index.get(&(dg.src, dg.dst)) {
            return self.orphan_packet(k, dir, pkts, now_ns, dg.src, dg.dst, r);
        }
        let held = Held {
            pkts: pkts.iter().map(OwnedPacket::from_raw).collect(),
            now_ns,
            payload: dg.payload.to_vec(),
        };
        let verdict = self
            .orphans
            .observe(now_ns, dg.src, dg.dst, r.ssrc, r.seq, held);
        self.stats.orphan_discarded = self.orphans.discarded;
        let OrphanVerdict::Confirmed(held) = verdict else {
            return Ok(());
        };
        let Some(first) = held.first().and_then(|h| h.pkts.first()) else {
            return Ok(());
        };
        let first = first.as_raw();
        let start_ns = first.ts_ns;
        let key = self.next_orphan;
        self.next_orphan += 1;
        let mut h = Sha256::new();
        h.update(self.opts.edge_id.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(format!("orphan {} {} {:08x}", dg.src, dg.dst, r.ssrc).as_bytes());
        h.update([0]);
        h.update(start_ns.to_be_bytes());
        h.update(1u32.to_be_bytes());
        let digest = h.finalize();
        let mut disc = [0u8; 8];
        disc.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        let id = tapfleet_schemas::recording_id(start_ns, disc);
        let dir = self.out_dir.join(&id);
        self.wait_finished(Some(&id));
        let mut rec =
            match CallRecording::create(id.clone(), dir.clone(), start_ns, &first, self.opts.audio)
            {
                Ok(rec) => rec,
                Err(source) => return Err(self.report_failure(id, dir, source)),
            };
        rec.set_orphan();
        tracing::debug!(recording_id = %id, src = %dg.src, dst = %dg.dst, "orphan stream started");
        let dialog = Dialog::orphan(key, dg.src, dg.dst, start_ns);
        self.orphan_recs.insert(key, (dialog, rec));
        self.orphan_index
            .insert((dg.src, dg.dst), (key, MediaDirection::CallerToCallee));
        self.orphan_index
            .entry((dg.dst, dg.src))
            .or_insert((key, MediaDirection::CalleeToCaller));
        self.stats.calls_started += 1;
        self.stats.orphan_streams += 1;
        self.events.push(RecorderEvent::Started {
            recording_id: id,
            dir,
            start_ns,
        });
        // Both directions' held packets, in arrival order.
        let mut all: Vec<(MediaDirection, Held)> = held
            .into_iter()
            .map(|h| (MediaDirection::CallerToCallee, h))
            .collect();
        all.extend(
            self.orphans
                .take(dg.dst, dg.src)
                .into_iter()
                .map(|h| (MediaDirection::CalleeToCaller, h)),
        );
        all.sort_by_key(|(_, h)| h.now_ns);
        for (dir, h) in &all {
            let raws: Vec<RawPacket<'_>> = h.pkts.iter().map(OwnedPacket::as_raw).collect();
            let (src, dst) = match dir {
                MediaDirection::CallerToCallee => (dg.src, dg.dst),
                MediaDirection::CalleeToCaller => (dg.dst, dg.src),
            };
            if let Ok(r) = rtp::parse(&h.payload) {
                self.orphan_packet(key, *dir, &raws, h.now_ns, src, dst, &r)?;
            }
        }
        Ok(())
    }

    /// Writes an RTP packet of an orphan stream and accounts it.
    #[allow(clippy::too_many_arguments)]
    fn orphan_packet(
        &mut self,
        key: u64,
        direction: MediaDirection,
        pkts: &[RawPacket<'_>],
        now_ns: i64,
        src: SocketAddr,
        dst: SocketAddr,
        r: &rtp::RtpPacket<'_>,
    ) -> Result<(), RecorderError> {
        let Some((dialog, rec)) = self.orphan_recs.get_mut(&key) else {
            return Ok(());
        };
        dialog.last_ns = dialog.last_ns.max(now_ns);
        let route = MediaRoute {
            key,
            direction,
            rtcp: false,
            media_index: 0,
            udptl: false,
            srtp: false,
        };
        let mut written = 0;
        let mut mismatched = 0;
        let res = (|| {
            for pkt in pkts {
                if rec.write_packet(pkt)? {
                    written += 1;
                } else {
                    mismatched += 1;
                }
            }
            rec.on_rtp(dialog, route, src, dst, r, now_ns)
        })();
        self.stats.call_packets += written;
        self.stats.linktype_mismatch += mismatched;
        if let Err(source) = res {
            let (id, dir) = match self.orphan_recs.remove(&key) {
                Some((_, rec)) => (rec.id.clone(), rec.dir.clone()),
                None => (String::new(), self.out_dir.clone()),
            };
            self.orphan_index.retain(|_, (k, _)| *k != key);
            return Err(self.report_failure(id, dir, source));
        }
        Ok(())
    }

    /// Finishes the orphan streams idle for the RTP timeout at `now_ns` (all with `None`).
    fn end_orphans(&mut self, now_ns: Option<i64>) {
        let timeout = self.opts.rtp_timeout_ns;
        let mut over: Vec<u64> = self
            .orphan_recs
            .iter()
            .filter(|(_, (d, _))| now_ns.is_none_or(|n| n.saturating_sub(d.last_ns) >= timeout))
            .map(|(k, _)| *k)
            .collect();
        over.sort_unstable();
        for k in over {
            let Some((mut d, rec)) = self.orphan_recs.remove(&k) else {
                continue;
            };
            self.orphan_index.retain(|_, (key, _)| *key != k);
            d.end_reason = Some(if now_ns.is_some() {
                CallEnd::Timeout
            } else {
                CallEnd::CaptureEnd
            });
            self.finish_recording(rec, d);
        }
        if let Some(n) = now_ns {
            self.orphans.expire(n, timeout);
            self.stats.orphan_discarded = self.orphans.discarded;
        }
    }

    /// Handles one SIP message (a UDP datagram's, or one cut from a TCP stream) carried by
    /// `pkts` from `hop.0` to `hop.1`.
    fn on_sip(
        &mut self,
        pkts: &[RawPacket<'_>],
        now_ns: i64,
        hop: (IpAddr, IpAddr),
        payload: &[u8],
    ) -> Result<(), RecorderError> {
        let mut target: Option<CallKey> = None;
        {
            let msg = match sip::parse(payload) {
                Ok(m) => m,
                Err(_) => {
                    self.stats.sip_parse_errors += 1;
                    return Ok(());
                }
            };
            self.stats.sip_messages += 1;
            let sdp_errors = self.tracker.sdp_errors;
            let verdict = self.tracker.on_sip_from(now_ns, Some(hop), &msg);
            // Calls the message ended are finished before a new one may reuse their folder.
            for d in self.tracker.take_ended() {
                self.finish_call(d);
            }
            match verdict {
                SipVerdict::NewCall(k) => {
                    if let Some(first) = pkts.first() {
                        self.start_call(k, first)?;
                    }
                    target.get_or_insert(k);
                }
                SipVerdict::Call(k) => {
                    target.get_or_insert(k);
                }
                SipVerdict::NotCall => self.stats.sip_not_call += 1,
                SipVerdict::TooManyCalls => self.stats.calls_refused += 1,
            }
            self.stats.sdp_parse_errors += self.tracker.sdp_errors - sdp_errors;
        }
        if let Some(k) = target
            && let Some(rec) = self.calls.get_mut(&k)
        {
            for pkt in pkts {
                match rec.write_packet(pkt) {
                    Ok(true) => self.stats.call_packets += 1,
                    Ok(false) => self.stats.linktype_mismatch += 1,
                    Err(e) => return Err(self.fail_call(k, e)),
                }
            }
        }
        Ok(())
    }

    fn start_call(&mut self, key: CallKey, first: &RawPacket<'_>) -> Result<(), RecorderError> {
        let Some(d) = self.tracker.dialog(key) else {
            return Ok(());
        };
        let part = 1u32;
        let mut h = Sha256::new();
        h.update(self.opts.edge_id.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(d.call_id.as_bytes());
        h.update([0]);
        h.update(d.start_ns.to_be_bytes());
        h.update(part.to_be_bytes());
        let digest = h.finalize();
        let mut disc = [0u8; 8];
        disc.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        let id = tapfleet_schemas::recording_id(d.start_ns, disc);
        let dir = self.out_dir.join(&id);
        let start_ns = d.start_ns;
        // The other legs of a B2BUA's call, linked both ways.
        let legs = self
            .legs
            .start(key, &d.caller.user, &d.callee.user, start_ns, &id);
        if self.finisher.is_pending(&id) {
            // The same recording id again (Call-ID and start reused): its folder is reused only
            // once the earlier recording is finished, and `Finished` goes out before `Started`.
            self.wait_finished(Some(&id));
        }
        match CallRecording::create(id.clone(), dir.clone(), start_ns, first, self.opts.audio) {
            Ok(mut rec) => {
                for (other, other_id) in legs {
                    rec.link(other_id);
                    if let Some(o) = self.calls.get_mut(&other) {
                        o.link(id.clone());
                    }
                }
                tracing::debug!(
                    recording_id = %id,
                    call_id = self.tracker.dialog(key).map_or("", |d| d.call_id.as_str()),
                    "call started"
                );
                self.calls.insert(key, rec);
                self.stats.calls_started += 1;
                self.stats.active_calls = self.calls.len() as u64;
                self.events.push(RecorderEvent::Started {
                    recording_id: id,
                    dir,
                    start_ns,
                });
                Ok(())
            }
            Err(source) => Err(self.report_failure(id, dir, source)),
        }
    }

    /// Counts and reports a recording whose files failed; returns the error for the caller.
    fn report_failure(
        &mut self,
        id: String,
        dir: PathBuf,
        source: std::io::Error,
    ) -> RecorderError {
        self.stats.calls_failed += 1;
        self.failures.push(FailedRecording {
            recording_id: id.clone(),
            dir: dir.clone(),
            error: source.to_string(),
        });
        RecorderError::Io {
            recording_id: id,
            dir,
            source,
        }
    }

    /// Drops a call whose files failed; reports it.
    fn fail_call(&mut self, key: CallKey, source: std::io::Error) -> RecorderError {
        let (id, dir) = match self.calls.remove(&key) {
            Some(rec) => (rec.id.clone(), rec.dir.clone()),
            None => (String::new(), self.out_dir.clone()),
        };
        tracing::warn!(recording_id = %id, error = %source, "recording failed");
        self.stats.active_calls = self.calls.len() as u64;
        self.report_failure(id, dir, source)
    }

    /// Ends calls that are over at `now_ns` (BYE grace, timeouts). Call it when idle.
    pub fn tick(&mut self, now_ns: i64) {
        self.last_tick_ns = Some(now_ns);
        self.frags.expire(now_ns);
        self.tcp.expire(now_ns);
        self.sync_frag_stats();
        let ended = self.tracker.expire(now_ns);
        for d in ended {
            self.finish_call(d);
        }
        self.end_orphans(Some(now_ns));
        self.cut_long_calls(now_ns);
    }

    /// End of capture: ends and finishes every call, and waits until all are finished.
    pub fn finish(&mut self) {
        let ended = self.tracker.end_all();
        for d in ended {
            self.finish_call(d);
        }
        self.end_orphans(None);
        self.wait_finished(None);
    }

    fn finish_call(&mut self, d: Dialog) {
        let Some(rec) = self.calls.remove(&d.key) else {
            return;
        };
        self.stats.active_calls = self.calls.len() as u64;
        self.finish_recording(rec, d);
    }

    /// Hands a recording to the finisher, which syncs its files and writes its manifest.
    fn finish_recording(&mut self, rec: CallRecording, dialog: Dialog) {
        self.finisher.submit(Job { rec, dialog });
        self.poll_finished();
    }

    /// Reports a finished (or failed) recording.
    fn take_outcome(&mut self, o: Outcome) {
        match o.result {
            Ok(manifest) => {
                tracing::debug!(recording_id = %o.id, packets = manifest.packets, "call finished");
                self.stats.calls_finished += 1;
                self.events
                    .push(RecorderEvent::Finished(Box::new(FinishedRecording {
                        recording_id: o.id,
                        dir: o.dir,
                        manifest,
                    })));
            }
            Err(e) => {
                tracing::warn!(recording_id = %o.id, error = %e, "finishing recording failed");
                // Reported through drain_failures; nobody waits for the error here.
                let _ = self.report_failure(o.id, o.dir, e);
            }
        }
    }

    /// Takes the outcomes the finisher has ready, without waiting.
    fn poll_finished(&mut self) {
        while let Some(o) = self.finisher.next(false) {
            self.take_outcome(o);
        }
    }

    /// Waits until recording `id` (None: every recording) is finished.
    fn wait_finished(&mut self, id: Option<&str>) {
        while id.is_none_or(|id| self.finisher.is_pending(id)) {
            match self.finisher.next(true) {
                Some(o) => self.take_outcome(o),
                None => break,
            }
        }
    }

    /// Waits until every call ended so far is finished (its event ready to drain).
    pub fn wait_finishing(&mut self) {
        self.wait_finished(None);
    }

    /// Ended recordings still being finished.
    pub fn finishing(&self) -> usize {
        self.finisher.in_flight()
    }

    /// Takes the events that happened since the last call (`Finished` once the finisher is
    /// done with a recording).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, RecorderEvent> {
        self.poll_finished();
        self.events.drain(..)
    }

    /// Takes the recordings that failed since the last call.
    pub fn drain_failures(&mut self) -> std::vec::Drain<'_, FailedRecording> {
        self.poll_finished();
        self.failures.drain(..)
    }

    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// Calls (and orphan streams) being recorded now.
    pub fn active_calls(&self) -> usize {
        self.calls.len() + self.orphan_recs.len()
    }
}

/// The SIP-over-TLS port (RFC 3261 `sips:`).
const SIP_TLS_PORT: u16 = 5061;

/// Whether a TCP segment is SIP over TLS: to or from port 5061 and starting with a TLS record
/// header (content type 20..=23, version 3.x). Counted, never recorded: its SIP is encrypted.
fn is_sip_tls(dg: &Datagram<'_>) -> bool {
    (dg.src.port() == SIP_TLS_PORT || dg.dst.port() == SIP_TLS_PORT)
        && matches!(dg.payload, [20..=23, 3, 0..=4, ..])
}

/// Whether a payload may be SIP: [`sip::looks_like_sip`], after a one-byte check that rejects RTP
/// (first byte 0x80..) and most other binary payloads without scanning them for a line end.
#[inline]
fn maybe_sip(p: &[u8]) -> bool {
    p.first().is_some_and(u8::is_ascii_uppercase) && sip::looks_like_sip(p)
}
