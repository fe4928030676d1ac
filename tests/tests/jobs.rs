//! End to end, real processes: the manager's jobs (API + `tapfleet-manager job` CLI) on
//! recordings delivered by a real edge — copy and move between fs targets (SHA-256 verified),
//! delete refused under legal hold then done, fetch by attributes with download through
//! `GET /api/v1/recordings/{id}/files/{name}`, and the `edge-local` storage policy (media stays on
//! the edge, the catalog lists `edge:<id>`, a fetch job brings it into a target).

mod common;

use std::time::Duration;

use common::*;
use tapfleet_callgen::{GenOptions, generate_to_file};
use tapfleet_tests::{sha256_file, wait_for};

fn two_targets(root: &std::path::Path) -> String {
    format!(
        "[targets.private]\ntype = \"fs\"\nroot = \"{}\"\n",
        root.join("manager/targets/private").display()
    )
}

#[test]
fn copy_move_delete_hold_and_fetch_between_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Manager::start(dir.path(), Some(&two_targets(dir.path())), None);
    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 3,
        concurrency: 3,
        duration_s: 2.0,
        seed: 21,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    let _edge = start_edge(&m, "edge", &pcap, &[]);
    let recs = wait_stored(&m, truth.calls.len(), Duration::from_secs(60));
    let ids: Vec<String> = recs.keys().cloned().collect();
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);

    // The targets and the edge's storage policy, as the API shows them (no secrets).
    let t = api_get(&m, "/api/v1/targets").expect("GET /api/v1/targets");
    let names: Vec<&str> = t["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["cloud", "private"], "{t}");
    assert!(
        t["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .all(|t| t["scheme"] == "fs"),
        "{t}"
    );
    let policies = t["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 1, "{t}");
    assert_eq!(policies[0]["target"], "cloud", "{t}");

    // copy a: cloud -> private, through the CLI (waits for the job).
    let out = cli_ok(&m, &["job", "copy", a, "--to", "private"]);
    let job: serde_json::Value = serde_json::from_str(&out).expect("job JSON");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress_bytes"], job["total_bytes"], "{job}");
    let recs = catalog(&m);
    assert_target_exact(&m, "private", &recs, 1);
    assert_target_exact(&m, "cloud", &recs, 3);

    // Legal hold: delete refused with a clear error, then allowed once cleared.
    cli_ok(&m, &["hold", "set", a]);
    let out = cli(&m, &["job", "delete", a, "--from", "cloud"]);
    assert!(!out.status.success(), "delete under hold is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("legal hold"), "{err}");
    let (status, v) = api_send(
        &m,
        "POST",
        "/api/v1/jobs",
        &serde_json::json!({"kind": "move", "recording_id": a, "to": "private", "from": "cloud"}),
    );
    assert_eq!(status, 409, "move under hold is refused: {v}");
    assert_eq!(catalog(&m)[a.as_str()]["legal_hold"], true);
    cli_ok(&m, &["hold", "clear", a]);
    cli_ok(&m, &["job", "delete", a, "--from", "cloud"]);
    let recs = catalog(&m);
    assert!(locations_in(&recs[a.as_str()], "cloud").is_empty());
    assert_target_exact(&m, "cloud", &recs, 2);
    assert_target_exact(&m, "private", &recs, 1);

    // move b: cloud -> private (the API, no wait, then poll the job).
    let (status, job) = api_send(
        &m,
        "POST",
        "/api/v1/jobs",
        &serde_json::json!({"kind": "move", "recording_id": b, "to": "private"}),
    );
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["request"]["from"], "cloud", "source resolved: {job}");
    let id = job["id"].as_u64().expect("id");
    let job = wait_for("move done", Duration::from_secs(30), || {
        let j = api_get(&m, &format!("/api/v1/jobs/{id}"))?;
        (j["state"] == "done" || j["state"] == "failed").then_some(j)
    });
    assert_eq!(job["state"], "done", "{job}");
    let recs = catalog(&m);
    assert_target_exact(&m, "cloud", &recs, 1);
    assert_target_exact(&m, "private", &recs, 2);

    // delete a everywhere: no copy left, the entry says so.
    cli_ok(&m, &["job", "delete", a]);
    let recs = catalog(&m);
    assert_eq!(recs[a.as_str()]["state"], "deleted");
    assert_target_exact(&m, "private", &recs, 1);

    // fetch by caller prefix into a folder: the files come from wherever they are.
    let caller = recs[c.as_str()]["caller"]["number"]
        .as_str()
        .expect("caller")
        .to_owned();
    let expected: Vec<&String> = recs
        .iter()
        .filter(|(_, r)| {
            r["state"] == "stored"
                && r["caller"]["number"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&caller))
        })
        .map(|(id, _)| id)
        .collect();
    assert!(expected.contains(&c));
    let out_dir = dir.path().join("fetched");
    let out = cli_ok(
        &m,
        &[
            "job",
            "fetch",
            "--caller",
            &caller,
            "--out",
            out_dir.to_str().expect("utf8"),
        ],
    );
    let job: serde_json::Value = serde_json::from_str(&out).expect("job JSON");
    assert_eq!(job["state"], "done", "{job}");
    for id in &expected {
        let rec = &recs[id.as_str()];
        for f in rec["files"].as_array().expect("files") {
            let name = f["name"].as_str().expect("name");
            assert_eq!(
                f["sha256"].as_str(),
                Some(sha256_file(&out_dir.join(id).join(name)).as_str()),
                "{id}/{name} downloaded intact"
            );
        }
        assert!(out_dir.join(id).join("manifest.json").exists());
    }
    // Bad requests are clear.
    let (status, v) = api_send(
        &m,
        "POST",
        "/api/v1/jobs",
        &serde_json::json!({"kind": "copy", "recording_id": c, "to": "nowhere"}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("nowhere"),
        "{v}"
    );
    let (status, _) = api_send(
        &m,
        "POST",
        "/api/v1/jobs",
        &serde_json::json!({"kind": "fetch", "since": "yesterday"}),
    );
    assert_eq!(status, 400);
    let jobs = api_get(&m, "/api/v1/jobs").expect("jobs");
    let jobs = jobs["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 5, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
}

#[test]
fn edge_local_policy_keeps_media_on_the_edge_until_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Manager::start(dir.path(), Some(&two_targets(dir.path())), None);
    let edge = enroll_with_config(
        &m,
        serde_json::json!({"storage": {"target": "edge-local"}, "cache": {"retention": {"mode": "delete_when_stored"}}}),
    );
    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 2,
        concurrency: 2,
        duration_s: 2.0,
        seed: 5,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate");
    let _e = start_edge(&m, "edge", &pcap, &[]);
    let recs = wait_stored(&m, truth.calls.len(), Duration::from_secs(60));
    let here = format!("edge:{edge}");
    for (id, r) in &recs {
        let locs = locations_in(r, &here);
        assert_eq!(locs.len(), 3, "{id}: every file listed on the edge: {r}");
        assert!(
            locations_in(r, "cloud").is_empty(),
            "{id}: nothing in cloud"
        );
    }
    // No media left the site.
    std::thread::sleep(Duration::from_secs(2));
    assert!(files_under(&m.target_dir("cloud")).is_empty());
    let ids: Vec<&String> = recs.keys().collect();
    // Download through the API is refused with a clear reason while only the edge has it.
    let (status, body) = api_bytes(
        &m,
        &format!("/api/v1/recordings/{}/files/call.pcap", ids[0]),
    );
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&body).contains("fetch"));

    // fetch (no target named): the edge uploads into cloud; stream it back.
    let out = cli_ok(&m, &["job", "fetch", ids[0]]);
    assert!(out.contains("\"done\""), "{out}");
    // upload now into the private target.
    cli_ok(&m, &["job", "upload", ids[1], "--to", "private"]);
    let recs = catalog(&m);
    assert_target_exact(&m, "cloud", &recs, 1);
    assert_target_exact(&m, "private", &recs, 1);
    let r0 = &recs[ids[0].as_str()];
    let (status, body) = api_bytes(
        &m,
        &format!("/api/v1/recordings/{}/files/call.pcap", ids[0]),
    );
    assert_eq!(status, 200);
    let f = r0["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["name"] == "call.pcap")
        .expect("call.pcap");
    assert_eq!(f["size"].as_u64(), Some(body.len() as u64));
    // The edge keeps its copies (edge-local is never evicted, even with delete_when_stored).
    std::thread::sleep(Duration::from_secs(2));
    for id in &ids {
        assert!(
            m.root
                .join("edge/cache/recordings")
                .join(id)
                .join("call.pcap")
                .exists(),
            "{id} still on the edge"
        );
        assert_eq!(locations_in(&recs[id.as_str()], &here).len(), 3);
    }
}
