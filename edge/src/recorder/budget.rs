//! The write-buffer pool: bytes a call's writers may add to their minimal buffers, shared by the
//! whole process, so that a few thousand calls write in large pieces (fewer, cheaper `write`
//! calls: the kernel's cost per call and per page falls with the write's size) while ten
//! thousand calls still fit in 64 KiB each.
//!
//! A writer asks for its extra bytes once, when it is created ([`Grant::take`]); it gets all of
//! them or none (then it works with its minimal buffer), and gives them back when dropped. The
//! pool holds [`POOL_BYTES`]: about 1,000 calls get large buffers, the calls beyond get the small
//! ones, so memory stays within the per-call bound plus the pool.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Extra buffer bytes all writers of the process hold together at most.
pub const POOL_BYTES: usize = 48 << 20;

/// Bytes of the pool granted now.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Extra buffer bytes granted to one writer (possibly none), returned to the pool when dropped.
#[derive(Debug)]
pub struct Grant(usize);

impl Grant {
    /// `bytes` from the pool, or nothing when fewer are free.
    pub fn take(bytes: usize) -> Grant {
        let got = USED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(bytes).filter(|&n| n <= POOL_BYTES)
        });
        Grant(if got.is_ok() { bytes } else { 0 })
    }

    /// Bytes granted (0 or all that were asked for).
    pub fn bytes(&self) -> usize {
        self.0
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.0 > 0 {
            USED.fetch_sub(self.0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_all_or_nothing_and_returns_on_drop() {
        let big = Grant::take(POOL_BYTES + 1);
        assert_eq!(big.bytes(), 0);
        let a = Grant::take(1024);
        assert_eq!(a.bytes(), 1024);
        drop(a);
        drop(big);
    }
}
