//! The MOS estimate of an audio stream: a simplified ITU-T G.107 E-model with the codec's own
//! equipment impairment `Ie` and packet-loss robustness `Bpl` (ITU-T G.113 Appendix I where it
//! gives them; documented approximations otherwise). Pure arithmetic over a stream's loss and
//! jitter.
//!
//! R = 93.2 - Id - Ie,eff, with Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl) (random loss,
//! BurstR = 1) and Id from the one-way delay d = 20 ms packetization + 10 ms processing + the
//! codec's look-ahead + a jitter buffer of twice the jitter: Id = 0.024 d + 0.11 (d - 177.3) for
//! d > 177.3. MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, within 1..4.5, to 2 decimals.
//!
//! Every codec is scored on the narrowband scale (R up to 93.2, MOS up to 4.5): a wideband codec
//! (G.722, Opus) is given the impairment of a transparent narrowband one, so its score is a
//! narrowband-equivalent estimate, not a G.107.1 wideband one.

/// E-model parameters of a codec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor.
    pub ie: f64,
    /// Packet-loss robustness factor.
    pub bpl: f64,
    /// Algorithmic look-ahead added to the one-way delay, in ms.
    pub lookahead_ms: f64,
}

/// `Ie`/`Bpl` of an audio codec by its SDP encoding name (case-insensitive); `None` for a codec
/// the E-model has no values for (no MOS is then given).
///
/// | codec | Ie | Bpl | source |
/// |---|---|---|---|
/// | PCMU, PCMA (G.711) | 0 | 25.1 | G.113 I: G.711 with packet loss concealment (4.3 without) |
/// | G729, G729A, G729AB | 11 | 19 | G.113 I: G.729A + VAD |
/// | G723 | 15 | 16.1 | G.113 I: G.723.1 6.3 kbit/s + VAD |
/// | GSM-EFR, AMR | 5 | 10 | G.113 I: GSM-EFR (= AMR 12.2) |
/// | GSM (06.10 FR) | 20 | 10 | G.113 I: Ie 20; Bpl approximated as GSM-EFR's |
/// | G726-32 | 7 | 4.3 | G.113 I: Ie 7; Bpl approximated as G.711 without PLC |
/// | G722 | 0 | 4.3 | approximation on the narrowband scale (no standard PLC assumed) |
/// | L16 | 0 | 4.3 | approximation: uncompressed, no PLC |
/// | iLBC | 11 | 32 | approximation: Ie like G.729A; frame-independent, robust to loss |
/// | opus | 0 | 20 | approximation: transparent at VoIP bit rates, built-in PLC |
/// | speex | 11 | 19 | approximation: as G.729A (8 kbit/s CELP) |
pub fn impairment(encoding: &str) -> Option<CodecImpairment> {
    let e = encoding.to_ascii_uppercase();
    let (ie, bpl, lookahead_ms) = match e.as_str() {
        "PCMU" | "PCMA" => (0.0, 25.1, 0.0),
        "G729" | "G729A" | "G729AB" | "G729B" => (11.0, 19.0, 5.0),
        "G723" => (15.0, 16.1, 7.5),
        "GSM-EFR" | "AMR" => (5.0, 10.0, 0.0),
        "GSM" => (20.0, 10.0, 0.0),
        "G726-32" | "AAL2-G726-32" => (7.0, 4.3, 0.0),
        "G722" => (0.0, 4.3, 1.5),
        "L16" => (0.0, 4.3, 0.0),
        "ILBC" => (11.0, 32.0, 10.0),
        "OPUS" => (0.0, 20.0, 6.5),
        "SPEEX" => (11.0, 19.0, 10.0),
        _ => return None,
    };
    Some(CodecImpairment {
        ie,
        bpl,
        lookahead_ms,
    })
}

/// The R factor for a codec's impairment, a loss in percent and a jitter in ms.
pub fn r_factor(c: CodecImpairment, loss_pct: f64, jitter_ms: f64) -> f64 {
    let loss = if loss_pct.is_finite() {
        loss_pct.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let jitter = if jitter_ms.is_finite() {
        jitter_ms.max(0.0)
    } else {
        0.0
    };
    let d = 20.0 + 10.0 + c.lookahead_ms + 2.0 * jitter;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ie_eff = c.ie + (95.0 - c.ie) * loss / (loss + c.bpl);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (1..4.5, two decimals) of an R factor (G.107 Annex B).
pub fn mos_of_r(r: f64) -> f64 {
    let mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6;
    (mos.clamp(1.0, 4.5) * 100.0).round() / 100.0
}

/// The MOS estimate of a stream of `encoding` with this loss (percent) and jitter (ms); `None`
/// for a codec [`impairment`] has no values for.
pub fn emodel_mos(encoding: &str, loss_pct: f64, jitter_ms: f64) -> Option<f64> {
    impairment(encoding).map(|c| mos_of_r(r_factor(c, loss_pct, jitter_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mos(codec: &str, loss: f64, jitter: f64) -> f64 {
        emodel_mos(codec, loss, jitter).unwrap_or_else(|| panic!("{codec} has E-model values"))
    }

    #[test]
    fn g729_scores_below_g711_at_equal_loss() {
        for loss in [0.0, 0.5, 1.0, 2.0, 5.0, 10.0] {
            let g711 = mos("PCMU", loss, 5.0);
            let g729 = mos("G729", loss, 5.0);
            assert!(g729 < g711, "loss {loss}%: G.729 {g729} vs G.711 {g711}");
        }
        // Reference points: G.711 with PLC, no loss, 30 ms: R = 93.2 - 0.72 = 92.48 -> 4.39.
        assert_eq!(mos("PCMA", 0.0, 0.0), 4.39);
        // G.729A: Ie 11 and 5 ms look-ahead: R = 93.2 - 0.84 - 11 = 81.36 -> 4.07.
        assert_eq!(mos("g729", 0.0, 0.0), 4.07);
        // 2% loss: G.711 Ie,eff = 95 * 2 / 27.1 = 7.01 (R 85.47); G.729A 11 + 84 * 2 / 21 = 19
        // (R 73.36).
        assert_eq!(mos("PCMU", 2.0, 0.0), 4.21);
        assert_eq!(mos("G729", 2.0, 0.0), 3.75);
    }

    #[test]
    fn mos_falls_with_loss_and_jitter_for_every_codec() {
        for codec in [
            "PCMU", "G729", "G723", "AMR", "GSM", "G726-32", "G722", "L16", "iLBC", "opus", "speex",
        ] {
            let mut last = f64::INFINITY;
            for loss in [0.0, 1.0, 3.0, 10.0, 30.0] {
                let m = mos(codec, loss, 0.0);
                assert!(m < last, "{codec}: {m} at {loss}% not below {last}");
                assert!((1.0..=4.5).contains(&m));
                last = m;
            }
            assert!(mos(codec, 1.0, 80.0) < mos(codec, 1.0, 5.0), "{codec}");
        }
    }

    #[test]
    fn unknown_codecs_and_odd_inputs() {
        assert_eq!(emodel_mos("H264", 0.0, 0.0), None);
        assert_eq!(emodel_mos("", 0.0, 0.0), None);
        assert_eq!(mos("PCMU", f64::NAN, f64::INFINITY), mos("PCMU", 0.0, 0.0));
        assert_eq!(mos("PCMU", 100.0, 1e9), 1.0);
        // G.711 without PLC (Bpl 4.3) would fall faster than the value used (25.1, with PLC).
        let no_plc = CodecImpairment {
            ie: 0.0,
            bpl: 4.3,
            lookahead_ms: 0.0,
        };
        assert!(mos_of_r(r_factor(no_plc, 2.0, 0.0)) < mos("PCMU", 2.0, 0.0));
    }
}
