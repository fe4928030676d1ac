//! What to generate: [`GenOptions`] (calls, overlap, durations, codec, impairments, seed,
//! addresses) with defaults that give a deterministic file, and their validation.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::GenError;

/// A G.711 codec as negotiated in the SDP and carried in RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Codec {
    /// G.711 μ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// Which codec the calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecChoice {
    /// Every call PCMU.
    Pcmu,
    /// Every call PCMA.
    Pcma,
    /// Each call picks PCMU or PCMA at random (seeded).
    Mixed,
}

impl FromStr for CodecChoice {
    type Err = GenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" | "g711u" => Ok(Self::Pcmu),
            "pcma" | "alaw" | "g711a" => Ok(Self::Pcma),
            "mixed" => Ok(Self::Mixed),
            _ => Err(GenError::InvalidOption(format!(
                "codec {s:?}: expected pcmu, pcma or mixed"
            ))),
        }
    }
}

impl fmt::Display for CodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pcmu => "pcmu",
            Self::Pcma => "pcma",
            Self::Mixed => "mixed",
        })
    }
}

/// 2026-01-15T09:00:00Z: the default first call, so default output is byte-for-byte stable.
pub const DEFAULT_START_UNIX_S: u64 = 1_768_467_600;

/// Calls per address block: hosts .1 to .250 in each of 256 /24s under a /16-sized base.
pub(crate) const HOSTS_PER_NET: u32 = 250 * 256;
/// RTP ports are `rtp_port_base + 2 * k` for k below this.
pub(crate) const RTP_PORT_SLOTS: u32 = 10_000;

/// Everything that shapes a generated capture. Same options (seed included) → same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenOptions {
    /// Number of calls.
    pub calls: u32,
    /// About how many calls are active at once: call starts are spaced by
    /// (mean ring time + mean duration) / concurrency.
    pub concurrency: u32,
    /// Talk time per call in seconds (from the 200 OK to the BYE).
    pub duration_s: f64,
    /// Relative spread of durations: each call lasts `duration_s * (1 ± jitter)` (uniform), 0..1.
    pub duration_jitter: f64,
    /// Codec of every call, or mixed.
    pub codec: CodecChoice,
    /// Probability that an RTP packet is dropped before the capture point (0..1). The first and
    /// last packet of each stream are never dropped, so loss counted from sequence numbers equals
    /// the truth.
    pub loss: f64,
    /// Network jitter: each RTP packet arrives up to this many ms late (uniform); the capture
    /// stays sorted by arrival time, so packets may be reordered (except each stream's first
    /// packet, which arrives undelayed, and its last, which arrives with the full delay).
    pub jitter_ms: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Unix time (seconds) of the first INVITE.
    pub start_unix_s: u64,
    /// Mean time from INVITE to 200 OK in ms (each call: ±50%, at least 150 ms).
    pub ring_ms: u32,
    /// Base of the callers' addresses: call k uses base + (k/250)*256 + k%250 + 1.
    pub caller_net: Ipv4Addr,
    /// Base of the callees' addresses (same layout).
    pub callee_net: Ipv4Addr,
    /// SIP port of every user agent.
    pub sip_port: u16,
    /// First RTP port; ports are even, below `rtp_port_base + 20000`.
    pub rtp_port_base: u16,
    /// Nanosecond pcap timestamps (magic 0xa1b23c4d) instead of microseconds.
    pub nanosecond_timestamps: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            calls: 5,
            concurrency: 2,
            duration_s: 10.0,
            duration_jitter: 0.0,
            codec: CodecChoice::Pcmu,
            loss: 0.0,
            jitter_ms: 0.0,
            seed: 1,
            start_unix_s: DEFAULT_START_UNIX_S,
            ring_ms: 1_000,
            caller_net: Ipv4Addr::new(10, 1, 0, 0),
            callee_net: Ipv4Addr::new(10, 2, 0, 0),
            sip_port: 5060,
            rtp_port_base: 16_384,
            nanosecond_timestamps: false,
        }
    }
}

fn bad(msg: String) -> GenError {
    GenError::InvalidOption(msg)
}

impl GenOptions {
    /// Checks ranges so generation cannot overflow a timestamp, a port or a pcap field.
    pub fn validate(&self) -> Result<(), GenError> {
        if self.concurrency == 0 {
            return Err(bad("concurrency must be at least 1".into()));
        }
        if !self.duration_s.is_finite() || self.duration_s < 0.06 || self.duration_s > 86_400.0 {
            return Err(bad(format!(
                "duration {} s: must be between 0.06 and 86400",
                self.duration_s
            )));
        }
        if !self.duration_jitter.is_finite() || !(0.0..1.0).contains(&self.duration_jitter) {
            return Err(bad(format!(
                "duration jitter {}: must be in [0, 1)",
                self.duration_jitter
            )));
        }
        if !self.loss.is_finite() || !(0.0..1.0).contains(&self.loss) {
            return Err(bad(format!("loss {}: must be in [0, 1)", self.loss)));
        }
        if !self.jitter_ms.is_finite() || !(0.0..=10_000.0).contains(&self.jitter_ms) {
            return Err(bad(format!(
                "jitter {} ms: must be in [0, 10000]",
                self.jitter_ms
            )));
        }
        if self.ring_ms > 600_000 {
            return Err(bad(format!("ring {} ms: at most 600000", self.ring_ms)));
        }
        if u32::from(self.rtp_port_base) + 2 * RTP_PORT_SLOTS > 65_535 || self.rtp_port_base < 1024
        {
            return Err(bad(format!(
                "rtp port base {}: must be in 1024..={}",
                self.rtp_port_base,
                65_535 - 2 * RTP_PORT_SLOTS
            )));
        }
        if self.sip_port == 0 {
            return Err(bad("sip port must not be 0".into()));
        }
        if self.caller_net == self.callee_net {
            return Err(bad("caller and callee address bases must differ".into()));
        }
        // The last call must end before pcap's u32 seconds run out.
        let span = self.span_estimate_s();
        if self.start_unix_s as f64 + span >= f64::from(u32::MAX) {
            return Err(bad(format!(
                "start {} + about {span:.0} s of calls overflows pcap timestamps",
                self.start_unix_s
            )));
        }
        Ok(())
    }

    /// Mean lifetime of a call (ring + talk) in ns.
    pub(crate) fn mean_lifetime_ns(&self) -> u64 {
        u64::from(self.ring_ms) * 1_000_000 + (self.duration_s * 1e9) as u64
    }

    /// Nanoseconds between consecutive call starts.
    pub(crate) fn spacing_ns(&self) -> u64 {
        self.mean_lifetime_ns() / u64::from(self.concurrency.max(1))
    }

    /// Upper bound of the capture's length in seconds.
    fn span_estimate_s(&self) -> f64 {
        let per_call = (self.ring_ms as f64 * 1.5 + 1.0) / 1e3
            + self.duration_s * (1.0 + self.duration_jitter)
            + self.jitter_ms / 1e3
            + 1.0;
        self.spacing_ns() as f64 / 1e9 * f64::from(self.calls) + per_call
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_refused() {
        assert!(GenOptions::default().validate().is_ok());
        let cases = [
            GenOptions {
                concurrency: 0,
                ..Default::default()
            },
            GenOptions {
                loss: 1.0,
                ..Default::default()
            },
            GenOptions {
                duration_s: f64::NAN,
                ..Default::default()
            },
            GenOptions {
                jitter_ms: -1.0,
                ..Default::default()
            },
            GenOptions {
                rtp_port_base: 60_000,
                ..Default::default()
            },
            GenOptions {
                start_unix_s: u64::from(u32::MAX),
                ..Default::default()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(GenError::InvalidOption(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn codec_choice_parses() {
        assert_eq!("PCMU".parse::<CodecChoice>().ok(), Some(CodecChoice::Pcmu));
        assert_eq!("alaw".parse::<CodecChoice>().ok(), Some(CodecChoice::Pcma));
        assert_eq!(
            "mixed".parse::<CodecChoice>().ok(),
            Some(CodecChoice::Mixed)
        );
        assert!("opus".parse::<CodecChoice>().is_err());
    }
}
