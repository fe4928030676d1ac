//! G.722 decoder (ITU-T G.722, sub-band ADPCM, 64 kbit/s mode): each octet carries a 6-bit
//! lower-band code and a 2-bit higher-band code; the two bands are decoded by their ADPCM blocks
//! (INVQAL/INVQBL, LOGSCL/SCALEL, INVQAH, LOGSCH/SCALEH and the shared block 4 predictor) and
//! recombined by the receive QMF into two 16 kHz samples per octet. Pure integer arithmetic as the
//! recommendation specifies, no allocation; state is a few hundred bytes per stream.
//!
//! RTP note (RFC 3551): G.722's RTP clock is 8000 Hz although its audio is sampled at 16 kHz, so
//! one RTP timestamp tick is two output samples.

/// Output sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// INVQBL: 6-bit lower-band inverse quantiser (64 kbit/s mode).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// INVQAL: 4-bit lower-band inverse quantiser (used for prediction).
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// INVQAH: 2-bit higher-band inverse quantiser.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// LOGSCL: code magnitude (4 bits) -> index into `WL`.
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// LOGSCL: log scale factor multipliers.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// LOGSCH: code -> index into `WH`.
const RH2: [usize; 4] = [2, 1, 2, 1];
const WH: [i32; 3] = [0, -214, 798];
/// SCALEL/SCALEH: inverse log table.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Receive QMF coefficients (24 taps, symmetric: the 12 distinct values).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

#[inline]
fn sat16(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

/// The ADPCM state of one sub-band.
#[derive(Debug, Clone, Default)]
struct Band {
    /// Predictor output (signal estimate).
    s: i32,
    sp: i32,
    sz: i32,
    /// Reconstructed signal, delayed.
    r: [i32; 3],
    /// Pole coefficients and their updates.
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    /// Quantised difference signal, delayed.
    d: [i32; 7],
    /// Zero coefficients and their updates.
    b: [i32; 7],
    bp: [i32; 7],
    sg: [i32; 7],
    /// Log scale factor.
    nb: i32,
    /// Scale factor.
    det: i32,
}

impl Band {
    /// Block 4: reconstruction, pole and zero predictor adaptation, prediction.
    fn block4(&mut self, d: i32) {
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);

        // UPPOL2
        for i in 0..3 {
            self.sg[i] = self.p[i] >> 15;
        }
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = if self.sg[0] == self.sg[1] { -wd1 } else { wd1 }.min(32767);
        let mut wd3 = if self.sg[0] == self.sg[2] { 128 } else { -128 };
        wd3 += wd2 >> 7;
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);

        // UPPOL1
        self.sg[0] = self.p[0] >> 15;
        self.sg[1] = self.p[1] >> 15;
        let wd1 = if self.sg[0] == self.sg[1] { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let lim = sat16(15360 - self.ap[2]);
        self.ap[1] = sat16(wd1 + wd2).clamp(-lim, lim);

        // UPZERO
        let wd1 = if d == 0 { 0 } else { 128 };
        self.sg[0] = d >> 15;
        for i in 1..7 {
            self.sg[i] = self.d[i] >> 15;
            let wd2 = if self.sg[i] == self.sg[0] { wd1 } else { -wd1 };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = sat16(wd2 + wd3);
        }

        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }

        // FILTEP
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);

        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);

        // PREDIC
        self.s = sat16(self.sp + self.sz);
    }
}

/// Scale factor from a log scale factor (SCALEL with `shift` 8, SCALEH with 10).
#[inline]
fn scale(nb: i32, shift: i32) -> i32 {
    let wd1 = ((nb >> 6) & 31) as usize;
    let wd2 = shift - (nb >> 11);
    let v = ILB[wd1];
    let wd3 = if wd2 < 0 { v << -wd2 } else { v >> wd2 };
    wd3 << 2
}

/// A G.722 64 kbit/s decoder for one stream.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    low: Band,
    high: Band,
    /// Receive QMF delay line.
    x: [i32; 24],
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A decoder in the reset state of the recommendation.
    pub fn new() -> Self {
        G722Decoder {
            low: Band {
                det: 32,
                ..Band::default()
            },
            high: Band {
                det: 8,
                ..Band::default()
            },
            x: [0; 24],
        }
    }

    /// Decodes octets into 16 kHz samples (two per octet) until `input` or `out` runs out; returns
    /// the number of samples written (always even).
    pub fn decode(&mut self, input: &[u8], out: &mut [i16]) -> usize {
        let mut n = 0;
        for (&code, pair) in input.iter().zip(out.chunks_exact_mut(2)) {
            let (a, b) = self.decode_octet(code);
            pair[0] = a;
            pair[1] = b;
            n += 2;
        }
        n
    }

    fn decode_octet(&mut self, code: u8) -> (i16, i16) {
        let ilow = usize::from(code & 0x3f);
        let ihigh = usize::from(code >> 6);

        // Lower band: INVQBL, RECONS, LIMIT.
        let l = &mut self.low;
        let wd2 = (l.det * QM6[ilow]) >> 15;
        let rlow = (l.s + wd2).clamp(-16384, 16383);
        // INVQAL (4-bit code for the predictor).
        let i4 = ilow >> 2;
        let dlow = (l.det * QM4[i4]) >> 15;
        // LOGSCL, SCALEL.
        l.nb = (((l.nb * 127) >> 7) + WL[RL42[i4]]).clamp(0, 18432);
        l.det = scale(l.nb, 8);
        l.block4(dlow);

        // Higher band: INVQAH, RECONS, LIMIT, LOGSCH, SCALEH.
        let h = &mut self.high;
        let dhigh = (h.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + h.s).clamp(-16384, 16383);
        h.nb = (((h.nb * 127) >> 7) + WH[RH2[ihigh]]).clamp(0, 22528);
        h.det = scale(h.nb, 10);
        h.block4(dhigh);

        // Receive QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = rlow + rhigh;
        self.x[23] = rlow - rhigh;
        let mut xout1 = 0i32;
        let mut xout2 = 0i32;
        for i in 0..12 {
            xout2 += self.x[2 * i] * QMF[i];
            xout1 += self.x[2 * i + 1] * QMF[11 - i];
        }
        (sat16(xout1 >> 11) as i16, sat16(xout2 >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_samples_per_octet_and_bounded_by_output() {
        let mut d = G722Decoder::new();
        let mut out = [0i16; 7];
        assert_eq!(d.decode(&[0xff; 10], &mut out), 6);
        assert_eq!(d.decode(&[], &mut out), 0);
    }

    /// Any octet sequence decodes without overflow (the arithmetic stays within the ranges the
    /// recommendation's LIMIT blocks guarantee).
    #[test]
    fn arbitrary_input_never_overflows() {
        let mut d = G722Decoder::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut input = [0u8; 4096];
        let mut out = [0i16; 8192];
        for _ in 0..64 {
            for b in input.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            assert_eq!(d.decode(&input, &mut out), 8192);
        }
    }
}
