//! The mover's write path ([`write_verified`], [`AtomicWriter`]) against real storage servers
//! started here on loopback: S3 (s3s-fs), SFTP (OpenSSH sshd with generated keys) and WebDAV
//! (nginx with the dav modules). For each: a real capture lands with the right bytes and
//! SHA-256 (read back through OpenDAL and from the server's own disk), a multi-part object (more
//! than one 8 MiB part) commits, a SHA-256 mismatch and an abort in the middle of a write leave
//! nothing at the final path (nor temporary objects), and an object is replaced whole.

mod common;

use std::path::Path;

use common::*;
use tapfleet_fleet_manager::mover::commit::{
    AtomicWriter, CommitError, CommitMode, commit_mode, write_verified,
};
use tapfleet_fleet_manager::targets::{
    KnownHosts, S3Target, Secret, SftpTarget, StorageOptions, Target, TargetConfig, WebdavTarget,
    build_operator,
};

const CHUNK: usize = 256 * 1024;

fn chunks(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

fn opts() -> StorageOptions {
    StorageOptions {
        retries: 2,
        timeout_secs: 30,
        io_timeout_secs: 20,
    }
}

/// Runs every check against `op`, whose objects the server keeps as files under `disk`.
async fn exercise(op: &Target, disk: &Path) {
    let dir = "default/pbx-01/2024/02/29/0001";
    let pcap = capture("rtp-pcap/examples/marseillaise-srtp.pcap");
    let path = format!("{dir}/call.pcap");
    let n = write_verified(op, &path, chunks(&pcap), &sha256(&pcap))
        .await
        .expect("stored");
    assert_eq!(n, pcap.len() as u64);
    let back = op.read(&path).await.expect("read back").to_vec();
    assert_eq!(sha256(&back), sha256(&pcap));
    assert_eq!(std::fs::read(disk.join(&path)).expect("on disk"), pcap);

    // Tampered bytes under the right digest: refused, nothing visible.
    let dtmf = capture("rtp-pcap/examples/SIP_DTMF2.pcap");
    let mut bad = dtmf.clone();
    bad[1000] ^= 0xff;
    let bad_path = format!("{dir}/dtmf.pcap");
    let err = write_verified(op, &bad_path, chunks(&bad), &sha256(&dtmf))
        .await
        .expect_err("mismatch refused");
    assert!(matches!(err, CommitError::Mismatch { .. }), "{err}");
    assert!(!op.exists(&bad_path).await.expect("exists"));
    assert_eq!(files_under(disk), vec![path.clone()]);

    // A multi-part object (h264.pcap three times: 11 MB, two 8 MiB parts) abandoned in the
    // middle, as when a transfer is dropped: nothing visible.
    let h264 = capture("sipp-scenarios/h264.pcap");
    let big: Vec<u8> = [&h264[..], &h264[..], &h264[..]].concat();
    let big_path = format!("{dir}/video.pcap");
    let mut w = AtomicWriter::open(op, &big_path, big.len() as u64)
        .await
        .expect("open");
    for c in chunks(&big[..9 * 1024 * 1024]) {
        w.write(c).await.expect("write");
    }
    assert_eq!(w.written(), 9 * 1024 * 1024);
    w.abort().await;
    assert!(!op.exists(&big_path).await.expect("exists"));
    assert_eq!(files_under(disk), vec![path.clone()]);
    // The same object written whole.
    write_verified(op, &big_path, chunks(&big), &sha256(&big))
        .await
        .expect("multi-part stored");
    assert_eq!(std::fs::read(disk.join(&big_path)).expect("on disk"), big);

    // Replacing an object (a re-upload after a crash): the new bytes, whole.
    write_verified(op, &path, chunks(&dtmf), &sha256(&dtmf))
        .await
        .expect("replaced");
    assert_eq!(std::fs::read(disk.join(&path)).expect("on disk"), dtmf);
    // An empty file.
    let empty = format!("{dir}/empty.wav");
    write_verified(op, &empty, [], &sha256(b""))
        .await
        .expect("empty stored");
    assert_eq!(std::fs::read(disk.join(&empty)).expect("on disk"), b"");
    assert_eq!(files_under(disk), vec![path, empty, big_path]);
}

/// A local fs target: written with O_DIRECT through the mover's own writer, read through
/// OpenDAL; the temporary folder beside the root is empty after every commit and abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_target_direct_io() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("private");
    let cfg = TargetConfig::Fs { root: root.clone() };
    let op = build_operator("private", &cfg, &opts()).expect("fs target");
    assert!(
        op.local().is_some(),
        "fs targets write through the direct-IO writer"
    );
    exercise(&op, &root).await;
    let tmp = dir.path().join(".tmp-private");
    assert_eq!(std::fs::read_dir(tmp).expect("tmp dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_target_on_s3s_fs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, bucket) = start_s3(dir.path());
    let cfg = TargetConfig::S3(S3Target {
        bucket: S3_BUCKET.into(),
        endpoint: Some(format!("http://127.0.0.1:{}", _server.port)),
        region: None,
        root: Some("/tapfleet".into()),
        access_key_id: Some(Secret::Value(S3_KEY_ID.into())),
        secret_access_key: Some(Secret::Value(S3_SECRET.into())),
        session_token: None,
        virtual_host_style: false,
        storage_class: None,
    });
    let op = build_operator("cloud", &cfg, &opts()).expect("s3 target");
    assert_eq!(commit_mode(&op), CommitMode::Direct);
    // Wrong credentials are refused by the server: the target really checks them.
    let wrong = TargetConfig::S3(S3Target {
        secret_access_key: Some(Secret::Value("wrong".into())),
        ..match &cfg {
            TargetConfig::S3(s) => s.clone(),
            _ => unreachable!(),
        }
    });
    let wrong_op = build_operator("cloud", &wrong, &opts()).expect("builds");
    assert!(wrong_op.write("x", b"x".to_vec()).await.is_err());
    exercise(&op, &bucket.join("tapfleet")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_target_on_openssh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, key, user) = start_sshd(dir.path());
    let root = dir.path().join("sftp-root");
    std::fs::create_dir_all(&root).expect("root");
    let cfg = TargetConfig::Sftp(SftpTarget {
        endpoint: format!("ssh://{user}@127.0.0.1:{}", server.port),
        root: root.to_string_lossy().into_owned(),
        user: None,
        key: Some(key),
        // The host key is new each run; `strict` would need it in ~/.ssh/known_hosts.
        known_hosts: KnownHosts::Accept,
    });
    let op = build_operator("private", &cfg, &opts()).expect("sftp target");
    assert_eq!(commit_mode(&op), CommitMode::TempRename);
    exercise(&op, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdav_target_on_nginx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, root) = start_nginx_dav(dir.path());
    let cfg = TargetConfig::Webdav(WebdavTarget {
        endpoint: format!("http://127.0.0.1:{}", server.port),
        root: Some("/recordings/".into()),
        username: None,
        password: None,
        token: None,
    });
    let op = build_operator("dav", &cfg, &opts()).expect("webdav target");
    assert_eq!(commit_mode(&op), CommitMode::TempRename);
    exercise(&op, &root.join("recordings")).await;
}
