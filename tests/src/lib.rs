//! Harness for the end-to-end tests: finds the workspace's built binaries, starts them as real
//! processes on loopback (free ports, temporary data folders, logs kept for failures), and waits
//! for conditions with timeouts.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, as `tests/run.sh` does);
//! a missing binary fails the test loudly.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

pub mod sipp;
pub mod webdriver;

/// The folder holding the workspace's binaries (`target/debug` when testing in debug).
pub fn bin_dir() -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary; panics with a clear message when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// The shared captures beside the repository (`../shared/captures`).
pub fn captures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures");
    assert!(
        p.exists(),
        "{} is missing: the shared captures must sit beside the repository",
        p.display()
    );
    p
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process that is killed when dropped; its stdout+stderr go to a log file.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, logging into `log_dir/<name>.log`.
    pub fn start(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit; returns whether it exited.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}",
                self.name,
                self.log.display(),
                tail(&self.output(), 80)
            );
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes (then panics with `what`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The admin API token the tests start the manager with (`TAPFLEET_API_TOKEN`); every API
/// call of the harness sends it as `Authorization: Bearer`.
pub const API_TOKEN: &str = "tapfleet-e2e-admin-token-0123456789";

/// `Authorization` header value for [`API_TOKEN`].
/// `tapfleet-manager serve` on a data folder and a loopback HTTP port, with the tests' API
/// token; callers add the broker and other flags.
pub fn manager_serve(data: &Path, http_port: u16) -> Command {
    let mut cmd = Command::new(bin("tapfleet-manager"));
    cmd.args(["serve", "--data"])
        .arg(data)
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .env("TAPFLEET_API_TOKEN", API_TOKEN);
    cmd
}

pub fn bearer() -> String {
    format!("Bearer {API_TOKEN}")
}

/// GET a URL (with the test API token) and parse the JSON body; `None` on any error (polling).
pub fn get_json(url: &str) -> Option<serde_json::Value> {
    let mut resp = ureq::get(url)
        .header("Authorization", bearer())
        .call()
        .ok()?;
    resp.body_mut().read_json().ok()
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Runs a command to completion and returns its stdout; panics with its output on failure.
pub fn run_ok(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics unless `tool` is on PATH: tests never skip silently.
pub fn require_tool(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is required by this test: install it (tests/run.sh does)"
    );
}

/// A pcap file (`dir/empty.pcap`) with a header and no packet: an edge that records nothing.
pub fn empty_pcap(dir: &Path) -> PathBuf {
    let empty = dir.join("empty.pcap");
    let mut header = Vec::new();
    for word in [
        0xa1b2_c3d4u32.to_le_bytes(),
        [2, 0, 4, 0],
        [0; 4],
        [0; 4],
        65535u32.to_le_bytes(),
        1u32.to_le_bytes(),
    ] {
        header.extend_from_slice(&word);
    }
    std::fs::write(&empty, header).expect("write empty.pcap");
    empty
}

/// Debian's mosquitto on `127.0.0.1:port`, anonymous (the tests that use it check delivery or
/// message handling through another broker, not its auth), started as process `name` with its
/// config and log in `dir`; returns once it accepts TCP.
pub fn mosquitto(dir: &Path, port: u16, name: &str) -> Proc {
    require_tool("mosquitto");
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n"
        ),
    )
    .expect("mosquitto.conf");
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(&conf);
    let p = Proc::start(name, cmd, dir);
    wait_for("mosquitto listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    p
}
