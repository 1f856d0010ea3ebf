//! A real browser for the web UI's end-to-end tests: Debian's headless Chromium driven through
//! its chromedriver (WebDriver, with `fantoccini`), on loopback only.
//!
//! [`Browser::start`] runs `chromedriver --port=0` as a child (its own process group, ended on
//! drop with the browser it started) and opens a fresh headless session with its own profile in a
//! temporary folder. Beside clicking and filling, it keeps the evidence a person would look at:
//! screenshots as PNG files under `target/ui-artifacts/<test>/<step>-<width>x<height>.png`
//! ([`Browser::snap`] takes each step at a phone's size and a laptop's), the browser's console
//! (every `SEVERE` entry fails the step: JavaScript errors, CSP violations, failed loads), and
//! axe-core's accessibility audit ([`Browser::axe`] fails on any `serious` or `critical`
//! violation).
//!
//! The tools come from the environment `scripts/test` sets: `ATELIER_CHROMEDRIVER`,
//! `ATELIER_AXE_JS` (the pinned `axe-core/axe.min.js`) and optionally `ATELIER_CHROMIUM`. Tests
//! that use this are compiled as ignored without them outside CI (`crates/cli/build.rs`,
//! `cfg(browser_missing)`).

#![allow(dead_code)]

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use testkit::wait_until;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for something to appear on a page (live updates included).
pub const UI_DEADLINE: Duration = Duration::from_secs(30);
/// The two sizes every step is photographed at: a phone and a laptop.
pub const SIZES: [(u32, u32); 2] = [(390, 844), (1440, 900)];
/// Longest wait for chromedriver to start and for the browser session to open.
const START_DEADLINE: Duration = Duration::from_secs(30);
const INSTALL: &str = "run the tests with `scripts/test`, which installs Debian's chromium and \
                       chromium-driver and the pinned axe-core into .tools/, and sets \
                       ATELIER_CHROMEDRIVER and ATELIER_AXE_JS";

/// One entry of the browser's console log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

impl LogEntry {
    /// A report of a Content Security Policy violation (the browser refused something).
    pub fn is_csp_violation(&self) -> bool {
        self.message.contains("Content Security Policy")
    }
}

/// A headless Chromium session; see the module docs.
pub struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    session: String,
    /// The base URL relative paths are opened against (the Atelier server).
    pub base: String,
    artifacts: PathBuf,
    axe_js: String,
    /// Console entries read from the browser and not yet checked.
    unchecked: Mutex<Vec<LogEntry>>,
    /// Every console entry read so far, for failure messages and the artifacts.
    all_logs: Mutex<Vec<LogEntry>>,
    _profile: tempfile::TempDir,
}

/// The path of a tool from the environment, or a failure naming it and how to install it.
fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(path) if path.is_file() => path,
        Some(path) => panic!("{var}={} does not exist; {INSTALL}", path.display()),
        None => panic!("{var} is not set; {INSTALL}"),
    }
}

/// `target/ui-artifacts/<test>`: the test binary is `<target>/<profile>/deps/ui-<hash>`.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("ui-artifacts").join(test)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session whose relative URLs are under `base`;
    /// screenshots and logs go to `target/ui-artifacts/<test>/` (emptied first).
    pub async fn start(test: &str, base: &str) -> Browser {
        Browser::start_with(test, base, &[]).await
    }

    /// [`Browser::start`] with more Chromium command-line switches (e.g.
    /// `--blink-settings=scriptEnabled=false` for a browser that runs no page script).
    pub async fn start_with(test: &str, base: &str, switches: &[&str]) -> Browser {
        let chromedriver = tool("ATELIER_CHROMEDRIVER");
        let axe_js = std::fs::read_to_string(tool("ATELIER_AXE_JS")).unwrap();
        let artifacts = artifacts_dir(test);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).unwrap();

        let mut cmd = Command::new(&chromedriver);
        cmd.arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so the browser it starts is ended with it on drop.
            .process_group(0)
            .kill_on_drop(true);
        let mut driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {INSTALL}", chromedriver.display()));
        // chromedriver prints `… started successfully on port N.` once it listens.
        let stdout = driver.stdout.take().unwrap();
        let port = tokio::time::timeout(START_DEADLINE, async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port: u16 = rest.trim_end_matches('.').trim().parse().unwrap();
                    // Keep reading its output so it never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return port;
                }
            }
            panic!("chromedriver exited without saying which port it listens on");
        })
        .await
        .expect("chromedriver did not start within 30 s");
        let driver_url = format!("http://127.0.0.1:{port}");

        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--disable-extensions".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--hide-scrollbars".to_string(),
            "--force-device-scale-factor=1".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", SIZES[1].0, SIZES[1].1),
        ];
        // Loopback only: no proxy of the environment is ever used.
        args.push("--no-proxy-server".to_string());
        args.extend(switches.iter().map(|s| s.to_string()));
        let mut chrome_options = json!({"args": args});
        if let Some(binary) = std::env::var_os("ATELIER_CHROMIUM") {
            chrome_options["binary"] = json!(binary.to_string_lossy());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome_options);
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let client = tokio::time::timeout(
            START_DEADLINE,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&driver_url),
        )
        .await
        .expect("the browser session did not open within 30 s")
        .unwrap_or_else(|e| panic!("opening a Chromium session through chromedriver: {e}"));
        let session = client.session_id().await.unwrap().unwrap();
        // Script runs (axe) may take a while on a busy machine; finds never wait implicitly.
        client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(60)),
                Some(Duration::ZERO),
            ))
            .await
            .unwrap();
        Browser {
            client,
            driver,
            driver_url,
            session,
            base: base.trim_end_matches('/').to_string(),
            artifacts,
            axe_js,
            unchecked: Mutex::new(Vec::new()),
            all_logs: Mutex::new(Vec::new()),
            _profile: profile,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `target/ui-artifacts/<test>`, where the screenshots, axe results and console go.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    fn url_of(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Opens `path` (relative to the base URL, or absolute) and waits for the page to load.
    pub async fn goto(&self, path: &str) {
        let url = self.url_of(path);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// The current URL's path and query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits until the current path (without the query) is `want`.
    pub async fn wait_path(&self, want: &str) {
        let client = &self.client;
        let result = wait_until(&format!("the page {want}"), UI_DEADLINE, || async move {
            let url = client.current_url().await.ok()?;
            (url.path() == want).then_some(())
        })
        .await;
        if let Err(err) = result {
            panic!("{err}; the browser is at {}", self.url().await);
        }
    }

    /// Runs `script` (a function body: `return …`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// The element matching `css`, which must exist now.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no element `{css}` on {}: {e}", self.url().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.js(
            "return document.querySelectorAll(arguments[0]).length",
            vec![json!(css)],
        )
        .await
        .as_u64()
        .unwrap() as usize
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.count(css).await > 0
    }

    /// Waits until an element matching `css` exists and returns it. The element is looked up
    /// again until the deadline: a page that reloads (after an action) may drop it between the
    /// check and the lookup.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_js(
            &format!("an element `{css}`"),
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(css)],
        )
        .await;
        let client = &self.client;
        match wait_until(
            &format!("the element `{css}`"),
            UI_DEADLINE,
            || async move { client.find(Locator::Css(css)).await.ok() },
        )
        .await
        {
            Ok(element) => element,
            Err(e) => panic!("no element `{css}` on {}: {e}", self.url().await),
        }
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        self.wait_js(
            &format!("no element `{css}`"),
            "return document.querySelector(arguments[0]) === null",
            vec![json!(css)],
        )
        .await;
    }

    /// Waits until the text of the first element matching `css` contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str) {
        self.wait_js(
            &format!("`{css}` to contain {text:?}"),
            "const e = document.querySelector(arguments[0]); \
             return e !== null && e.textContent.includes(arguments[1])",
            vec![json!(css), json!(text)],
        )
        .await;
    }

    /// Waits until `script` (a function body) returns something truthy; returns it. Fails naming
    /// `what`, with the page's URL and a screenshot (`timeout.png`).
    pub async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let client = &self.client;
        let result = wait_until(what, UI_DEADLINE, || {
            let args = args.clone();
            async move {
                let value = client.execute(script, args).await.ok()?;
                let truthy = match &value {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                };
                truthy.then_some(value)
            }
        })
        .await;
        match result {
            Ok(value) => value,
            Err(err) => {
                if let Ok(alert) = self.client.get_alert_text().await {
                    panic!("{err}\nan unexpected dialog is open: {alert:?}");
                }
                let shot = self.screenshot_as("timeout").await;
                let url = self.url().await;
                let logs = self.read_logs().await;
                panic!(
                    "{err}\nthe browser is at {url}; screenshot {}\nconsole: {logs:#?}",
                    shot.display()
                )
            }
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.unwrap()
    }

    /// Clicks the element matching `css` (scrolled into view first).
    pub async fn click(&self, css: &str) {
        // A live region may be swapped between finding the element and clicking it (the page
        // refreshes its regions over SSE): wait until a click lands on a current element. Any
        // other error fails at once.
        let client = &self.client;
        let last_error = Mutex::new(String::new());
        let result = wait_until(&format!("a click on `{css}`"), UI_DEADLINE, || {
            let last_error = &last_error;
            async move {
                let element = client.find(Locator::Css(css)).await.ok()?;
                let arg = serde_json::to_value(&element).ok()?;
                let outcome = async {
                    client
                        .execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg])
                        .await?;
                    element.click().await
                }
                .await;
                match outcome {
                    Ok(()) => Some(Ok(())),
                    Err(e) => {
                        let text = e.to_string();
                        let transient = ["stale element", "not interactable", "click intercepted"]
                            .iter()
                            .any(|t| text.contains(t));
                        *last_error.lock().unwrap() = text.clone();
                        if transient { None } else { Some(Err(text)) }
                    }
                }
            }
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("clicking `{css}` on {}: {e}", self.url().await),
            Err(err) => panic!(
                "{err} on {}; last error: {}",
                self.url().await,
                last_error.lock().unwrap()
            ),
        }
    }

    /// Clicks the element matching `css` and accepts the confirmation dialog it opens.
    pub async fn click_and_confirm(&self, css: &str) {
        self.click(css).await;
        let client = &self.client;
        let result = wait_until(
            &format!("the confirmation dialog of `{css}`"),
            UI_DEADLINE,
            || async move { client.accept_alert().await.ok() },
        )
        .await;
        if let Err(err) = result {
            panic!("{err} on {}", self.url().await);
        }
    }

    /// Replaces the value of the input or textarea matching `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        element.clear().await.unwrap();
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
        let value = element.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(value, text, "the value of `{css}` after typing");
    }

    /// Presses each of `keys` in turn (down, then up) wherever the focus is, as a person at the
    /// keyboard; a special key is a [`fantoccini::key::Key`] turned into a `char`.
    pub async fn press(&self, keys: &[char]) {
        use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
        let mut typing = KeyActions::new("keyboard".to_string());
        for &value in keys {
            typing = typing
                .then(KeyAction::Down { value })
                .then(KeyAction::Up { value });
        }
        self.client
            .perform_actions(typing)
            .await
            .unwrap_or_else(|e| panic!("pressing {keys:?}: {e}"));
    }

    /// Checks or unchecks the checkbox matching `css`.
    pub async fn set_checked(&self, css: &str, checked: bool) {
        let element = self.wait_for(css).await;
        if element.is_selected().await.unwrap() != checked {
            element.click().await.unwrap();
        }
        assert_eq!(element.is_selected().await.unwrap(), checked, "`{css}`");
    }

    /// Sets the viewport (the page's `innerWidth` × `innerHeight`) to `width` × `height`.
    pub async fn set_size(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        // The window may be larger than its viewport: correct by the difference once.
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]", vec![])
            .await;
        let (w, h) = (
            inner[0].as_u64().unwrap() as i64,
            inner[1].as_u64().unwrap() as i64,
        );
        if (w, h) != (width as i64, height as i64) {
            let fix = |want: u32, got: i64| (2 * want as i64 - got).max(1) as u32;
            self.client
                .set_window_size(fix(width, w), fix(height, h))
                .await
                .unwrap();
        }
    }

    /// Writes a screenshot of the viewport to `<artifacts>/<name>.png`; returns its path.
    pub async fn screenshot_as(&self, name: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).unwrap(),
            Err(e) => eprintln!("could not take the screenshot {}: {e}", path.display()),
        }
        path
    }

    /// Photographs `step` at each of [`SIZES`] (`<step>-<w>x<h>.png`, the page scrolled to the
    /// top) and fails on any console error so far. The window is left at the laptop size.
    pub async fn snap(&self, step: &str) {
        self.snap_without_checks(step).await;
        self.assert_no_console_errors(step).await;
    }

    /// [`Browser::snap`]'s screenshots alone, for a page whose errors are expected.
    pub async fn snap_without_checks(&self, step: &str) {
        for (width, height) in SIZES {
            self.set_size(width, height).await;
            self.js("window.scrollTo(0, 0)", vec![]).await;
            self.screenshot_as(&format!("{step}-{width}x{height}"))
                .await;
        }
    }

    /// Reads the console entries the browser logged since the last read (chromedriver's
    /// `POST /session/{id}/se/log` with type `browser`, which drains them); keeps them for
    /// [`Browser::take_console`] and writes them to `console.log` in the artifacts.
    pub async fn read_logs(&self) -> Vec<LogEntry> {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let entries: Vec<LogEntry> = body["value"]
            .as_array()
            .unwrap_or_else(|| panic!("chromedriver's log answer: {body}"))
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or("").to_string(),
                source: e["source"].as_str().unwrap_or("").to_string(),
                message: e["message"].as_str().unwrap_or("").to_string(),
            })
            .collect();
        if !entries.is_empty() {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.artifacts.join("console.log"))
                .unwrap();
            for e in &entries {
                writeln!(file, "{} [{}] {}", e.level, e.source, e.message).unwrap();
            }
        }
        self.unchecked.lock().unwrap().extend(entries.clone());
        self.all_logs.lock().unwrap().extend(entries.clone());
        entries
    }

    /// The console entries not yet checked (read from the browser first), and forgets them.
    pub async fn take_console(&self) -> Vec<LogEntry> {
        self.read_logs().await;
        std::mem::take(&mut *self.unchecked.lock().unwrap())
    }

    /// Waits (with a deadline) until the browser logged the failed load of a URL containing
    /// `url_part` — the refusal a form just showed, which Chromium logs a moment after — and
    /// fails if any other `SEVERE` entry was logged meanwhile or the failure was not `status`.
    pub async fn expect_failed_load(&self, url_part: &str, status: &str) {
        let logged = std::sync::Mutex::new(Vec::new());
        testkit::wait_until(
            &format!("the browser's log of the refused {url_part}"),
            std::time::Duration::from_secs(10),
            || {
                let logged = &logged;
                async move {
                    let mut seen = logged.lock().unwrap().clone();
                    seen.extend(
                        self.take_console()
                            .await
                            .into_iter()
                            .filter(|e| e.level == "SEVERE"),
                    );
                    let found = seen.iter().any(|e| e.message.contains(url_part));
                    *logged.lock().unwrap() = seen;
                    found.then_some(())
                }
            },
        )
        .await
        .unwrap();
        let logged = logged.into_inner().unwrap();
        assert!(
            logged
                .iter()
                .all(|e| e.message.contains(url_part) && e.message.contains(status)),
            "{logged:?}"
        );
    }

    /// Fails, listing them, if the browser logged any `SEVERE` console entry since the last
    /// check: uncaught JavaScript errors, `console.error`, CSP violations, failed loads.
    pub async fn assert_no_console_errors(&self, step: &str) {
        let severe: Vec<LogEntry> = self
            .take_console()
            .await
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .collect();
        if !severe.is_empty() {
            let shot = self.screenshot_as(&format!("{step}-console-error")).await;
            let list: Vec<String> = severe
                .iter()
                .map(|e| format!("  [{}] {}", e.source, e.message))
                .collect();
            panic!(
                "step {step}: the browser logged {} console error(s) on {}:\n{}\nscreenshot {}",
                severe.len(),
                self.url().await,
                list.join("\n"),
                shot.display()
            );
        }
    }

    /// Runs axe-core on the current page (injected if needed) and returns its violations of
    /// impact `serious` or `critical`. The whole result goes to `axe-<screen>.json` in the
    /// artifacts.
    pub async fn axe_violations(&self, screen: &str) -> Vec<Value> {
        let loaded = self
            .js("return typeof window.axe === 'object'", vec![])
            .await;
        if loaded != json!(true) {
            // WebDriver scripts are not subject to the page's Content Security Policy.
            self.js(&format!("{}\n;return true;", self.axe_js), vec![])
                .await;
        }
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 window.axe.run(document, {resultTypes: ['violations']})
                   .then(r => done({violations: r.violations.map(v => ({
                       id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                       nodes: v.nodes.map(n => ({target: n.target, html: n.html,
                                                summary: n.failureSummary}))}))}))
                   .catch(e => done({error: String(e)}));",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("running axe on {screen}: {e}"));
        std::fs::write(
            self.artifacts.join(format!("axe-{screen}.json")),
            serde_json::to_vec_pretty(&result).unwrap(),
        )
        .unwrap();
        if let Some(error) = result.get("error") {
            panic!("axe failed on {screen}: {error}");
        }
        result["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .cloned()
            .collect()
    }

    /// Runs axe-core on the current page and fails on any violation of impact `serious` or
    /// `critical`, listing each rule, its help and the nodes it found; then checks the console.
    pub async fn axe(&self, screen: &str) {
        let bad = self.axe_violations(screen).await;
        if !bad.is_empty() {
            let mut report = String::new();
            for v in &bad {
                report.push_str(&format!(
                    "- {} ({}): {} <{}>\n",
                    v["id"].as_str().unwrap_or(""),
                    v["impact"].as_str().unwrap_or(""),
                    v["help"].as_str().unwrap_or(""),
                    v["helpUrl"].as_str().unwrap_or("")
                ));
                for node in v["nodes"].as_array().unwrap() {
                    report.push_str(&format!(
                        "    {} {}\n      {}\n",
                        node["target"],
                        node["html"].as_str().unwrap_or(""),
                        node["summary"]
                            .as_str()
                            .unwrap_or("")
                            .replace('\n', "\n      ")
                    ));
                }
            }
            panic!(
                "axe found {} serious or critical accessibility violation(s) on {screen} ({}):\n{report}",
                bad.len(),
                self.url().await
            );
        }
        self.assert_no_console_errors(&format!("axe-{screen}"))
            .await;
    }

    /// Photographs `step` ([`Browser::snap`]) and audits it with axe ([`Browser::axe`]).
    pub async fn screen(&self, step: &str) {
        self.snap(step).await;
        self.axe(step).await;
    }

    /// Sends a Chrome DevTools Protocol command to the page through chromedriver
    /// (`POST /session/{id}/goog/cdp/execute`); returns its result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!(
                "{}/session/{}/goog/cdp/execute",
                self.driver_url, self.session
            ))
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "CDP {cmd}: {status} {body}");
        body["value"].clone()
    }

    /// Emulates the system's colour scheme (`"dark"` or `"light"`) for the page's
    /// `prefers-color-scheme`, for every page opened after, until changed again.
    pub async fn emulate_color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
        let matches = self
            .js(
                "return matchMedia('(prefers-color-scheme: ' + arguments[0] + ')').matches",
                vec![json!(scheme)],
            )
            .await;
        assert_eq!(matches, json!(true), "the page prefers the {scheme} scheme");
    }

    /// Every console entry read so far.
    pub fn console_history(&self) -> Vec<LogEntry> {
        self.all_logs.lock().unwrap().clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask chromedriver to end the session (it closes Chromium), best effort and bounded,
        // then end chromedriver's process group: whatever is left of the browser goes with it.
        let _ = delete_session(&self.driver_url, &self.session);
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.start_kill();
    }
}

/// `DELETE /session/{id}` with a plain blocking HTTP/1.1 request (drop cannot await).
fn delete_session(driver_url: &str, session: &str) -> std::io::Result<()> {
    let addr = driver_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}
