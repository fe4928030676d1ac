//! Live recording of real SIP calls: SIPp (Debian's sip-tester) places calls with two-way G.711
//! RTP (pcap play of the shared media captures) and an RFC 4733 digit on the loopback interface
//! while `tapfleet-edge record --interface lo` records them and tcpdump captures the same
//! traffic. Every call must be recorded, with both parties, its SIP and every RTP packet, in
//! agreement with tshark's reading of tcpdump's capture, and the kernel must have dropped nothing.
//! Needs root (live capture, SIPp's raw-socket pcap play), sipp, tcpdump and tshark (installed by
//! deploy/install-deps.sh test); fails loudly without them. The SIPp calls are the harness's
//! (`tapfleet_tests::sipp`), shared with the service's live test.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::tshark;
use tapfleet_schemas::{CallDirection, EndReason, Manifest, StreamDirection};
use tapfleet_tests::sipp::SippCalls;

const CALLS: usize = 3;

fn need(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is required for this test: deploy/install-deps.sh test");
}

/// A background process whose stderr lines arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `what`.
    fn wait_for(&mut self, what: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let hit = l.contains(what);
                self.seen.push(l);
                if hit {
                    return;
                }
            }
        }
        let _ = self.child.kill();
        panic!("no {what:?} on stderr within {within:?}: {:?}", self.seen);
    }

    /// SIGTERM, then waits; returns (success, stdout, all stderr lines).
    fn stop(mut self) -> (bool, String, Vec<String>) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let out = self.child.wait_with_output().expect("wait");
        self.seen.extend(self.lines.try_iter());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            self.seen,
        )
    }
}

/// (src, dst, ssrc) -> packets, from `tshark -q -z rtp,streams`.
fn tshark_rtp_streams(file: &Path) -> HashMap<(String, String, u32), u64> {
    common::tshark_rtp_streams(file, false)
        .into_iter()
        .map(|(k, (packets, _))| (k, packets))
        .collect()
}

#[test]
fn sipp_calls_recorded_live_on_loopback_match_tcpdump() {
    let started = Instant::now();
    let tcpdump = need("tcpdump");
    need("tshark");
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path();
    // Ports of our own, so parallel tests' loopback traffic stays out of both captures.
    let sipp = SippCalls::for_process(30_000);
    let filter = sipp.bpf_filter();
    let tcpdump_file = work.join("tcpdump.pcap");
    let out = work.join("recordings");

    let mut dump = Proc::start(
        Command::new(&tcpdump)
            .args(["-i", "lo", "-s", "0", "-U", "-w"])
            .arg(&tcpdump_file)
            .arg(&filter),
    );
    let mut edge = Proc::start(
        Command::new(env!("CARGO_BIN_EXE_tapfleet-edge"))
            .args(["record", "--interface", "lo", "--filter", &filter])
            .args(["--local-net", "127.0.0.1", "--out"])
            .arg(&out),
    );
    dump.wait_for("listening on", Duration::from_secs(10));
    edge.wait_for("capturing on lo", Duration::from_secs(10));

    sipp.run(&work.join("sipp"), CALLS);
    // Past the BYE's closing grace (2 s), so every call has ended by BYE.
    std::thread::sleep(Duration::from_millis(3000));
    let (dump_ok, _, dump_err) = dump.stop();
    let (edge_ok, summary, edge_err) = edge.stop();
    assert!(dump_ok, "tcpdump failed: {dump_err:?}");
    assert!(
        edge_ok,
        "tapfleet-edge record failed: {edge_err:?}\n{summary}"
    );
    println!("{summary}{}", edge_err.join("\n"));

    // The kernel dropped nothing and the edge received what tcpdump did.
    let lo_line = edge_err
        .iter()
        .find(|l| l.starts_with("lo: "))
        .unwrap_or_else(|| panic!("no interface counters in {edge_err:?}"));
    assert!(
        lo_line.contains(" 0 dropped by the kernel, 0 by the interface"),
        "{lo_line}"
    );
    let tcpdump_frames = tshark(&[
        "-r",
        &tcpdump_file.to_string_lossy(),
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .lines()
    .count() as u64;

    // Every call, both parties, ended by BYE, complete.
    let mut manifests: Vec<Manifest> = std::fs::read_dir(&out)
        .expect("recordings folder")
        .map(|e| {
            let p = e.expect("entry").path().join("manifest.json");
            serde_json::from_slice(&std::fs::read(&p).expect("manifest.json"))
                .expect("manifest parses")
        })
        .collect();
    manifests.sort_by_key(|m| m.start_ns);
    assert_eq!(manifests.len(), CALLS, "one recording per call");
    let rtp = tshark_rtp_streams(&tcpdump_file);
    let mut rtp_seen = 0;
    let mut packets = 0;
    for m in &manifests {
        assert_eq!(m.end_reason, EndReason::Bye, "{}", m.call_id);
        assert_eq!(m.sip_status, Some(200));
        assert!(m.complete, "{}: {:?}", m.recording_id, m.incomplete);
        assert_eq!(
            (m.caller.number.as_str(), m.callee.number.as_str()),
            ("sipp", "1000")
        );
        assert!(m.caller.tag.is_some() && m.callee.tag.is_some());
        assert_eq!(m.direction, CallDirection::Internal, "127.0.0.1 to itself");
        for dir in [
            StreamDirection::CallerToCallee,
            StreamDirection::CalleeToCaller,
        ] {
            assert!(
                m.streams
                    .iter()
                    .any(|s| s.direction == dir && s.codec == "PCMA" && s.packets > 0 && s.decoded),
                "{}: no decoded PCMA stream {dir:?}",
                m.call_id
            );
        }
        assert_eq!(m.dtmf.len(), 1, "the RFC 4733 digit");
        assert!(m.files.iter().any(|f| f.name == "audio.wav"));
        // Every stream's packets as tshark counts them in tcpdump's capture.
        for s in &m.streams {
            let want = rtp.get(&(s.src.clone(), s.dst.clone(), s.ssrc)).copied();
            assert_eq!(
                want,
                Some(s.packets),
                "{} stream {:#x} {} -> {}",
                m.call_id,
                s.ssrc,
                s.src,
                s.dst
            );
            rtp_seen += 1;
        }
        // The call's SIP messages as tshark finds them.
        let sip = tshark(&[
            "-r",
            &tcpdump_file.to_string_lossy(),
            "-Y",
            &format!("sip.Call-ID == \"{}\"", m.call_id),
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .lines()
        .count() as u64;
        let media: u64 = m.streams.iter().map(|s| s.packets).sum();
        assert!(sip >= 6, "INVITE 180 200 ACK BYE 200 at least");
        assert_eq!(
            m.packets,
            sip + media,
            "{}: call.pcap = its SIP + its RTP",
            m.call_id
        );
        packets += m.packets;
    }
    assert_eq!(
        rtp_seen,
        rtp.len(),
        "every RTP stream tshark sees is in a recording"
    );
    assert_eq!(
        packets, tcpdump_frames,
        "every packet tcpdump captured is in a recording"
    );
    let per_call: BTreeMap<&str, u64> = manifests
        .iter()
        .map(|m| (m.call_id.as_str(), m.packets))
        .collect();
    println!(
        "{CALLS} calls, {packets} packets ({per_call:?}) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
