//! Shared harness of the fleet manager's integration tests: the real storage servers the target
//! tests run on loopback (s3s-fs, sshd, nginx with WebDAV), each in a temporary directory and
//! killed on drop, and real captures with their INDEX.tsv digests. A missing server binary fails
//! the test loudly with the command that installs it (`deploy/install-test-servers.sh`). The
//! manager process and the fake edge over MQTT are in [`fake_edge`].
//!
//! Each tests/*.rs is its own crate and uses only part of this module.

#![allow(dead_code)]

pub mod fake_edge;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;
use tapfleet_schemas::Sha256;

pub const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/captures");
const START: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn sha256(data: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(data).into())
}

/// A real capture, checked against its INDEX.tsv digest.
pub fn capture(rel: &str) -> Vec<u8> {
    let p = Path::new(CAPTURES).join(rel);
    let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        sha256(&data).to_hex(),
        index_sha(rel),
        "{rel} differs from INDEX.tsv"
    );
    data
}

/// INDEX.tsv's SHA-256 (hex) of a capture.
pub fn index_sha(rel: &str) -> String {
    let index = std::fs::read_to_string(Path::new(CAPTURES).join("INDEX.tsv")).expect("INDEX.tsv");
    index
        .lines()
        .find(|l| l.starts_with(&format!("{rel}\t")))
        .and_then(|l| l.split('\t').next_back())
        .unwrap_or_else(|| panic!("{rel} not in INDEX.tsv"))
        .to_owned()
}

/// A server binary: on PATH, in ~/.cargo/bin or /usr/sbin, or a loud failure.
pub fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.push("/usr/sbin".into());
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run deploy/install-test-servers.sh (tests/run.sh does)"
            )
        })
}

/// A server process, killed on drop; its output goes to `log`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    name: &'static str,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, port: u16, log: PathBuf) -> Server {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let mut s = Server {
            child,
            port,
            log,
            name,
        };
        s.wait_listening();
        s
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + START;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} exited with {st}: {}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not listening on {}: {}",
                self.name,
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const S3_BUCKET: &str = "recordings";
pub const S3_KEY_ID: &str = "tapfleet-test";
pub const S3_SECRET: &str = "tapfleet-test-secret-0123456789";

/// s3s-fs (S3 on a directory): objects of bucket `recordings` are files under `root/recordings`.
pub fn start_s3(dir: &Path) -> (Server, PathBuf) {
    let root = dir.join("s3");
    std::fs::create_dir_all(root.join(S3_BUCKET)).expect("bucket dir");
    let port = free_port();
    let mut cmd = Command::new(tool("s3s-fs"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3_KEY_ID, "--secret-key", S3_SECRET])
        .arg(&root);
    let s = Server::spawn("s3s-fs", cmd, port, dir.join("s3s-fs.log"));
    (s, root.join(S3_BUCKET))
}

/// A non-daemon sshd on a loopback port with a generated host key, and a generated client
/// key allowed to log in as the current user. Returns (server, client key, user).
pub fn start_sshd(dir: &Path) -> (Server, PathBuf, String) {
    let keygen = |path: &Path| {
        let st = Command::new(tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen runs");
        assert!(st.success(), "ssh-keygen failed");
    };
    let host_key = dir.join("ssh_host_ed25519");
    let client_key = dir.join("client_ed25519");
    keygen(&host_key);
    keygen(&client_key);
    std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).expect("keys");
    // sshd refuses to start without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
             AuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nLogLevel INFO\n",
            host_key.display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display(),
        ),
    )
    .expect("sshd_config");
    let mut cmd = Command::new(tool("sshd"));
    cmd.args(["-D", "-e", "-f"]).arg(&cfg);
    let s = Server::spawn("sshd", cmd, port, dir.join("sshd.log"));
    let user = Command::new("id").arg("-un").output().expect("id runs");
    let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
    (s, client_key, user)
}

/// nginx with the dav and dav_ext modules serving `dir/dav` on a loopback port, as the
/// current user (no master process, no daemon).
pub fn start_nginx_dav(dir: &Path) -> (Server, PathBuf) {
    let root = dir.join("dav");
    std::fs::create_dir_all(&root).expect("dav root");
    let module = Path::new("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so");
    assert!(
        module.is_file(),
        "{} missing: run deploy/install-test-servers.sh (libnginx-mod-http-dav-ext)",
        module.display()
    );
    let port = free_port();
    let t = |n: &str| dir.join(n).display().to_string();
    let cfg = dir.join("nginx.conf");
    std::fs::write(
        &cfg,
        format!(
            "load_module {module};\nmaster_process off;\ndaemon off;\npid {pid};\n\
             error_log {err} info;\nevents {{ worker_connections 64; }}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {body};\nproxy_temp_path {proxy};\n\
             fastcgi_temp_path {fcgi};\nuwsgi_temp_path {uwsgi};\nscgi_temp_path {scgi};\n\
             server {{\nlisten 127.0.0.1:{port};\nroot {root};\nclient_max_body_size 0;\n\
             location / {{\ndav_methods PUT DELETE MKCOL COPY MOVE;\n\
             dav_ext_methods PROPFIND OPTIONS;\ncreate_full_put_path on;\n\
             dav_access user:rw group:r all:r;\n}}\n}}\n}}\n",
            module = module.display(),
            pid = t("nginx.pid"),
            err = t("nginx-error.log"),
            body = t("nginx-body"),
            proxy = t("nginx-proxy"),
            fcgi = t("nginx-fcgi"),
            uwsgi = t("nginx-uwsgi"),
            scgi = t("nginx-scgi"),
            root = root.display(),
        ),
    )
    .expect("nginx.conf");
    let mut cmd = Command::new(tool("nginx"));
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&cfg);
    let s = Server::spawn("nginx", cmd, port, dir.join("nginx.log"));
    (s, root)
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(r) = p.strip_prefix(base) {
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
