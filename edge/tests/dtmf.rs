//! RFC 4733 digits in the manifest, checked against tshark's `rtpevent` dissector on a real
//! capture: each event (one RTP timestamp of the event stream) is one entry with its digit, the
//! arrival of its first packet as start, and its final duration in ms (codec clock 8000).

mod common;
use common::{capture, record_ok, tshark};

/// `frame.time_epoch` ("1126267426.859546000") in ns.
fn epoch_ns(s: &str) -> i64 {
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    sec.parse::<i64>().expect("seconds") * 1_000_000_000 + frac[..9].parse::<i64>().expect("ns")
}

/// An event: its stream's SSRC and its RTP timestamp, as tshark prints them.
type EventKey = (String, String);
/// A digit, its start (ns) and its duration (clock units, then ms).
type Digit = (String, i64, u32);

#[test]
fn dtmf_digits_start_and_duration_match_tshark() {
    let input = capture("rtp-pcap/examples/SIP_DTMF2.pcap");
    let f = input.to_string_lossy();
    // (ssrc, rtp timestamp) -> (digit, first arrival, longest duration), in order.
    let mut want: Vec<(EventKey, Digit)> = Vec::new();
    for line in tshark(&[
        "-r",
        &f,
        "-Y",
        "rtpevent",
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "rtp.ssrc",
        "-e",
        "rtp.timestamp",
        "-e",
        "rtpevent.event_id",
        "-e",
        "rtpevent.duration",
    ])
    .lines()
    .filter(|l| !l.is_empty())
    {
        let c: Vec<&str> = line.split('\t').collect();
        let key = (c[1].to_string(), c[2].to_string());
        let event: u8 = c[3].parse().expect("event");
        let digit = match event {
            0..=9 => char::from(b'0' + event).to_string(),
            10 => "*".into(),
            11 => "#".into(),
            _ => panic!("event {event} is not a digit"),
        };
        let dur: u32 = c[4].parse().expect("duration");
        match want.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => w.2 = w.2.max(dur),
            None => want.push((key, (digit, epoch_ns(c[0]), dur))),
        }
    }
    assert_eq!(want.len(), 7, "the capture's 7 digits");

    let out = tempfile::tempdir().expect("tempdir");
    let recs = record_ok(&[&input], out.path());
    let got: Vec<Digit> = recs
        .iter()
        .flat_map(|(_, m)| m.dtmf.iter())
        .map(|d| (d.digit.clone(), d.start_ns, d.duration_ms))
        .collect();
    let want: Vec<Digit> = want
        .into_iter()
        .map(|(_, (d, t, dur))| (d, t, dur * 1000 / 8000))
        .collect();
    assert_eq!(got, want);
}
