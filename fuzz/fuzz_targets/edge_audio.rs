//! Fuzz target: arbitrary bytes as a series of RTP audio payloads for each decoder (G.711, G.722,
//! G.729 through bcg729, Opus through libopus) at both WAV rates, one decoder per codec across the
//! series as in a stream; and as an Opus TOC. Decoders reject what they cannot decode with an
//! error and never hand over more samples than the payload can hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::rtp::codec::{AudioDecoder, Codec, DecodeError, opus_samples};
use tapfleet_edge::rtp::g711::Law;

fuzz_target!(|data: &[u8]| {
    if let Some(n) = opus_samples(data) {
        assert!((120..=5760).contains(&n));
    }
    let codecs = [
        Codec::G711(Law::Ulaw),
        Codec::G722,
        Codec::G729,
        Codec::Opus,
    ];
    for rate in [8000, 16_000] {
        for codec in codecs {
            let Ok(mut d) = AudioDecoder::new(codec, rate) else {
                continue;
            };
            // The first byte of each piece is its length: several payloads through one decoder.
            let mut rest = data;
            while let Some((&len, tail)) = rest.split_first() {
                let (payload, next) = tail.split_at(usize::from(len).min(tail.len()));
                rest = next;
                let mut got = 0usize;
                let r = d.decode(payload, |s| {
                    got += s.len();
                    Ok::<_, DecodeError>(())
                });
                if let Ok(n) = r {
                    assert_eq!(n, got);
                    // At most 2 samples per byte (G.711/G.722 at 16 kHz), 160 per 2-byte G.729
                    // SID at 16 kHz, 120 ms of Opus.
                    assert!(n <= (payload.len() * 80).max(1920), "{codec:?}: {n} samples");
                }
            }
        }
    }
});
