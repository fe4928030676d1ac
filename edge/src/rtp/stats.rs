//! Per-stream RTP statistics as RFC 3550 defines them (appendix A.1 and A.8): extended highest
//! sequence number, expected and lost packets, duplicates, reordering, interarrival jitter in the
//! codec's clock, and the largest gap between arrivals.

/// Running statistics of one RTP stream (one SSRC on one 5-tuple).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub reordered: u64,
    base_ext: i64,
    max_ext: i64,
    /// Bit i set: sequence `max_ext - i` was received.
    window: u128,
    clock_rate: u32,
    /// Jitter estimate in clock units.
    jitter: f64,
    max_jitter: f64,
    last_transit: Option<f64>,
    pub first_ns: i64,
    pub last_ns: i64,
    pub max_delta_ns: i64,
}

impl StreamStats {
    /// Empty statistics for a stream with this clock rate (Hz).
    pub fn new(clock_rate: u32) -> Self {
        StreamStats {
            packets: 0,
            bytes: 0,
            duplicates: 0,
            reordered: 0,
            base_ext: 0,
            max_ext: 0,
            window: 0,
            clock_rate: clock_rate.max(1),
            jitter: 0.0,
            max_jitter: 0.0,
            last_transit: None,
            first_ns: 0,
            last_ns: 0,
            max_delta_ns: 0,
        }
    }

    /// Changes the clock rate (a stream whose codec was recognised after its first packets);
    /// the jitter estimate starts again.
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.clock_rate = clock_rate.max(1);
        self.jitter = 0.0;
        self.max_jitter = 0.0;
        self.last_transit = None;
    }

    /// Accounts one packet: its sequence number, RTP timestamp, arrival time and payload size.
    pub fn update(&mut self, seq: u16, rtp_ts: u32, arrival_ns: i64, payload_len: usize) {
        self.bytes += payload_len as u64;
        if self.packets == 0 {
            self.packets = 1;
            self.base_ext = i64::from(seq);
            self.max_ext = i64::from(seq);
            self.window = 1;
            self.first_ns = arrival_ns;
            self.last_ns = arrival_ns;
            self.last_transit = Some(self.transit(rtp_ts, arrival_ns));
            return;
        }
        self.packets += 1;
        let delta_ns = arrival_ns - self.last_ns;
        if delta_ns > self.max_delta_ns {
            self.max_delta_ns = delta_ns;
        }
        self.last_ns = self.last_ns.max(arrival_ns);

        let delta = i64::from(seq.wrapping_sub(self.max_ext as u16) as i16);
        let ext = self.max_ext + delta;
        if delta > 0 {
            self.window = if delta >= 128 {
                0
            } else {
                self.window << delta
            };
            self.window |= 1;
            self.max_ext = ext;
        } else {
            let back = -delta;
            if back < 128 && self.window & (1u128 << back) != 0 {
                self.duplicates += 1;
            } else {
                self.reordered += 1;
                if back < 128 {
                    self.window |= 1u128 << back;
                }
                if ext < self.base_ext {
                    self.base_ext = ext;
                }
            }
        }

        // Interarrival jitter (RFC 3550 A.8).
        let transit = self.transit(rtp_ts, arrival_ns);
        if let Some(prev) = self.last_transit {
            let mut d = transit - prev;
            // RTP timestamps wrap at 2^32.
            let wrap = 4_294_967_296.0;
            if d > wrap / 2.0 {
                d -= wrap;
            } else if d < -wrap / 2.0 {
                d += wrap;
            }
            self.jitter += (d.abs() - self.jitter) / 16.0;
            if self.jitter > self.max_jitter {
                self.max_jitter = self.jitter;
            }
        }
        self.last_transit = Some(transit);
    }

    fn transit(&self, rtp_ts: u32, arrival_ns: i64) -> f64 {
        arrival_ns as f64 * f64::from(self.clock_rate) / 1e9 - f64::from(rtp_ts)
    }

    /// Packets expected from the sequence numbers seen.
    pub fn expected(&self) -> i64 {
        if self.packets == 0 {
            0
        } else {
            self.max_ext - self.base_ext + 1
        }
    }

    /// Cumulative loss (negative with duplicates), as RFC 3550 counts it.
    pub fn lost(&self) -> i64 {
        self.expected() - self.packets as i64
    }

    /// The extended highest sequence number received.
    pub fn max_seq_ext(&self) -> i64 {
        self.max_ext
    }

    /// Current interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// Largest jitter seen, in milliseconds.
    pub fn max_jitter_ms(&self) -> f64 {
        self.max_jitter * 1000.0 / f64::from(self.clock_rate)
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_duplicates_reorder_and_wrap() {
        let mut s = StreamStats::new(8000);
        let mut t = 0i64;
        for seq in [65533u16, 65534, 65535, 0, 2, 1, 1, 4] {
            s.update(seq, 0, t, 160);
            t += 20_000_000;
        }
        assert_eq!(s.packets, 8);
        assert_eq!(s.expected(), 8); // 65533..=4 (extended)
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.lost(), 0); // 3 lost, 1 duplicate ... = 8 - 8
    }

    #[test]
    fn perfect_stream_has_no_jitter() {
        let mut s = StreamStats::new(8000);
        for i in 0..100u32 {
            s.update(i as u16, i * 160, i64::from(i) * 20_000_000, 160);
        }
        assert_eq!(s.lost(), 0);
        assert!(s.jitter_ms() < 1e-6);
        assert_eq!(s.max_delta_ns, 20_000_000);
    }
}
