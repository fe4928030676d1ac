//! A small W3C WebDriver client over HTTP (ureq) for the dashboard tests: starts Debian's
//! `chromedriver` with headless `chromium`, opens pages, finds elements by CSS, clicks, types, runs
//! scripts, waits, reads the browser console and saves screenshots. Both programs must be
//! installed (`deploy/install-deps.sh test`); a missing one fails the test loudly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Proc, free_port, require_tool, wait_for};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one browser session; both end on drop.
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    session: String,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver and a headless chromium (1280x900) with console logging on.
    pub fn start(log_dir: &Path) -> Browser {
        require_tool("chromium");
        require_tool("chromedriver");
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"));
        let driver = Proc::start("chromedriver", cmd, log_dir);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver /status", Duration::from_secs(20), || {
            let mut r = agent.get(&format!("{base}/status")).call().ok()?;
            let v: Value = r.body_mut().read_json().ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        });
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900",
                             "--autoplay-policy=no-user-gesture-required"]
                },
                "goog:loggingPrefs": { "browser": "ALL" }
            }}
        });
        let mut r = agent
            .post(&format!("{base}/session"))
            .send_json(&caps)
            .expect("chromedriver answers POST /session");
        let v: Value = r.body_mut().read_json().expect("session json");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_owned();
        Browser {
            agent,
            base,
            session,
            _driver: driver,
        }
    }

    /// One WebDriver command; the `value` of the answer, or the driver's error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut resp = resp.map_err(|e| format!("{method} {path}: {e}"))?;
        let ok = resp.status().is_success();
        let v: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| format!("{method} {path}: bad JSON: {e}"))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!("{method} {path}: {}", v["value"]))
        }
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .expect("navigate");
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits for an element matching `css`.
    pub fn wait_find(&self, css: &str, timeout: Duration) -> String {
        wait_for(&format!("element {css}"), timeout, || self.find(css))
    }

    pub fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), None)
            .expect("click");
    }

    pub fn clear(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/clear"), None)
            .expect("clear");
    }

    pub fn type_text(&self, el: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .expect("send keys");
    }

    /// Runs `script` (a function body; `arguments` available) and returns its value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Polls `script` until it returns something other than null/false.
    pub fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        wait_for(what, timeout, || {
            let v = self.js(script, json!([]));
            (!v.is_null() && v != Value::Bool(false)).then_some(v)
        })
    }

    /// Saves a PNG screenshot.
    pub fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", None).expect("screenshot");
        let b64 = v.as_str().expect("base64 png");
        let png = base64_decode(b64).expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifacts dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Browser console entries since the last call (chromedriver's log endpoint).
    pub fn console(&self) -> Vec<Value> {
        match self.cmd("POST", "/se/log", Some(json!({"type": "browser"}))) {
            Ok(Value::Array(v)) => v,
            Ok(other) => panic!("unexpected console log answer: {other}"),
            Err(e) => panic!("cannot read the browser console: {e}"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let _ = self
            .agent
            .delete(&format!("{}/session/{}", self.base, self.session))
            .config()
            .timeout_global(Some(deadline - Instant::now()))
            .build()
            .call();
    }
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    Some(out)
}
