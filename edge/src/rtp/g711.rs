//! G.711 decoders (ITU-T G.711 µ-law and A-law to 16-bit linear PCM), table-based: both tables
//! are computed at compile time.

const fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = (((u & 0x0f) as i32) << 3) + 0x84;
    let t = t << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut out = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    out
}

static ULAW: [i16; 256] = table(false);
static ALAW: [i16; 256] = table(true);

/// A G.711 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Ulaw,
    Alaw,
}

impl Law {
    /// The variant for an SDP encoding name (`PCMU`, `PCMA`, any case).
    pub fn from_encoding(name: &str) -> Option<Law> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Law::Ulaw)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Law::Alaw)
        } else {
            None
        }
    }

    /// Decodes one sample.
    #[inline]
    pub fn decode(self, b: u8) -> i16 {
        self.table()[usize::from(b)]
    }

    /// The decoding table: entry `b` is the linear sample for code `b` (for bulk decoding
    /// without a per-sample match).
    #[inline]
    pub fn table(self) -> &'static [i16; 256] {
        match self {
            Law::Ulaw => &ULAW,
            Law::Alaw => &ALAW,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Silence codes and extremes from G.711.
        assert_eq!(Law::Ulaw.decode(0xff), 0);
        assert_eq!(Law::Ulaw.decode(0x7f), 0);
        assert_eq!(Law::Ulaw.decode(0x00), -32124);
        assert_eq!(Law::Ulaw.decode(0x80), 32124);
        assert_eq!(Law::Alaw.decode(0xd5), 8);
        assert_eq!(Law::Alaw.decode(0x55), -8);
        assert_eq!(Law::Alaw.decode(0xaa), 32256);
        assert_eq!(Law::Alaw.decode(0x2a), -32256);
    }
}
