//! Jobs between an S3 `cloud` target (s3s-fs on loopback) and an fs `private` target, in
//! process over the library: a recording of real captures copied cloud -> private, its cloud
//! copy deleted, copied back private -> cloud, moved, found by attributes; every object read
//! back with the catalog's SHA-256; delete refused under legal hold.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tapfleet_fleet_manager::catalog::{Location, recording_dir};
use tapfleet_fleet_manager::jobs::{JobError, JobKind, JobRequest, JobState, Jobs};
use tapfleet_fleet_manager::mover::commit::{sha256, write_verified};
use tapfleet_fleet_manager::mqtt::Outbox;
use tapfleet_fleet_manager::store::Store;
use tapfleet_fleet_manager::targets::{ManagerConfig, Targets};
use tapfleet_schemas::{Manifest, RecordingKind};

async fn run(jobs: &Jobs, req: JobRequest) -> tapfleet_fleet_manager::jobs::JobRecord {
    let id = jobs.submit(req).expect("job accepted").id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let j = jobs.store.job(id).expect("store").expect("job");
        if matches!(j.state, JobState::Done | JobState::Failed) {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} is stuck: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn req(kind: JobKind, rid: &str, from: Option<&str>, to: Option<&str>) -> JobRequest {
    let mut r = JobRequest::new(kind, Some(rid.to_owned()));
    r.from = from.map(str::to_owned);
    r.to = to.map(str::to_owned);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_go_from_s3_to_private_and_back_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3, _bucket) = start_s3(dir.path());
    let data = dir.path().join("data");
    let cfg: ManagerConfig = toml::from_str(&format!(
        "[targets.cloud]\ntype = \"s3\"\nbucket = \"{S3_BUCKET}\"\n\
         endpoint = \"http://127.0.0.1:{}\"\nroot = \"/tapfleet\"\n\
         access_key_id = \"{S3_KEY_ID}\"\nsecret_access_key = \"{S3_SECRET}\"\n\
         [targets.private]\ntype = \"fs\"\nroot = \"{}\"\n",
        s3.port,
        dir.path().join("private").display()
    ))
    .expect("config");
    let targets = Targets::build(&cfg, &data).expect("targets");
    std::fs::create_dir_all(&data).expect("data");
    let store = Arc::new(Store::open(&data.join("manager.redb")).expect("store"));

    // A recording of two real captures, stored in the S3 cloud the way the mover does.
    let files = [
        ("call.pcap", capture("rtp-pcap/examples/SIP_DTMF2.pcap")),
        (
            "audio.pcap",
            capture("rtp-pcap/examples/marseillaise-srtp.pcap"),
        ),
    ];
    let start_ns = 1_709_210_096_000_000_000;
    let rid = tapfleet_schemas::recording_id(start_ns, *b"\x01\x02\x03\x04\x05\x06\x07\x08");
    let mut m = Manifest::new(rid.clone(), RecordingKind::Call);
    m.start_ns = start_ns;
    m.call_id = "jobs-s3@pbx.example.com".into();
    m.files = files
        .iter()
        .map(|(n, d)| fake_edge::pcap_entry(n, d))
        .collect();
    store.upsert_manifest(&m, "default", "e1").expect("catalog");
    let cloud = targets.get("cloud").expect("cloud").clone();
    let rdir = recording_dir("default", "e1", start_ns, &rid);
    for (name, bytes) in &files {
        let path = format!("{rdir}/{name}");
        write_verified(&cloud, &path, [bytes.clone()], &sha256(bytes))
            .await
            .expect("stored in s3");
        let loc = Location {
            target: "cloud".into(),
            path,
        };
        store.add_location(&rid, name, loc).expect("location");
    }
    let json = tapfleet_schemas::manifest_json(&m);
    let mpath = format!("{rdir}/manifest.json");
    write_verified(&cloud, &mpath, [json.clone()], &sha256(&json))
        .await
        .expect("manifest");
    store
        .mark_stored(
            &rid,
            Location {
                target: "cloud".into(),
                path: mpath,
            },
        )
        .expect("stored");

    let (outbox, _rx) = Outbox::new();
    let jobs = Jobs::new(store.clone(), targets.clone(), outbox);
    let check = |target: &str| {
        let targets = targets.clone();
        let store = store.clone();
        let files = files.clone();
        let rid = rid.clone();
        let target = target.to_owned();
        async move {
            let e = store.recording(&rid).expect("store").expect("entry");
            let op = targets.get(&target).expect("target");
            for (name, bytes) in &files {
                let loc = e
                    .file(name)
                    .and_then(|f| f.locations.iter().find(|l| l.target == target))
                    .unwrap_or_else(|| panic!("{name} has a copy in {target}"));
                let got = op.read(&loc.path).await.expect("read back").to_vec();
                assert_eq!(sha256(&got), sha256(bytes), "{target}/{name}");
            }
            assert!(e.manifest_locations.iter().any(|l| l.target == target));
        }
    };

    let j = run(&jobs, req(JobKind::Copy, &rid, None, Some("private"))).await;
    assert_eq!(j.state, JobState::Done, "{j:?}");
    assert_eq!(j.request.from.as_deref(), Some("cloud"));
    assert_eq!(j.progress_bytes, j.total_bytes);
    check("private").await;
    check("cloud").await;

    // Under legal hold nothing is deleted.
    jobs.set_hold(&rid, true).expect("hold");
    let refused = jobs.submit(req(JobKind::Delete, &rid, Some("cloud"), None));
    assert!(matches!(refused, Err(JobError::Conflict(_))), "{refused:?}");
    jobs.set_hold(&rid, false).expect("hold cleared");

    // Delete the cloud copy, copy it back from private.
    let j = run(&jobs, req(JobKind::Delete, &rid, Some("cloud"), None)).await;
    assert_eq!(j.state, JobState::Done, "{j:?}");
    let e = store.recording(&rid).expect("store").expect("entry");
    assert_eq!(e.targets(), vec!["private".to_owned()]);
    assert!(
        !cloud
            .exists(&format!("{rdir}/call.pcap"))
            .await
            .expect("stat")
    );
    let j = run(
        &jobs,
        req(JobKind::Copy, &rid, Some("private"), Some("cloud")),
    )
    .await;
    assert_eq!(j.state, JobState::Done, "{j:?}");
    check("cloud").await;

    // Move: private -> cloud (already there: the copy is skipped, the source deleted).
    let j = run(
        &jobs,
        req(JobKind::Move, &rid, Some("private"), Some("cloud")),
    )
    .await;
    assert_eq!(j.state, JobState::Done, "{j:?}");
    let e = store.recording(&rid).expect("store").expect("entry");
    assert_eq!(e.targets(), vec!["cloud".to_owned()]);
    assert!(
        !dir.path()
            .join("private")
            .join(&rdir)
            .join("call.pcap")
            .exists()
    );

    // Fetch by Call-ID finds it where it is.
    let mut f = JobRequest::new(JobKind::Fetch, None);
    f.call_id = Some("jobs-s3@pbx.example.com".into());
    let j = run(&jobs, f).await;
    assert_eq!(j.state, JobState::Done, "{j:?}");
    assert_eq!(j.recording_ids, vec![rid.clone()]);
    // A copy from a target without the recording is refused up front.
    let bad = jobs.submit(req(JobKind::Copy, &rid, Some("private"), Some("cloud")));
    assert!(
        matches!(
            bad,
            Err(JobError::NotFound(_)) | Err(JobError::BadRequest(_))
        ),
        "{bad:?}"
    );
}
