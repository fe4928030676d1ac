//! Prefetch hints: where the records of the RTP packet most likely to come next are, so they are
//! on their way to the cache while the current packet is handled.
//!
//! With many concurrent calls, each RTP packet touches records no cache still holds: its media
//! route, its dialog, its call, its stream, the tail of the call's pcap buffer and its place in
//! the WAV ring; the misses, one after another, were most of the time spent per packet. Yet a
//! capture is a round of the same streams every packet interval (20 ms), in nearly the same
//! order. So after each RTP packet the recorder notes where those records are for it (a [`Hint`])
//! in the stream of the RTP packet before it; when that stream's next packet comes, its hint is
//! prefetched, and the packet that followed it last round likely follows again.
//!
//! A hint is only addresses: a wrong or stale one (a call since finished, a buffer since moved)
//! costs a few wasted prefetches, never a wrong result, as a prefetch neither faults nor changes
//! memory. Other targets than x86-64 prefetch nothing.

/// Cache line size assumed.
const LINE: usize = 64;

/// Spans of a hint: route, dialog key, dialog time, call, stream, pcap tail, WAV slots.
pub(super) const SPANS: usize = 7;

/// Span slots of a [`Hint`].
pub(super) mod slot {
    pub const ROUTE: usize = 0;
    pub const DIALOG: usize = 1;
    pub const DIALOG_TIME: usize = 2;
    pub const CALL: usize = 3;
    pub const STREAM: usize = 4;
    pub const PCAP: usize = 5;
    pub const WAV: usize = 6;
}

/// Memory spans to prefetch, each a line-aligned address with its number of lines in the low
/// six bits (0: empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Hint([usize; SPANS]);

impl Hint {
    /// Sets span `slot` to the lines holding `bytes` bytes from `addr` (at most 63 lines).
    #[inline]
    pub fn set(&mut self, slot: usize, addr: usize, bytes: usize) {
        let start = addr & !(LINE - 1);
        let lines = (addr - start + bytes).div_ceil(LINE).min(LINE - 1);
        if let Some(s) = self.0.get_mut(slot) {
            *s = if addr == 0 { 0 } else { start | lines };
        }
    }

    /// Sets span `slot` to the lines of `value`, widened by `before` bytes before it.
    #[inline]
    pub fn set_of<T>(&mut self, slot: usize, value: &T, before: usize) {
        let addr = (value as *const T as usize).saturating_sub(before);
        self.set(slot, addr, std::mem::size_of::<T>() + before);
    }

    /// Prefetches every line of the hint.
    #[inline]
    pub fn issue(&self) {
        for &s in &self.0 {
            let start = s & !(LINE - 1);
            for l in 0..s & (LINE - 1) {
                prefetch_line(start + l * LINE);
            }
        }
    }
}

#[inline(always)]
fn prefetch_line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache: it never faults and changes no memory, whatever
    // the address (a stale hint may name memory since freed or unmapped); nothing is dereferenced.
    #[allow(unsafe_code)]
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_lines_of_their_bytes() {
        let mut h = Hint::default();
        h.set(slot::PCAP, 0x1000 + 60, 8);
        assert_eq!(h.0[slot::PCAP], 0x1000 | 2);
        h.set(slot::WAV, 0x2000, 640);
        assert_eq!(h.0[slot::WAV], 0x2000 | 10);
        h.set(slot::CALL, 0x3000, 1 << 20);
        assert_eq!(h.0[slot::CALL], 0x3000 | 63);
        h.set(slot::ROUTE, 0, 64);
        assert_eq!(h.0[slot::ROUTE], 0);
        let v = [0u64; 20];
        h.set_of(slot::STREAM, &v, 8);
        let start = (&v as *const _ as usize - 8) & !63;
        assert_eq!(h.0[slot::STREAM] & !63, start);
        assert!(h.0[slot::STREAM] & 63 >= 3);
        // Stale or wild addresses are fine to prefetch.
        h.set(slot::DIALOG, 8, 64);
        h.issue();
    }
}
