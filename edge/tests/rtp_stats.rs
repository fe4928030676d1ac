//! Property tests of the RFC 3550 stream statistics ([`StreamStats`]) against a simple model:
//! a generated stream (any start sequence number, so across the 16-bit wrap) with arbitrary
//! drops, local reordering and duplicates.
//! - expected = highest - lowest extended sequence received + 1, and lost = expected - received
//!   (RFC 3550 A.3: received counts duplicates, so lost may be negative);
//! - a reordered packet is never lost: lost + duplicates = the packets really missing;
//! - duplicates and reordered are exactly the model's;
//! - the extended highest sequence number keeps counting across the wrap;
//! - jitter is never negative, and zero for a perfectly paced stream (drops included).

use proptest::prelude::*;
use tapfleet_edge::rtp::StreamStats;

/// A delivery plan: which packets of `0..n` arrive, in which order, some twice.
#[derive(Debug, Clone)]
struct Plan {
    start_seq: u16,
    n: usize,
    /// Indices (into `0..n`) in arrival order.
    arrivals: Vec<usize>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        any::<u16>(),
        2usize..600,
        0u32..40,     // drop percent
        0u32..30,     // percent of adjacent swaps
        0u32..10,     // duplicate percent
        any::<u64>(), // seed for the pattern
    )
        .prop_map(|(start_seq, n, drop_pct, swap_pct, dup_pct, seed)| {
            // A small deterministic generator, so the pattern shrinks with the seed.
            let mut x = seed | 1;
            let mut roll = |pct: u32| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 100) < u64::from(pct)
            };
            let mut arrivals: Vec<usize> = (0..n).filter(|_| !roll(drop_pct)).collect();
            for i in 1..arrivals.len() {
                if roll(swap_pct) {
                    arrivals.swap(i - 1, i);
                }
            }
            let mut with_dups = Vec::with_capacity(arrivals.len() * 2);
            for (i, &a) in arrivals.iter().enumerate() {
                with_dups.push(a);
                if roll(dup_pct) {
                    // Again a little later (or right away).
                    let later = (i + 3).min(arrivals.len() - 1);
                    with_dups.push(arrivals[later.max(i)].min(a));
                }
            }
            Plan {
                start_seq,
                n,
                arrivals: with_dups,
            }
        })
}

/// What RFC 3550 says about a delivery plan, computed directly.
#[derive(Debug, PartialEq)]
struct Model {
    packets: u64,
    duplicates: u64,
    reordered: u64,
    expected: i64,
    missing: i64,
}

fn model(p: &Plan) -> Model {
    let mut seen = vec![false; p.n];
    let mut max: Option<usize> = None;
    let (mut duplicates, mut reordered) = (0, 0);
    for &a in &p.arrivals {
        if seen[a] {
            duplicates += 1;
            continue;
        }
        seen[a] = true;
        match max {
            Some(m) if a < m => reordered += 1,
            _ => max = Some(a),
        }
    }
    let got: Vec<usize> = (0..p.n).filter(|&i| seen[i]).collect();
    let (lo, hi) = (
        got.first().copied().unwrap_or(0),
        got.last().copied().unwrap_or(0),
    );
    let expected = if got.is_empty() {
        0
    } else {
        (hi - lo + 1) as i64
    };
    Model {
        packets: p.arrivals.len() as u64,
        duplicates,
        reordered,
        expected,
        missing: expected - got.len() as i64,
    }
}

/// Feeds a plan: packet i has sequence start+i, timestamp 160 i, and arrives 20 ms apart.
fn feed(p: &Plan) -> StreamStats {
    let mut s = StreamStats::new(8000);
    for (k, &i) in p.arrivals.iter().enumerate() {
        let seq = p.start_seq.wrapping_add(i as u16);
        s.update(
            seq,
            (i as u32).wrapping_mul(160),
            k as i64 * 20_000_000,
            160,
        );
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn counters_follow_rfc3550(p in plan()) {
        // The statistics track late packets within 128 sequence numbers of the highest; the
        // generated reordering stays well inside.
        let m = model(&p);
        let s = feed(&p);
        prop_assert_eq!(s.packets, m.packets);
        prop_assert_eq!(s.duplicates, m.duplicates);
        prop_assert_eq!(s.reordered, m.reordered);
        prop_assert_eq!(s.expected(), m.expected);
        // RFC 3550: lost = expected - received, duplicates included in received.
        prop_assert_eq!(s.lost(), m.expected - m.packets as i64);
        // Reordered packets are never lost; duplicates only hide loss.
        prop_assert_eq!(s.lost() + s.duplicates as i64, m.missing);
        // Extended highest sequence: the first arrival's sequence plus how far above it the
        // highest index is, whatever the wrap.
        let (Some(&first), Some(&highest)) = (p.arrivals.first(), p.arrivals.iter().max()) else {
            // Everything was dropped: nothing counted.
            prop_assert_eq!((s.packets, s.expected(), s.lost()), (0, 0, 0));
            return Ok(());
        };
        prop_assert_eq!(
            s.max_seq_ext(),
            i64::from(p.start_seq.wrapping_add(first as u16)) + (highest - first) as i64
        );
        prop_assert!(s.jitter_ms() >= 0.0 && s.max_jitter_ms() >= s.jitter_ms() - 1e-12);
    }

    #[test]
    fn no_reordering_no_duplicates_means_no_phantom_loss(start in any::<u16>(), n in 1usize..3000) {
        let p = Plan { start_seq: start, n, arrivals: (0..n).collect() };
        let s = feed(&p);
        prop_assert_eq!((s.lost(), s.duplicates, s.reordered), (0, 0, 0));
        prop_assert_eq!(s.expected(), n as i64);
    }

    #[test]
    fn jitter_is_never_negative(
        arrivals in proptest::collection::vec((any::<u16>(), any::<u32>(), 0i64..5_000_000_000), 1..300)
    ) {
        let mut s = StreamStats::new(8000);
        for (seq, ts, at) in arrivals {
            s.update(seq, ts, at, 160);
            prop_assert!(s.jitter_ms() >= 0.0 && s.jitter_ms().is_finite());
        }
    }

    #[test]
    fn perfectly_paced_streams_have_zero_jitter(
        start_seq in any::<u16>(),
        start_ts in any::<u32>(),
        clock in prop_oneof![Just(8000u32), Just(16000), Just(48000), Just(90000)],
        ptime_ms in 10i64..60,
        n in 2usize..400,
        drop_pct in 0u64..50,
    ) {
        let mut s = StreamStats::new(clock);
        let step = (i64::from(clock) * ptime_ms / 1000) as u32;
        for i in 0..n {
            // Dropped packets simply never arrive; the rest arrive exactly on time.
            if i > 0 && (i as u64 * 7919) % 100 < drop_pct {
                continue;
            }
            s.update(
                start_seq.wrapping_add(i as u16),
                start_ts.wrapping_add(step.wrapping_mul(i as u32)),
                1_700_000_000_000_000_000 + i as i64 * ptime_ms * 1_000_000,
                160,
            );
        }
        prop_assert!(s.jitter_ms() < 1e-3, "jitter {} ms", s.jitter_ms());
        prop_assert!(s.max_jitter_ms() < 1e-3);
    }
}
