//! Orphan stream detection, pure: RTP that no SIP announced is recognised by its shape (version 2,
//! one SSRC on one (source, destination), sequence numbers advancing by small steps over at least
//! `min_packets` packets) or by a configured port range, so the recorder can keep it as its own recording instead of only
//! counting it. Until a candidate is confirmed its packets (tags) are held, bounded, so the
//! recording starts with the stream's first packet.

use std::collections::HashMap;
use std::net::SocketAddr;

/// How orphan streams are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanOptions {
    /// Record RTP-shaped UDP no call announced (false: only count it).
    pub enabled: bool,
    /// Consecutive packets of one SSRC with advancing sequence numbers that make a stream.
    pub min_packets: usize,
    /// UDP to or from a port in this range is a stream from its first RTP packet.
    pub port_range: Option<(u16, u16)>,
    /// Candidates followed at once (the least recently seen is dropped). Memory: each holds at
    /// most `min_packets` packet copies, so about `max_candidates * min_packets * 2` packets.
    pub max_candidates: usize,
}

impl Default for OrphanOptions {
    fn default() -> Self {
        OrphanOptions {
            enabled: true,
            min_packets: 8,
            port_range: None,
            max_candidates: 1024,
        }
    }
}

/// What [`OrphanDetector::observe`] decided about a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum OrphanVerdict<T> {
    /// Not (yet) a stream; the tag is held.
    Pending,
    /// A stream: its held tags, this packet's last, in arrival order.
    Confirmed(Vec<T>),
}

#[derive(Debug)]
struct Candidate<T> {
    last_seq: u16,
    last_ns: i64,
    /// (arrival, tag)
    held: Vec<(i64, T)>,
}

/// Candidate orphan streams by (source, destination).
#[derive(Debug)]
pub struct OrphanDetector<T> {
    opts: OrphanOptions,
    candidates: HashMap<(SocketAddr, SocketAddr, u32), Candidate<T>>,
    /// Held packets dropped because their candidate changed shape or was evicted.
    pub discarded: u64,
}

impl<T> OrphanDetector<T> {
    pub fn new(opts: OrphanOptions) -> Self {
        OrphanDetector {
            opts,
            candidates: HashMap::new(),
            discarded: 0,
        }
    }

    /// Candidates followed now.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// Accounts an RTP packet (already parsed: version 2, not RTCP) no call claims. A confirmed
    /// stream returns the held packets of every SSRC between these addresses.
    pub fn observe(
        &mut self,
        now_ns: i64,
        src: SocketAddr,
        dst: SocketAddr,
        ssrc: u32,
        seq: u16,
        tag: T,
    ) -> OrphanVerdict<T> {
        let in_range = self.opts.port_range.is_some_and(|(lo, hi)| {
            (lo..=hi).contains(&src.port()) || (lo..=hi).contains(&dst.port())
        });
        let key = (src, dst, ssrc);
        if !self.candidates.contains_key(&key)
            && self.candidates.len() >= self.opts.max_candidates.max(1)
        {
            self.evict_oldest();
        }
        let c = self.candidates.entry(key).or_insert_with(|| Candidate {
            last_seq: seq.wrapping_sub(1),
            last_ns: now_ns,
            held: Vec::new(),
        });
        let step = seq.wrapping_sub(c.last_seq);
        if !(1..=4).contains(&step) {
            // Not the same stream going on: start again from this packet.
            self.discarded += c.held.len() as u64;
            c.held.clear();
        }
        c.last_seq = seq;
        c.last_ns = now_ns;
        c.held.push((now_ns, tag));
        if in_range || c.held.len() >= self.opts.min_packets.max(1) {
            return OrphanVerdict::Confirmed(self.take(src, dst));
        }
        OrphanVerdict::Pending
    }

    /// Takes the packets held for (src, dst), any SSRC, in arrival order, and forgets those
    /// candidates (a stream between these addresses was confirmed: they belong to its recording).
    pub fn take(&mut self, src: SocketAddr, dst: SocketAddr) -> Vec<T> {
        let keys: Vec<_> = self
            .candidates
            .keys()
            .filter(|(s, d, _)| (*s, *d) == (src, dst))
            .copied()
            .collect();
        let mut held: Vec<(i64, usize, T)> = Vec::new();
        for k in keys {
            if let Some(c) = self.candidates.remove(&k) {
                held.extend(c.held.into_iter().map(|(t, x)| (t, k.2 as usize, x)));
            }
        }
        held.sort_by_key(|(t, s, _)| (*t, *s));
        held.into_iter().map(|(_, _, x)| x).collect()
    }

    /// Drops candidates not seen for `timeout_ns` at `now_ns`.
    pub fn expire(&mut self, now_ns: i64, timeout_ns: i64) {
        let mut dropped = 0;
        self.candidates.retain(|_, c| {
            let keep = now_ns.saturating_sub(c.last_ns) < timeout_ns;
            if !keep {
                dropped += c.held.len() as u64;
            }
            keep
        });
        self.discarded += dropped;
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .candidates
            .iter()
            .min_by_key(|(_, c)| c.last_ns)
            .map(|(k, _)| *k);
        if let Some(k) = oldest
            && let Some(c) = self.candidates.remove(&k)
        {
            self.discarded += c.held.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn shape_confirms_after_min_packets_and_changes_restart() {
        let mut d = OrphanDetector::new(OrphanOptions {
            min_packets: 3,
            ..OrphanOptions::default()
        });
        let (a, b) = (addr("10.0.0.1:4000"), addr("10.0.0.2:5000"));
        assert_eq!(d.observe(0, a, b, 7, 65535, 1), OrphanVerdict::Pending);
        assert_eq!(d.observe(1, a, b, 7, 0, 2), OrphanVerdict::Pending);
        // Another SSRC is another candidate on the same addresses.
        assert_eq!(d.observe(2, a, b, 8, 1, 3), OrphanVerdict::Pending);
        // A jump in sequence numbers starts SSRC 8 again.
        assert_eq!(d.observe(3, a, b, 8, 900, 4), OrphanVerdict::Pending);
        assert_eq!(d.discarded, 1);
        assert_eq!(
            d.observe(4, a, b, 8, 902, 5),
            OrphanVerdict::Pending,
            "one lost"
        );
        // SSRC 7 makes three: both SSRCs' held packets come out in arrival order.
        assert_eq!(
            d.observe(5, a, b, 7, 1, 6),
            OrphanVerdict::Confirmed(vec![1, 2, 4, 5, 6])
        );
        assert_eq!(d.candidates(), 0);
        d.observe(6, b, a, 9, 100, 7);
        d.expire(1_000, 10);
        assert_eq!((d.candidates(), d.discarded), (0, 2));
    }

    #[test]
    fn port_range_confirms_at_once() {
        let mut d = OrphanDetector::new(OrphanOptions {
            port_range: Some((10_000, 20_000)),
            ..OrphanOptions::default()
        });
        let v = d.observe(0, addr("10.0.0.1:4000"), addr("10.0.0.2:10000"), 1, 5, "x");
        assert_eq!(v, OrphanVerdict::Confirmed(vec!["x"]));
    }
}
