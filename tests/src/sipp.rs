//! SIPp calls for the live tests, in one place: the edge crate's `record --interface lo` test
//! (`edge/tests/sipp_live.rs`) and the service's (`tests/tests/live_service.rs`). Debian's
//! sip-tester runs a UAS and a UAC on 127.0.0.1, each call with two-way G.711 A-law RTP (pcap
//! play of the shared media captures, `captures/sipp/media`) and one RFC 4733 digit, on ports of
//! the test's own so that parallel tests' loopback traffic stays out of its capture. The
//! scenarios (`tests/data/sipp_ua{c,s}_pcma.xml`) are those of `captures/sipp/make_sipp_calls.sh`,
//! with 2.5 s of audio instead of 8. Needs root (SIPp's raw-socket pcap play) and sipp
//! (deploy/install-deps.sh test); fails loudly without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{captures, require_tool};

const UAC_XML: &str = include_str!("../data/sipp_uac_pcma.xml");
const UAS_XML: &str = include_str!("../data/sipp_uas_pcma.xml");

/// The ports of one SIPp UAS/UAC pair: SIP on `uas_port`/`uac_port`, RTP from `uas_media`/
/// `uac_media` (40 ports each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SippCalls {
    pub uas_port: u16,
    pub uac_port: u16,
    pub uas_media: u16,
    pub uac_media: u16,
}

impl SippCalls {
    /// Ports from `base`: SIP on `base` and `base + 1`, media from `base + 10` and `base + 50`.
    pub fn at(base: u16) -> Self {
        SippCalls {
            uas_port: base,
            uac_port: base + 1,
            uas_media: base + 10,
            uac_media: base + 50,
        }
    }

    /// Ports of this test process within `[from, from + 20000)`, picked by its process id.
    pub fn for_process(from: u16) -> Self {
        Self::at(from + (std::process::id() % 200) as u16 * 100)
    }

    /// A BPF filter matching these calls' SIP and RTP and nothing else.
    pub fn bpf_filter(&self) -> String {
        format!(
            "udp and (port {} or port {} or portrange {}-{} or portrange {}-{})",
            self.uas_port,
            self.uac_port,
            self.uas_media,
            self.uas_media + 39,
            self.uac_media,
            self.uac_media + 39
        )
    }

    /// Writes the scenarios into `work`, starts the UAS, places `calls` calls (all at once,
    /// within 20 s) from the UAC to it, waits for both, and panics unless every call succeeded.
    /// Returns the UAC's stdout.
    pub fn run(&self, work: &Path, calls: usize) -> String {
        require_tool("sipp");
        let media = captures().join("sipp/media");
        assert!(media.is_dir(), "{} is missing", media.display());
        let media = media.to_string_lossy();
        std::fs::create_dir_all(work).expect("SIPp work folder");
        std::fs::write(work.join("uac.xml"), UAC_XML.replace("MEDIA_DIR", &media))
            .expect("write uac.xml");
        std::fs::write(work.join("uas.xml"), UAS_XML.replace("MEDIA_DIR", &media))
            .expect("write uas.xml");
        let n = calls.to_string();
        let mut uas = Command::new("sipp")
            .current_dir(work)
            .args(["-sf", "uas.xml", "-t", "u1", "-i", "127.0.0.1", "-nostdin"])
            .args(["-p", &self.uas_port.to_string(), "-mi", "127.0.0.1"])
            .args(["-mp", &self.uas_media.to_string(), "-m", &n])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SIPp UAS");
        std::thread::sleep(Duration::from_millis(500));
        let uac = Command::new("sipp")
            .current_dir(work)
            .arg(format!("127.0.0.1:{}", self.uas_port))
            .args(["-sf", "uac.xml", "-t", "u1", "-i", "127.0.0.1", "-nostdin"])
            .args(["-p", &self.uac_port.to_string(), "-mi", "127.0.0.1"])
            .args(["-mp", &self.uac_media.to_string(), "-s", "1000"])
            .args(["-m", &n, "-l", &n, "-r", &n, "-timeout", "20s"])
            .output();
        let uac = match uac {
            Ok(o) => o,
            Err(e) => {
                let _ = uas.kill();
                let _ = uas.wait();
                panic!("run the SIPp UAC: {e}");
            }
        };
        if !uac.status.success() {
            // The UAS would wait for the calls that failed.
            let _ = uas.kill();
        }
        let uas_status = uas.wait().expect("UAS ends");
        let stdout = String::from_utf8_lossy(&uac.stdout).into_owned();
        assert!(
            uac.status.success() && uas_status.success(),
            "SIPp: every call must succeed (UAC {}, UAS {uas_status}): {stdout}",
            uac.status,
        );
        stdout
    }
}
