//! The dashboard and the HTTP API against real processes: a manager (with a second fs target,
//! `archive`) and an edge that enrolls and replays a generated capture.
//!
//! API: auth failures (no token, wrong token, viewer writing, session without CSRF token), bad
//! input answered with a clear 4xx, pagination that visits every recording once, Range requests
//! (206 + Content-Range, 416).
//!
//! Browser (Debian's chromium driven through chromedriver): log in, see the edge online, search by
//! number, open a recording and see the audio element load, the waveform drawn and the SIP flow
//! (INVITE ... BYE), edit the edge's overrides (a bad value is refused inline naming the field, a
//! good one is published and the edge reports its version), the fleet config page, run a move job
//! to completion, stop the edge and see its `offline` alert on the alerts page and the fleet
//! overview; no console errors. Screenshots of each page go to `target/artifacts/dashboard/`.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tapfleet_callgen::{CodecChoice, GenOptions, generate_to_file};
use tapfleet_tests::webdriver::Browser;
use tapfleet_tests::{Proc, bearer, bin, bin_dir, free_port, get_json, wait_for};

const ADMIN_PASSWORD: &str = "dashboard-test-password";
const T: Duration = Duration::from_secs(30);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// (status, headers' Content-Range, body) of a request.
fn call(req: ureq::RequestBuilder<ureq::typestate::WithoutBody>) -> (u16, Option<String>, Vec<u8>) {
    let mut r = req.call().expect("http answers");
    let cr = r
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.body_mut().read_to_vec().expect("body");
    (r.status().as_u16(), cr, body)
}

fn error_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn dashboard_and_api_against_a_running_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = bin_dir()
        .parent()
        .expect("target dir")
        .join("artifacts/dashboard");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");

    // ---- the fleet: manager with a second target, an edge replaying 3 calls
    let archive = dir.path().join("archive");
    let cfg = dir.path().join("manager.toml");
    std::fs::write(
        &cfg,
        format!(
            "[targets.archive]\ntype = \"fs\"\nroot = \"{}\"\n",
            archive.display()
        ),
    )
    .expect("config");
    let (http_port, mqtt_port) = (free_port(), free_port());
    let mut cmd = tapfleet_tests::manager_serve(&dir.path().join("manager"), http_port);
    cmd.args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")])
        .arg("--config")
        .arg(&cfg)
        .env("TAPFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "info");
    let _manager = Proc::start("manager", cmd, dir.path());
    let http = format!("http://127.0.0.1:{http_port}");
    wait_for("manager /healthz", T, || {
        ureq::get(&format!("{http}/healthz")).call().ok()
    });

    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 3,
        concurrency: 3,
        duration_s: 2.0,
        codec: CodecChoice::Mixed,
        seed: 11,
        ..GenOptions::default()
    };
    let truth = generate_to_file(&opts, &pcap, None).expect("generate calls");
    let mut cmd = Command::new(bin("tapfleet-edge"));
    cmd.args(["run", "--data"])
        .arg(dir.path().join("edge"))
        .args(["--broker", &format!("mqtt://127.0.0.1:{mqtt_port}")])
        .arg("--token-file")
        .arg(dir.path().join("manager/enroll.token"))
        .arg("--replay")
        .arg(&pcap)
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--log", "info"]);
    let mut edge = Proc::start("edge", cmd, dir.path());
    let n = truth.calls.len();
    let recs = wait_for("every recording stored", Duration::from_secs(60), || {
        let v = get_json(&format!("{http}/api/v1/recordings"))?;
        let recs = v["recordings"].as_array()?.clone();
        (recs.iter().filter(|r| r["state"] == "stored").count() >= n).then_some(recs)
    });

    // ---- API: auth failures
    let a = agent();
    let api = |p: &str| format!("{http}{p}");
    let (s, _, b) = call(a.get(api("/api/v1/recordings")));
    assert_eq!(s, 401, "no credentials");
    assert!(error_of(&b).contains("authentication"), "clear message");
    let (s, _, _) = call(
        a.get(api("/api/v1/edges"))
            .header("Authorization", "Bearer not-a-token"),
    );
    assert_eq!(s, 401, "unknown token");
    let (s, _, _) = call(a.get(api("/healthz")));
    assert_eq!(s, 200, "healthz stays open");
    let (s, _, _) = call(a.get(api("/api/v1/openapi.json")));
    assert_eq!(s, 200, "the OpenAPI document is open");
    // A viewer token reads but cannot write.
    let mut r = a
        .post(api("/api/v1/auth/tokens"))
        .header("Authorization", bearer())
        .send_json(json!({"name": "ci-viewer", "role": "viewer"}))
        .expect("create token");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.body_mut().read_json().expect("json");
    let viewer = format!("Bearer {}", v["token"].as_str().expect("token shown once"));
    let (s, _, _) = call(a.get(api("/api/v1/edges")).header("Authorization", &viewer));
    assert_eq!(s, 200, "viewer reads");
    let r = a
        .post(api("/api/v1/jobs"))
        .header("Authorization", &viewer)
        .send_json(json!({"kind": "delete", "recording_id": recs[0]["recording_id"]}))
        .expect("post");
    assert_eq!(r.status().as_u16(), 403, "viewer cannot write");
    // A session must repeat its CSRF token on writes.
    let mut r = a
        .post(api("/api/v1/auth/login"))
        .send_json(json!({"username": "admin", "password": "wrong-password!"}))
        .expect("login");
    assert_eq!(r.status().as_u16(), 401, "wrong password");
    let _ = r.body_mut().read_to_vec();
    let r = a
        .post(api("/api/v1/auth/login"))
        .send_json(json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .expect("login");
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("session cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().expect("cookie pair").to_owned();
    let r = a
        .post(api("/api/v1/auth/tokens"))
        .header("Cookie", &session)
        .send_json(json!({"name": "x"}))
        .expect("post");
    assert_eq!(r.status().as_u16(), 403, "session write without CSRF token");

    // ---- API: bad input is a clear 400
    for (q, needle) in [
        ("limit=0", "limit"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
        ("cursor=zzz", "cursor"),
    ] {
        let (s, _, b) = call(
            a.get(api(&format!("/api/v1/recordings?{q}")))
                .header("Authorization", bearer()),
        );
        assert_eq!(s, 400, "{q}");
        assert!(error_of(&b).contains(needle), "{q}: {}", error_of(&b));
    }

    // ---- API: pagination visits every recording once, newest first
    let mut seen = Vec::new();
    let mut url = api("/api/v1/recordings?limit=1");
    loop {
        let (s, _, b) = call(a.get(&url).header("Authorization", bearer()));
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&b).expect("json");
        let page = v["recordings"].as_array().expect("array");
        assert!(page.len() <= 1);
        seen.extend(page.iter().map(|r| {
            (
                r["start_ns"].as_i64().expect("start"),
                r["recording_id"].as_str().expect("id").to_owned(),
            )
        }));
        match v["next_cursor"].as_str() {
            Some(c) => url = api(&format!("/api/v1/recordings?limit=1&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(seen.len(), recs.len(), "every recording once");
    let ids: BTreeSet<&String> = seen.iter().map(|(_, i)| i).collect();
    assert_eq!(ids.len(), seen.len(), "no duplicates");
    assert!(
        seen.windows(2).all(|w| w[0].0 >= w[1].0),
        "newest first: {seen:?}"
    );

    // ---- API: Range requests on a stored file
    let rec = &recs[0];
    let rid = rec["recording_id"].as_str().expect("id");
    let wav = rec["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["name"] == "audio.wav")
        .expect("audio.wav");
    let size = wav["size"].as_u64().expect("size");
    let file_url = api(&format!("/api/v1/recordings/{rid}/files/audio.wav"));
    let (s, _, full) = call(a.get(&file_url).header("Authorization", bearer()));
    assert_eq!((s, full.len() as u64), (200, size));
    let (s, cr, part) = call(
        a.get(&file_url)
            .header("Authorization", bearer())
            .header("Range", "bytes=4-11"),
    );
    assert_eq!(s, 206);
    assert_eq!(cr.as_deref(), Some(format!("bytes 4-11/{size}").as_str()));
    assert_eq!(part, full[4..12], "the bytes of the range");
    assert_eq!(&part[4..], b"WAVE", "RIFF size, then WAVE");
    let (s, cr, part) = call(
        a.get(&file_url)
            .header("Authorization", bearer())
            .header("Range", "bytes=-16"),
    );
    assert_eq!((s, part.as_slice()), (206, &full[full.len() - 16..]));
    assert!(cr.is_some());
    let (s, cr, _) = call(
        a.get(&file_url)
            .header("Authorization", bearer())
            .header("Range", format!("bytes={size}-")),
    );
    assert_eq!(s, 416);
    assert_eq!(cr.as_deref(), Some(format!("bytes */{size}").as_str()));

    // ---- API: the SIP flow of a recording, read from its call.pcap in the target
    let (s, _, b) = call(
        a.get(api(&format!("/api/v1/recordings/{rid}/sipflow")))
            .header("Authorization", bearer()),
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let flow: Value = serde_json::from_slice(&b).expect("json");
    let labels: Vec<&str> = flow["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["label"].as_str())
        .collect();
    assert_eq!(labels.first(), Some(&"INVITE"), "{labels:?}");
    assert!(labels.contains(&"BYE"), "{labels:?}");
    assert_eq!(
        flow["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{flow}"
    );
    assert!(
        flow["messages"][0]["cseq"]
            .as_str()
            .is_some_and(|c| c.ends_with(" INVITE"))
    );
    let (s, _, _) = call(
        a.get(api("/api/v1/recordings/no-such-recording/sipflow"))
            .header("Authorization", bearer()),
    );
    assert_eq!(s, 404);

    // ---- the dashboard in a real browser
    let b = Browser::start(dir.path());
    let shot = |name: &str| b.screenshot(&artifacts.join(format!("{name}.png")));
    b.goto(&format!("{http}/#/login"));
    let user = b.wait_find("#username", T);
    b.type_text(&user, "admin");
    let pw = b.wait_find("#password", T);
    b.type_text(&pw, ADMIN_PASSWORD);
    shot("01-login");
    b.click(&b.wait_find("#loginbtn", T));

    // Fleet: the edge is online (live over SSE).
    b.wait_js(
        "the edge shown online",
        T,
        "return document.querySelector('#edges tr[data-edge] .pill.online') !== null",
    );
    b.wait_js(
        "live update",
        T,
        "return document.getElementById('live')?.textContent.startsWith('Live') || null",
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#edges canvas[data-spark]').length",
            json!([])
        ),
        json!(1),
        "a 24-hour chart per edge"
    );
    shot("02-fleet");
    // Add an edge: a one-use token and the one-line install command.
    b.click(&b.wait_find("#addedge", T));
    let install = b.wait_js(
        "install command",
        T,
        "const p=document.querySelector('#enroll pre'); return p ? p.textContent : (document.querySelector('#enroll .err')?.textContent || null)",
    );
    let install = install.as_str().unwrap_or_default();
    assert!(
        install.contains("tapfleet-edge run --broker mqtt://") && install.contains("--token-file"),
        "install command: {install}"
    );
    shot("02b-add-edge");
    let edge_id = b
        .js(
            "return document.querySelector('#edges tr[data-edge]').dataset.edge",
            json!([]),
        )
        .as_str()
        .expect("edge id")
        .to_owned();

    // Search by number: the caller of one recording.
    let number = rec["caller"]["number"].as_str().expect("number");
    b.goto(&format!("{http}/#/recordings"));
    let f = b.wait_find("#f_number", T);
    b.type_text(&f, number);
    b.click(&b.wait_find("#searchbtn", T));
    let found = b.wait_js(
        "search results",
        T,
        "const a=[...document.querySelectorAll('#results a')]; return a.length ? a.map(x=>x.getAttribute('href')) : null",
    );
    let hrefs: Vec<&str> = found
        .as_array()
        .expect("links")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        hrefs.iter().any(|h| h.ends_with(rid)),
        "{rid} found by its caller number {number}: {hrefs:?}"
    );
    shot("03-recordings");

    // The recording page: the audio loads and the waveform is drawn.
    b.goto(&format!("{http}/#/recordings/{rid}"));
    let dur = b.wait_js(
        "audio element loaded",
        T,
        "const p=document.getElementById('player'); return p && p.readyState >= 1 && p.duration > 0 ? p.duration : null",
    );
    assert!(dur.as_f64().is_some_and(|d| d > 0.5), "duration {dur}");
    b.wait_js(
        "waveform drawn",
        T,
        "return document.getElementById('wave')?.dataset.drawn === '1' || null",
    );
    let ladder = b.wait_js(
        "SIP flow drawn",
        T,
        "const g=[...document.querySelectorAll('#sipflow g.msg')]; return g.length ? g.map(x=>x.dataset.label) : (document.querySelector('#sipflow p')?.textContent || null)",
    );
    let shown: Vec<&str> = ladder
        .as_array()
        .unwrap_or_else(|| panic!("SIP flow: {ladder}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(shown, labels, "the ladder shows every message in order");
    shot("04-recording");
    b.js(
        "document.getElementById('sipflow').scrollIntoView()",
        json!([]),
    );
    shot("04b-sipflow");

    // Edge page: the overrides editor refuses a bad value inline, naming the field; a good one
    // is published and the edge reports the new version.
    b.goto(&format!("{http}/#/edges/{edge_id}"));
    let desired = b.wait_js(
        "config editor and effective config",
        T,
        "const t=document.getElementById('cfgtext'), e=document.getElementById('effective'); return t && t.value && e && e.textContent.includes('cache') ? document.getElementById('desired').textContent : null",
    );
    let set_text = |v: &str| {
        b.js(
            "document.getElementById('cfgtext').value = arguments[0];",
            json!([v]),
        )
    };
    let severe = |entries: Vec<Value>| -> Vec<Value> {
        entries
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    };
    let errors = severe(b.console());
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    set_text("{\"cache\": {\"high_water_percent\": 150}}");
    b.click(&b.wait_find("#cfgsave", T));
    let inline = b.wait_js(
        "validation error shown inline",
        T,
        "const l=document.querySelector('#cfgerrors li'); return l ? [l.dataset.path, l.textContent, document.getElementById('cfgtext').getAttribute('aria-invalid')] : null",
    );
    assert_eq!(inline[0], "cache.high_water_percent", "{inline}");
    assert!(
        inline[1].as_str().is_some_and(|t| t.contains("150")),
        "the message says what is wrong: {inline}"
    );
    assert_eq!(inline[2], "true");
    // The browser logs the refusal's 400 as a network error; nothing else may be logged.
    let errors: Vec<Value> = severe(b.console())
        .into_iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            !(e["source"] == "network"
                && m.contains("/api/v1/config/validate?edge=")
                && m.contains("400"))
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    shot("05a-edge-invalid");
    set_text("{\"telemetry_interval_secs\": 7}");
    b.click(&b.wait_find("#cfgsave", T));
    let published = b.wait_js(
        "config published",
        T,
        "const m=document.getElementById('cfgmsg').textContent; const x=/version (\\d+)/.exec(m); return x ? x[1] : (m.startsWith('Validating') ? null : m || null)",
    );
    let version = published
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("config not published: {published} (was {desired})"));
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#cfgerrors li').length",
            json!([])
        ),
        json!(0),
        "the errors are gone"
    );
    b.wait_js(
        "the edge reports the new config version",
        T,
        &format!(
            "return document.getElementById('reported').textContent === 'v{version}' && document.getElementById('cfgsync').textContent.includes('in sync') || null"
        ),
    );
    b.wait_js(
        "the history lists the version",
        T,
        &format!(
            "const r=document.querySelector('#cfghistory tr[data-version=\"{version}\"]'); return r && r.textContent.includes('admin') || null"
        ),
    );
    let overrides = get_json(&api(&format!("/api/v1/edges/{edge_id}/config"))).expect("overrides");
    assert_eq!(
        overrides["config"],
        json!({"telemetry_interval_secs": 7}),
        "only the field set is pinned"
    );
    shot("05-edge");

    // The fleet config page: defaults and groups editors.
    b.goto(&format!("{http}/#/config"));
    b.wait_js(
        "fleet defaults editor",
        T,
        "return document.getElementById('deftext')?.value && document.getElementById('groups')?.rows.length ? true : null",
    );
    // A group with the edge as member: its field is pinned by the edge's override, so no
    // edge's effective config changes.
    let name = b.wait_find("#grpname", T);
    b.type_text(&name, "site-a");
    let members = b.wait_find("#grpmembers", T);
    b.type_text(&members, &edge_id);
    b.js(
        "document.getElementById('grptext').value = '{\"telemetry_interval_secs\": 9}'",
        json!([]),
    );
    b.click(&b.wait_find("#grpsave", T));
    let saved = b.wait_js(
        "group saved",
        T,
        // The message comes first and the groups table is redrawn after it: wait for both.
        "const m=document.getElementById('grpmsg').textContent; const r=document.querySelector('#groups tr[data-group=\"site-a\"]')?.textContent || ''; return m && !m.startsWith('Validating') && (r || !m.startsWith('Saved')) ? [m, r] : null",
    );
    assert_eq!(saved[0], "Saved: no edge's config changed.", "{saved}");
    assert!(
        saved[1].as_str().is_some_and(|t| t.contains(&edge_id)),
        "{saved}"
    );
    shot("05b-config");

    // A move job from the recording page, followed on the jobs page to completion.
    b.goto(&format!("{http}/#/recordings/{rid}"));
    let to = b.wait_find("#jobto", T);
    b.type_text(&to, "archive");
    b.click(&b.wait_find("#jobform button[data-kind=move]", T));
    b.wait_js(
        "job accepted",
        T,
        "return document.querySelector('#jobmsg a') !== null || (document.getElementById('jobmsg').textContent || null)",
    );
    let msg = b.js(
        "return document.getElementById('jobmsg').textContent",
        json!([]),
    );
    assert!(
        msg.as_str().is_some_and(|m| m.starts_with("Job #")),
        "job: {msg}"
    );
    b.goto(&format!("{http}/#/jobs"));
    let state = b.wait_js(
        "move job finished",
        Duration::from_secs(45),
        "const s=document.querySelector('#jobs tr[data-job] .jobstate'); const t=s && s.textContent; return t && (t.startsWith('done') || t.startsWith('failed')) ? t : null",
    );
    shot("06-jobs");
    assert!(
        state.as_str().is_some_and(|s| s.starts_with("done")),
        "move job: {state}"
    );
    let moved = get_json(&api(&format!("/api/v1/recordings/{rid}"))).expect("recording");
    let targets: BTreeSet<&str> = moved["files"]
        .as_array()
        .expect("files")
        .iter()
        .flat_map(|f| f["locations"].as_array().into_iter().flatten())
        .filter_map(|l| l["target"].as_str())
        .collect();
    assert_eq!(targets, BTreeSet::from(["archive"]), "moved: {moved}");

    // Stop the edge: its `offline` alert shows on the alerts page and the fleet overview, live.
    b.goto(&format!("{http}/#/alerts"));
    b.wait_js(
        "alerts table",
        T,
        "const t=document.getElementById('alerts'); return t && !t.textContent.includes('Loading') || null",
    );
    assert!(edge.terminate(Duration::from_secs(10)), "the edge stops");
    b.wait_js(
        "offline alert listed",
        T,
        &format!(
            "return document.querySelector('#alerts tr.active[data-rule=offline][data-edge=\"{edge_id}\"]') !== null || null"
        ),
    );
    shot("07-alerts");
    b.goto(&format!("{http}/#/fleet"));
    b.wait_js(
        "offline alert on the fleet overview",
        T,
        "return document.querySelector('#edges tr[data-edge] .alerts .pill[data-rule=offline]') !== null || null",
    );
    shot("07b-fleet-alert");
    // The audit log holds the config change and the job.
    b.goto(&format!("{http}/#/audit"));
    let audit = b.wait_js(
        "audit rows",
        T,
        "const t=document.getElementById('audit'); return t && t.rows.length ? t.textContent : null",
    );
    let audit = audit.as_str().unwrap_or_default();
    assert!(
        audit.contains(&format!("PUT /api/v1/edges/{edge_id}/config")),
        "{audit}"
    );
    assert!(audit.contains("POST /api/v1/jobs"), "{audit}");
    shot("08-audit");

    // A phone-sized screen: the recording page still lays out.
    b.cmd(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    )
    .expect("resize");
    b.goto(&format!("{http}/#/recordings"));
    b.wait_find("#searchbtn", T);
    shot("09-recordings-phone");

    let errors: Vec<Value> = b
        .console()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
