//! Bounded IPv4 and IPv6 fragment reassembly, pure: fragments and `now` (packet time) in,
//! complete datagrams out. Fragments are keyed by (source, destination, identification, protocol)
//! as RFC 791 and RFC 8200 say; overlapping data keeps the bytes that arrived first (RFC 5722 says
//! drop overlaps in IPv6, but captures see retransmitted identical fragments, which this accepts).
//!
//! Bounds, passed in [`ReassemblyLimits`]: total bytes buffered (fragment data plus the caller's
//! per-fragment tag cost), datagrams pending at once, and the time a datagram may wait for its
//! missing fragments. When a new fragment would exceed a bound, the oldest pending datagrams are
//! dropped (counted as overflows); expired ones are dropped (counted as timeouts).
//!
//! Each fragment carries a caller-chosen tag (the recorder uses a copy of the original packet),
//! returned with the datagram, so whoever reassembles can keep the fragments themselves.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Fragment;

/// Largest reassembled IP payload (the 16-bit length fields' limit).
pub const MAX_DATAGRAM: usize = 65_535;
/// Fragments kept per datagram at most (a 64 KiB datagram in 8-byte fragments would need 8192;
/// real ones need a handful).
const MAX_PARTS: usize = 256;

/// Memory and time bounds of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Bytes buffered across all pending datagrams (data + tag costs).
    pub max_bytes: usize,
    /// Datagrams pending at once.
    pub max_datagrams: usize,
    /// A datagram whose first fragment is older than this (packet time) is dropped.
    pub timeout_ns: i64,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_bytes: 8 * 1024 * 1024,
            max_datagrams: 4096,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// What the reassembler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub fragments: u64,
    pub completed: u64,
    /// Datagrams dropped because fragments were missing after the timeout.
    pub timeouts: u64,
    /// Datagrams dropped to stay within the memory or count bounds.
    pub overflows: u64,
    /// Fragments refused: beyond 64 KiB, inconsistent end, too many parts.
    pub invalid: u64,
}

/// A reassembled datagram: the IP payload (transport header + data) and its fragments' tags in
/// arrival order.
#[derive(Debug)]
pub struct Reassembled<T> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub payload: Vec<u8>,
    pub tags: Vec<T>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

#[derive(Debug)]
struct Pending<T> {
    first_ns: i64,
    /// (offset, data), in arrival order.
    parts: Vec<(usize, Vec<u8>)>,
    /// The payload's length, known once the last fragment arrived.
    total: Option<usize>,
    cost: usize,
    tags: Vec<T>,
}

/// Reassembles fragments within [`ReassemblyLimits`].
#[derive(Debug)]
pub struct Reassembler<T> {
    limits: ReassemblyLimits,
    pending: HashMap<Key, Pending<T>>,
    bytes: usize,
    stats: ReassemblyStats,
}

impl<T> Reassembler<T> {
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            pending: HashMap::new(),
            bytes: 0,
            stats: ReassemblyStats::default(),
        }
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Bytes buffered now (data + tag costs).
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a fragment seen at `now_ns`, tagged with `tag` that costs `tag_cost` bytes of the
    /// memory bound. Returns the datagram when this fragment completes it.
    pub fn push(
        &mut self,
        now_ns: i64,
        frag: &Fragment<'_>,
        tag: T,
        tag_cost: usize,
    ) -> Option<Reassembled<T>> {
        self.stats.fragments += 1;
        self.expire(now_ns);
        let end = frag.offset.checked_add(frag.data.len())?;
        let cost = frag.data.len() + tag_cost;
        if end > MAX_DATAGRAM || cost > self.limits.max_bytes {
            self.stats.invalid += 1;
            return None;
        }
        let key = Key {
            src: frag.src,
            dst: frag.dst,
            id: frag.id,
            protocol: frag.protocol,
        };
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= self.limits.max_datagrams.max(1) {
                self.drop_oldest();
            }
        }
        while self.bytes + cost > self.limits.max_bytes && !self.pending.is_empty() {
            self.drop_oldest();
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            first_ns: now_ns,
            parts: Vec::new(),
            total: None,
            cost: 0,
            tags: Vec::new(),
        });
        let bad_end = match p.total {
            Some(t) => end > t || (!frag.more && end != t),
            None => !frag.more && p.parts.iter().any(|(o, d)| o + d.len() > end),
        };
        if bad_end || p.parts.len() >= MAX_PARTS {
            self.stats.invalid += 1;
            if let Some(p) = self.pending.remove(&key) {
                self.bytes -= p.cost;
            }
            return None;
        }
        if !frag.more {
            p.total = Some(end);
        }
        p.parts.push((frag.offset, frag.data.to_vec()));
        p.tags.push(tag);
        p.cost += cost;
        self.bytes += cost;
        let total = p.total?;
        if !covers(&p.parts, total) {
            return None;
        }
        let p = self.pending.remove(&key)?;
        self.bytes -= p.cost;
        self.stats.completed += 1;
        let mut payload = vec![0u8; total];
        let mut filled = vec![false; total];
        for (off, data) in &p.parts {
            for (i, b) in data.iter().enumerate() {
                if let (Some(dst), Some(f)) = (payload.get_mut(off + i), filled.get_mut(off + i))
                    && !*f
                {
                    *dst = *b;
                    *f = true;
                }
            }
        }
        Some(Reassembled {
            src: key.src,
            dst: key.dst,
            protocol: key.protocol,
            payload,
            tags: p.tags,
        })
    }

    /// Drops datagrams whose first fragment is older than the timeout at `now_ns`.
    pub fn expire(&mut self, now_ns: i64) {
        let timeout = self.limits.timeout_ns;
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = now_ns.saturating_sub(p.first_ns) < timeout;
            if !keep {
                freed += p.cost;
            }
            keep
        });
        self.bytes -= freed;
        self.stats.timeouts += (before - self.pending.len()) as u64;
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_ns)
            .map(|(k, _)| *k);
        if let Some(k) = oldest
            && let Some(p) = self.pending.remove(&k)
        {
            self.bytes -= p.cost;
            self.stats.overflows += 1;
        }
    }
}

/// Whether the parts cover `0..total` without a hole.
fn covers(parts: &[(usize, Vec<u8>)], total: usize) -> bool {
    let mut spans: Vec<(usize, usize)> = parts.iter().map(|(o, d)| (*o, o + d.len())).collect();
    spans.sort_unstable();
    let mut reached = 0;
    for (start, end) in spans {
        if start > reached {
            return false;
        }
        reached = reached.max(end);
    }
    reached >= total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(id: u32, offset: usize, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            src: "10.0.0.1".parse().expect("ip"),
            dst: "10.0.0.2".parse().expect("ip"),
            id,
            protocol: 17,
            offset,
            more,
            data,
        }
    }

    #[test]
    fn out_of_order_and_duplicate_fragments_reassemble() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let a = [1u8; 16];
        let b = [2u8; 16];
        let c = [3u8; 5];
        assert!(r.push(0, &frag(7, 32, false, &c), "c", 0).is_none());
        assert!(r.push(1, &frag(7, 0, true, &a), "a", 0).is_none());
        assert!(r.push(2, &frag(7, 0, true, &a), "a2", 0).is_none());
        let d = r.push(3, &frag(7, 16, true, &b), "b", 0).expect("complete");
        assert_eq!(d.payload.len(), 37);
        assert_eq!(&d.payload[..16], &a);
        assert_eq!(&d.payload[16..32], &b);
        assert_eq!(&d.payload[32..], &c);
        assert_eq!(d.tags, vec!["c", "a", "a2", "b"]);
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.stats().completed, 1);
    }

    #[test]
    fn timeouts_and_memory_bounds_drop_and_count() {
        let limits = ReassemblyLimits {
            max_bytes: 100,
            max_datagrams: 2,
            timeout_ns: 1_000,
        };
        let mut r = Reassembler::new(limits);
        let d = [0u8; 40];
        r.push(0, &frag(1, 0, true, &d), (), 0);
        assert!(r.push(5_000, &frag(1, 40, false, &d), (), 0).is_none());
        assert_eq!(r.stats().timeouts, 1, "the first fragment timed out");
        r.push(5_001, &frag(2, 0, true, &d), (), 0);
        r.push(5_002, &frag(3, 0, true, &d), (), 0);
        assert_eq!(r.stats().overflows, 1, "over 100 bytes: the oldest goes");
        r.push(5_003, &frag(4, 0, true, &[0; 8]), (), 0);
        assert!(r.pending() <= 2);
        assert!(r.buffered_bytes() <= 100);
        r.push(5_004, &frag(5, 0, true, &[0; 8]), (), 200);
        assert_eq!(
            r.stats().invalid,
            1,
            "a tag beyond the whole bound is refused"
        );
        r.push(5_005, &frag(6, 65_530, false, &[0; 8]), (), 0);
        assert_eq!(r.stats().invalid, 2, "beyond 64 KiB is refused");
    }

    #[test]
    fn inconsistent_last_fragment_drops_the_datagram() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        r.push(0, &frag(1, 0, true, &[0; 32]), (), 0);
        assert!(r.push(1, &frag(1, 8, false, &[0; 8]), (), 0).is_none());
        assert_eq!(r.stats().invalid, 1);
        assert_eq!((r.pending(), r.buffered_bytes()), (0, 0));
    }
}
