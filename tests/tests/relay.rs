//! End to end, real processes: storing recordings into an edge's local storage through the
//! manager's relay (downloads manager -> edge). A manager and two edges on one machine (each in
//! its own UTS namespace, so each enrolls under its own host name): edge A records with the
//! `edge-local` policy; a copy job stores A's recording into edge B (the manager uploads it from
//! A into its staging, then relays it): B's `held/` folder has the files with the catalog's
//! SHA-256, the catalog lists `edge:B`, the staging copy is gone; a job started while B is
//! offline (killed with SIGKILL) waits with a clear status, survives a manager restart (the
//! persisted `relays` record and the resumed job) and completes once B is back; a move from
//! `edge:A` to `edge:B` leaves only B's copy; a copy from `edge:B` into a target brings it back.
//! Then the storage policy `edge:B`. Then an edge whose cache cannot hold the files: its
//! refusal ("do not fit the cache") shows in the job, which completes once the edge has room.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tapfleet_callgen::{GenOptions, generate_to_file};
use tapfleet_tests::{sha256_file, wait_for};

fn pcap(dir: &Path, calls: u32, seed: u64) -> (std::path::PathBuf, usize) {
    pcap_of(dir, calls, seed, 2.0)
}

fn pcap_of(dir: &Path, calls: u32, seed: u64, duration_s: f64) -> (std::path::PathBuf, usize) {
    std::fs::create_dir_all(dir).expect("dir");
    let p = dir.join("calls.pcap");
    let opts = GenOptions {
        calls,
        concurrency: calls,
        duration_s,
        seed,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &p, None).expect("generate");
    (p, truth.calls.len())
}

/// Every file of `rec` (manifest.json included) is in `dir` with the catalog's SHA-256 (and
/// manifest.json is the recording edge's own bytes).
fn assert_held(rec: &serde_json::Value, dir: &Path, origin: &Path) {
    let files = rec["files"].as_array().expect("files");
    assert!(!files.is_empty());
    for f in files {
        let name = f["name"].as_str().expect("name");
        let path = dir.join(name);
        assert!(path.exists(), "{} held", path.display());
        assert_eq!(
            sha256_file(&path),
            f["sha256"].as_str().expect("sha256"),
            "{name}: SHA-256 as cataloged"
        );
    }
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).expect("held manifest.json"),
        std::fs::read(origin.join("manifest.json")).expect("origin manifest.json"),
        "manifest.json is the recording edge's bytes"
    );
}

fn online(m: &Manager, edge: &str) -> Option<bool> {
    let v = api_get(m, "/api/v1/edges")?;
    v["edges"]
        .as_array()?
        .iter()
        .find(|e| e["edge_id"] == edge)?["online"]
        .as_bool()
}

fn job(m: &Manager, id: u64) -> serde_json::Value {
    api_get(m, &format!("/api/v1/jobs/{id}")).expect("job")
}

/// Job `id` once its status mentions `needle` (within 30 s).
fn status_says(m: &Manager, id: u64, needle: &str, what: &str) -> serde_json::Value {
    wait_for(what, Duration::from_secs(30), || {
        let j = job(m, id);
        j["status"]
            .as_str()
            .is_some_and(|s| s.contains(needle))
            .then_some(j)
    })
}

/// Job `id` once it is neither queued nor running (within `secs`).
fn finished(m: &Manager, id: u64, what: &str, secs: u64) -> serde_json::Value {
    wait_for(what, Duration::from_secs(secs), || {
        let j = job(m, id);
        (j["state"] != "running" && j["state"] != "queued").then_some(j)
    })
}

#[test]
fn a_job_stores_an_edge_local_recording_into_another_edge_even_if_it_is_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut m = Manager::start(root, None, None);
    let (a_data, b_data) = (root.join("edge-a"), root.join("edge-b"));
    let a = enroll_at_with_config(
        &m,
        &a_data,
        Some("edge-a"),
        serde_json::json!({"storage": {"target": "edge-local"}}),
    );
    let b = enroll_at_with_config(&m, &b_data, Some("edge-b"), serde_json::json!({}));
    let (a_pcap, n) = pcap(&root.join("pcap-a"), 3, 41);
    let empty = empty_pcap(root);
    let _edge_a = start_edge_at(&m, "edge-a", &a_data, Some("edge-a"), &a_pcap, &[]);
    let mut edge_b = start_edge_at(&m, "edge-b", &b_data, Some("edge-b"), &empty, &[]);
    let recs = wait_stored(&m, n, Duration::from_secs(60));
    let ids: Vec<String> = recs.keys().cloned().collect();
    let here_b = format!("edge:{b}");
    wait_for("edge B online", Duration::from_secs(20), || {
        online(&m, &b).filter(|o| *o)
    });

    // 1. B online: the CLI's copy job waits until B holds the recording.
    let t0 = std::time::Instant::now();
    let out = cli_ok(&m, &["job", "copy", &ids[0], "--to", &here_b]);
    assert!(out.contains("\"done\""), "{out}");
    eprintln!(
        "relay of one recording A -> manager -> B: {:?}",
        t0.elapsed()
    );
    let recs = catalog(&m);
    let r0 = &recs[ids[0].as_str()];
    let files = r0["files"].as_array().expect("files").len();
    assert_eq!(
        locations_in(r0, &here_b).len(),
        files + 1,
        "every file and manifest.json cataloged at {here_b}: {r0}"
    );
    assert_eq!(
        locations_in(r0, &format!("edge:{a}")).len(),
        files + 1,
        "A keeps its copy"
    );
    assert!(
        locations_in(r0, "_relay").is_empty(),
        "no staging copy left: {r0}"
    );
    assert!(
        files_under(&m.data.join("relay")).is_empty(),
        "staging folder empty"
    );
    assert!(
        files_under(&m.target_dir("cloud")).is_empty(),
        "nothing in cloud"
    );
    let held0 = b_data.join("cache/held").join(&ids[0]);
    assert_held(r0, &held0, &a_data.join("cache/recordings").join(&ids[0]));
    assert!(
        files_under(&b_data.join("cache/held/.incoming")).is_empty(),
        "no partial download left"
    );

    // 2. A move from A's local storage into B's: B holds it, A's copy is gone, the catalog
    //    lists only edge:B.
    let here_a = format!("edge:{a}");
    let a_rec2 = a_data.join("cache/recordings").join(&ids[2]);
    let origin2 = root.join("origin-2");
    std::fs::create_dir_all(&origin2).expect("origin dir");
    std::fs::copy(a_rec2.join("manifest.json"), origin2.join("manifest.json")).expect("manifest");
    let out = cli_ok(
        &m,
        &["job", "move", &ids[2], "--from", &here_a, "--to", &here_b],
    );
    assert!(out.contains("\"done\""), "{out}");
    let recs = catalog(&m);
    let r2 = &recs[ids[2].as_str()];
    assert_held(r2, &b_data.join("cache/held").join(&ids[2]), &origin2);
    let targets: std::collections::BTreeSet<&str> = r2["files"]
        .as_array()
        .expect("files")
        .iter()
        .flat_map(|f| f["locations"].as_array().into_iter().flatten())
        .chain(r2["manifest_locations"].as_array().into_iter().flatten())
        .filter_map(|l| l["target"].as_str())
        .collect();
    assert_eq!(
        targets,
        std::collections::BTreeSet::from([here_b.as_str()]),
        "only B's copy is cataloged: {r2}"
    );
    assert_eq!(locations_in(r2, &here_b).len(), files + 1, "{r2}");
    assert!(
        files_under(&a_rec2).is_empty(),
        "A's copy is deleted: {:?}",
        files_under(&a_rec2)
    );
    assert!(files_under(&m.data.join("relay")).is_empty());

    // 3. B offline (SIGKILL): the job waits with a clear status, the manager restarts meanwhile,
    //    and the relay completes once B is back.
    edge_b.kill();
    wait_for("edge B offline", Duration::from_secs(30), || {
        online(&m, &b).filter(|o| !*o)
    });
    let (status, v) = api_send(
        &m,
        "POST",
        "/api/v1/jobs",
        &serde_json::json!({"kind": "copy", "recording_id": ids[1], "to": here_b}),
    );
    assert!((200..300).contains(&status), "{status} {v}");
    let id = v["id"].as_u64().expect("job id");
    let waiting = status_says(&m, id, "offline", "the job says B is offline");
    assert_eq!(waiting["state"], "running", "{waiting}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(job(&m, id)["state"], "running", "still waiting for B");
    m.proc.kill();
    m.restart();
    let j = job(&m, id);
    assert!(
        j["state"] == "running" || j["state"] == "queued",
        "the job survives the restart: {j}"
    );
    let _edge_b = start_edge_at(&m, "edge-b-2", &b_data, Some("edge-b"), &empty, &[]);
    let t1 = std::time::Instant::now();
    let done = finished(&m, id, "the job done once B is back", 60);
    assert_eq!(done["state"], "done", "{done}");
    eprintln!("relay completed {:?} after edge B restarted", t1.elapsed());
    let recs = catalog(&m);
    let r1 = &recs[ids[1].as_str()];
    assert_eq!(locations_in(r1, &here_b).len(), files + 1, "{r1}");
    assert_held(
        r1,
        &b_data.join("cache/held").join(&ids[1]),
        &a_data.join("cache/recordings").join(&ids[1]),
    );
    assert!(files_under(&m.data.join("relay")).is_empty());

    // 4. Fetch back from B's local storage (not A's) into a target.
    let out = cli_ok(
        &m,
        &["job", "copy", &ids[0], "--from", &here_b, "--to", "cloud"],
    );
    assert!(out.contains("\"done\""), "{out}");
    let recs = catalog(&m);
    assert_target_exact(&m, "cloud", &recs, 1);

    // 5. A recording A already uploaded once (into the relay's staging: A counts it stored) is
    // copied from A into a target: A sends its files again.
    let out = cli_ok(
        &m,
        &["job", "copy", &ids[1], "--from", &here_a, "--to", "cloud"],
    );
    assert!(out.contains("\"done\""), "{out}");
    let recs = catalog(&m);
    assert_target_exact(&m, "cloud", &recs, 2);
}

#[test]
fn storage_policy_edge_relays_each_recording_into_that_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let m = Manager::start(root, None, None);
    let (a_data, b_data) = (root.join("edge-a"), root.join("edge-b"));
    let b = enroll_at_with_config(&m, &b_data, Some("edge-b"), serde_json::json!({}));
    let here_b = format!("edge:{b}");
    enroll_at_with_config(
        &m,
        &a_data,
        Some("edge-a"),
        serde_json::json!({"storage": {"target": here_b}, "cache": {"retention": {"mode": "delete_when_stored"}}}),
    );
    let (a_pcap, n) = pcap(&root.join("pcap-a"), 2, 43);
    let empty = empty_pcap(root);
    let _edge_b = start_edge_at(&m, "edge-b", &b_data, Some("edge-b"), &empty, &[]);
    let _edge_a = start_edge_at(&m, "edge-a", &a_data, Some("edge-a"), &a_pcap, &[]);
    let recs = wait_for(
        "every recording cataloged in B's local storage, staging dropped",
        Duration::from_secs(60),
        || {
            let recs = catalog(&m);
            (recs.len() >= n
                && recs.values().all(|r| {
                    let files = r["files"].as_array().map_or(0, Vec::len);
                    files > 0
                        && locations_in(r, &here_b).len() == files + 1
                        && locations_in(r, "_relay").is_empty()
                }))
            .then_some(recs)
        },
    );
    for (id, r) in &recs {
        assert!(
            locations_in(r, "_relay").is_empty(),
            "{id}: staging dropped: {r}"
        );
        assert!(
            locations_in(r, "cloud").is_empty(),
            "{id}: nothing in cloud"
        );
        let held = b_data.join("cache/held").join(id);
        for f in r["files"].as_array().expect("files") {
            let name = f["name"].as_str().expect("name");
            assert_eq!(
                sha256_file(&held.join(name)),
                f["sha256"].as_str().expect("sha"),
                "{id}/{name}"
            );
        }
    }
    wait_for("staging emptied", Duration::from_secs(10), || {
        files_under(&m.data.join("relay")).is_empty().then_some(())
    });
}

#[test]
fn an_edge_refuses_a_download_its_cache_cannot_hold_until_it_has_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let m = Manager::start(root, None, None);
    let (a_data, b_data) = (root.join("edge-a"), root.join("edge-b"));
    let a = enroll_at_with_config(
        &m,
        &a_data,
        Some("edge-a"),
        serde_json::json!({"storage": {"target": "edge-local"}}),
    );
    // B's cache holds 1 MiB (the least a config may say); each file of a 90 s call is larger.
    let b = enroll_at_with_config(
        &m,
        &b_data,
        Some("edge-b"),
        serde_json::json!({"cache": {"capacity_bytes": 1u64 << 20}}),
    );
    let (a_pcap, n) = pcap_of(&root.join("pcap-a"), 1, 47, 90.0);
    let empty = empty_pcap(root);
    let _edge_a = start_edge_at(&m, "edge-a", &a_data, Some("edge-a"), &a_pcap, &[]);
    let _edge_b = start_edge_at(&m, "edge-b", &b_data, Some("edge-b"), &empty, &[]);
    let recs = wait_stored(&m, n, Duration::from_secs(60));
    let id = recs.keys().next().expect("a recording").clone();
    let sizes: Vec<u64> = recs[id.as_str()]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["size"].as_u64())
        .collect();
    assert!(sizes.iter().all(|s| *s > 1 << 20), "{sizes:?}");
    let here_b = format!("edge:{b}");
    wait_for("edge B online", Duration::from_secs(20), || {
        online(&m, &b).filter(|o| *o)
    });
    let (status, v) = api_send(
        &m,
        "POST",
        "/api/v1/jobs",
        &serde_json::json!({"kind": "copy", "recording_id": id, "from": format!("edge:{a}"), "to": here_b}),
    );
    assert!((200..300).contains(&status), "{status} {v}");
    let job_id = v["id"].as_u64().expect("job id");
    // The edge's refusal reaches the job's status; nothing is written into B's cache.
    let refused = status_says(
        &m,
        job_id,
        "do not fit the cache",
        "the job says B has no room",
    );
    assert_eq!(refused["state"], "running", "{refused}");
    assert!(
        files_under(&b_data.join("cache/held")).is_empty(),
        "nothing held or partial in B: {:?}",
        files_under(&b_data.join("cache/held"))
    );
    // Room made (a new config): the relay offers again and completes.
    let (status, v) = api_send(
        &m,
        "PUT",
        &format!("/api/v1/edges/{b}/config"),
        &serde_json::json!({"cache": {"capacity_bytes": 1u64 << 30}}),
    );
    assert_eq!(status, 200, "{v}");
    let done = finished(&m, job_id, "the job done once B has room", 30);
    assert_eq!(done["state"], "done", "{done}");
    let r = &catalog(&m)[id.as_str()];
    assert_held(
        r,
        &b_data.join("cache/held").join(&id),
        &a_data.join("cache/recordings").join(&id),
    );
}
