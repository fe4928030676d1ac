//! G.711 (ITU-T G.711) μ-law (PCMU, RTP payload type 0) and A-law (PCMA, payload type 8)
//! encoders and decoders: the classic segment algorithm of the Sun reference `g711.c`, on 16-bit
//! linear PCM. The decoders exist so tests (and users) can check what the generator put on the
//! wire.

/// Segment end points for A-law (on the 13-bit magnitude).
const SEG_AEND: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// Segment end points for μ-law (on the biased 14-bit magnitude).
const SEG_UEND: [i16; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const QUANT_MASK: u8 = 0x0F;
const SEG_MASK: u8 = 0x70;
const SEG_SHIFT: u8 = 4;
const SIGN_BIT: u8 = 0x80;
const ULAW_BIAS: i16 = 0x84;
const ULAW_CLIP: i16 = 8159;

/// First segment whose end point is >= `val`, or 8 when above all of them.
fn segment(val: i16, table: &[i16; 8]) -> u8 {
    let mut seg = 0u8;
    for end in table {
        if val <= *end {
            return seg;
        }
        seg += 1;
    }
    seg
}

/// Encodes one 16-bit linear sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = sample >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &SEG_AEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let aval = (seg << SEG_SHIFT) | (((pcm >> shift) as u8) & QUANT_MASK);
    aval ^ mask
}

/// Decodes one A-law byte to 16-bit linear.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i16::from(a & QUANT_MASK) << 4;
    let seg = (a & SEG_MASK) >> SEG_SHIFT;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & SIGN_BIT != 0 { t } else { -t }
}

/// Encodes one 16-bit linear sample to μ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = sample >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(pcm, &SEG_UEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = (seg << 4) | (((pcm >> (seg + 1)) as u8) & QUANT_MASK);
    uval ^ mask
}

/// Decodes one μ-law byte to 16-bit linear.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mut t = (i16::from(u & QUANT_MASK) << 3) + ULAW_BIAS;
    t <<= (u & SEG_MASK) >> SEG_SHIFT;
    if u & SIGN_BIT != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (linear, μ-law, A-law) triples produced by CPython's `audioop.lin2ulaw/lin2alaw`
    /// (an independent implementation of the same reference algorithm).
    const ENCODE_REFERENCE: &[(i16, u8, u8)] = &[
        (0, 0xff, 0xd5),
        (1, 0xff, 0xd5),
        (-1, 0x7e, 0x55),
        (7, 0xfe, 0xd5),
        (-8, 0x7e, 0x55),
        (31, 0xfb, 0xd4),
        (32, 0xfb, 0xd7),
        (100, 0xf2, 0xd3),
        (-100, 0x72, 0x53),
        (255, 0xe7, 0xda),
        (256, 0xe7, 0xc5),
        (1000, 0xce, 0xfa),
        (-1000, 0x4e, 0x7a),
        (4000, 0xaf, 0x9a),
        (-4000, 0x2f, 0x1a),
        (8159, 0x9f, 0x8a),
        (-8160, 0x1f, 0x0a),
        (12345, 0x97, 0xbd),
        (-12345, 0x17, 0x3d),
        (20000, 0x8c, 0xa6),
        (32767, 0x80, 0xaa),
        (-32767, 0x00, 0x2a),
        (-32768, 0x00, 0x2a),
    ];

    /// (code, μ-law decoded, A-law decoded) from CPython's `audioop.ulaw2lin/alaw2lin`.
    const DECODE_REFERENCE: &[(u8, i16, i16)] = &[
        (0x00, -32124, -5504),
        (0x7f, 0, -848),
        (0x80, 32124, 5504),
        (0xff, 0, 848),
        (0x2a, -5372, -32256),
        (0xaa, 5372, 32256),
        (0xd5, 716, 8),
        (0x55, -716, -8),
        (0x13, -14460, -2880),
        (0x9c, 9852, 3264),
    ];

    #[test]
    fn encoders_match_reference_values() {
        for &(x, u, a) in ENCODE_REFERENCE {
            assert_eq!(linear_to_ulaw(x), u, "ulaw({x})");
            assert_eq!(linear_to_alaw(x), a, "alaw({x})");
        }
    }

    #[test]
    fn decoders_match_reference_values() {
        for &(c, u, a) in DECODE_REFERENCE {
            assert_eq!(ulaw_to_linear(c), u, "ulaw2lin({c:#x})");
            assert_eq!(alaw_to_linear(c), a, "alaw2lin({c:#x})");
        }
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "alaw {c:#x}");
            // μ-law has two zeros (0x7F = -0, 0xFF = +0); -0 decodes to 0 and re-encodes as +0.
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), want, "ulaw {c:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_over_full_range() {
        for x in i16::MIN..=i16::MAX {
            let xu = i32::from(ulaw_to_linear(linear_to_ulaw(x)));
            let xa = i32::from(alaw_to_linear(linear_to_alaw(x)));
            let x = i32::from(x);
            // Largest step is 1024 (μ-law) / 1024 (A-law) in the top segment; clip at ±32124/32256.
            assert!(
                (xu - x).abs() <= 1024 || x.abs() > 32124,
                "ulaw {x} -> {xu}"
            );
            assert!(
                (xa - x).abs() <= 1024 || x.abs() > 32256,
                "alaw {x} -> {xa}"
            );
            assert!(xu.signum() * x.signum() >= 0, "ulaw sign {x}");
        }
    }
}
