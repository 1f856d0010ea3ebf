//! The bridge of a long-lived OpenCode session: `atelier opencode-bridge`, the agent process of a
//! run whose role has `session = "long-lived"`. It runs `opencode serve` as its child and speaks
//! the engine's long-lived protocol on its own stdin and stdout:
//!
//! - **Boot, before any turn.** It starts `opencode serve --hostname 127.0.0.1 --port 0` (a port
//!   the server picks and prints, so nothing random is in the bridge's own command line and a warm
//!   process's spec equals its run's), with a random password (`OPENCODE_SERVER_PASSWORD`: other
//!   agents share the loopback network), subscribes to its event stream (`GET /event`), then
//!   creates the session (`POST /session`), or takes the one `--session` names, and says so on
//!   stdout (`bridge.session`). OpenCode still builds most of its machinery at its first prompt
//!   (its providers, the tools of the working directory: seconds); so, unless a turn is already
//!   waiting on stdin, the bridge sends one prompt to a throw-away session on a model of its own,
//!   `atelier-warmup`, whose endpoint is the bridge itself on loopback answering every request
//!   with HTTP 400: OpenCode boots everything, the request fails at once and nothing reaches
//!   the role's model; the session is deleted when stdin closes. A warm process has then paid the
//!   cold start. A turn that comes during the warm-up is sent at once (OpenCode builds its
//!   machinery once, for whichever prompt asks first; the turn does not wait for the warm-up's
//!   failure and end of step), and so are the end of stdin and a stop. The one exception is a
//!   turn that must have OpenCode read its configuration again (below): disposing of an
//!   instance the warm-up is still building makes OpenCode end the next prompt at once,
//!   unanswered ("All fibers interrupted" in its log), so that turn waits for the warm-up's end.
//! - **Turns.** Each stdin line (`{"text": "…"}`, [`turn_line`]) becomes
//!   `POST /session/<id>/prompt_async` with the role's model and variant. OpenCode reads its
//!   configuration once per instance, so when the worktree's own (`opencode.json`,
//!   `opencode.jsonc`, `.opencode/`) changed since the server booted (the previous stage edited
//!   it while a warm process idled), the bridge first disposes of the instance
//!   (`POST /instance/dispose`) and subscribes again: the turn then sees the new configuration. Every event of the
//!   session (`message.*`, `session.status|idle|error`, `permission.asked`, `question.asked`)
//!   is written to stdout as one JSON line, as the server sent it (a user message's file
//!   summary left out); the decoder ends a turn at `session.idle` (a turn that went idle with
//!   no assistant message failed, retryable: OpenCode dropped its prompt). A permission or question
//!   OpenCode would wait for is refused at once (nobody answers an unattended agent).
//! - **End.** Closing stdin ends the session: the server and everything it started are killed,
//!   and the bridge exits 0. SIGTERM or SIGINT (the engine's graceful stop) first aborts the
//!   turn through the API (`POST /session/<id>/abort`: OpenCode stops its tools and ends the
//!   turn), then does the same. The server is in its own process group, so the stop signal to
//!   the agent's group reaches only the bridge, and it dies with the bridge however the bridge
//!   ends (`PR_SET_PDEATHSIG`); the sandbox's PID namespace (or, unconfined, the run's tree,
//!   the bridge being its subreaper) holds every process of the run.
//!
//! One server per run, not one per task home reused across its runs: a run's sandbox, its
//! environment (the signal token) and its stop are its own. Warm standby starts the next run's
//! bridge ahead of time instead, which is where the cold start goes.

use crate::process;
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// What `atelier opencode-bridge` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeArgs {
    /// The `opencode` executable.
    pub opencode: PathBuf,
    /// `provider/model` (`atelier/<id>` for a role's `base_url`).
    pub model: String,
    /// The model variant (the role's effort).
    pub variant: Option<String>,
    /// A session to continue instead of creating one.
    pub session: Option<String>,
}

/// The user name of the server's basic authentication (OpenCode's default).
const USER: &str = "opencode";
/// How long the server may take to listen, and the session to be created.
const BOOT_LIMIT: Duration = Duration::from_secs(90);
/// The deadline of one API request.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
/// How long the warm-up prompt may take.
const WARMUP_LIMIT: Duration = Duration::from_secs(60);
/// After a stop's abort, how long the turn's last events may take.
const ABORT_LIMIT: Duration = Duration::from_secs(3);
/// The provider and model of the warm-up prompt.
const WARMUP_PROVIDER: &str = "atelier-warmup";
const WARMUP_MODEL: &str = "warm-up";

/// Event types of the session that go to stdout.
const FORWARDED: [&str; 8] = [
    "message.updated",
    "message.part.updated",
    "message.part.delta",
    "session.status",
    "session.idle",
    "session.error",
    "permission.asked",
    "question.asked",
];

/// One turn on the bridge's stdin.
pub fn turn_line(text: &str) -> Vec<u8> {
    let mut line = json!({ "text": text }).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// Runs the bridge to its end; returns the exit code.
pub fn run_bridge(args: BridgeArgs) -> i32 {
    // One thread: the server is started from it, so its parent-death signal fires only when the
    // bridge ends.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(bridge(args));
            // The stdin reader may be blocked in a read that only the end of stdin ends (a stop
            // leaves stdin open): dropping the runtime would wait for it.
            runtime.shutdown_timeout(Duration::from_millis(100));
            code
        }
        Err(err) => {
            eprintln!("opencode bridge: cannot start its runtime: {err}");
            1
        }
    }
}

/// Writes the bridge's lines to stdout; a broken stdout (the engine is gone) ends the bridge.
struct Out;

impl Out {
    fn line(&self, value: &Value) -> bool {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{value}")
            .and_then(|()| stdout.flush())
            .is_ok()
    }

    fn error(&self, message: &str, turn: bool) -> bool {
        self.line(&json!({"type": "bridge.error", "message": message, "turn": turn}))
    }
}

/// The running `opencode serve`.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    password: String,
    client: reqwest::Client,
}

impl Server {
    /// One API request under [`REQUEST_LIMIT`]; the answer's JSON (`Null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth(USER, Some(&self.password))
            .timeout(REQUEST_LIMIT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let what = format!("{method} {path}");
        let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{what}: {e}"))?;
        if !status.is_success() {
            let start: String = text.chars().take(300).collect();
            return Err(format!("{what}: HTTP {status}: {start}"));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{what}: {e}"))
    }

    /// Kills the server and everything it started, and reaps it.
    async fn end(mut self) {
        process::kill_tree(self.pid);
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

async fn bridge(args: BridgeArgs) -> i32 {
    let out = Out;
    // Before OpenCode starts reading it: a change made while it boots and warms up (the
    // previous stage's agent still working) is then seen at the first turn.
    let stamp = config_stamp(&std::env::current_dir().unwrap_or_default());
    let warmup = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener.local_addr().ok().map(|addr| {
            tokio::spawn(refuse_all(listener));
            addr.port()
        }),
        Err(_) => None,
    };
    let server = match start_server(&args, warmup).await {
        Ok(server) => server,
        Err(err) => {
            out.error(&format!("cannot start `opencode serve`: {err}"), false);
            return 1;
        }
    };
    let code = match serve(&args, &server, warmup.is_some(), stamp, &out).await {
        Ok(code) => code,
        Err(err) => {
            out.error(&err, false);
            1
        }
    };
    server.end().await;
    code
}

/// Starts the server and waits for its "listening on" line.
async fn start_server(args: &BridgeArgs, warmup: Option<u16>) -> Result<Server, String> {
    let password = format!("{:032x}", rand::random::<u128>());
    let mut cmd = tokio::process::Command::new(&args.opencode);
    cmd.args([
        "serve",
        "--hostname",
        "127.0.0.1",
        "--port",
        "0",
        "--print-logs",
        "--log-level",
        "ERROR",
    ])
    .env("OPENCODE_SERVER_USERNAME", USER)
    .env("OPENCODE_SERVER_PASSWORD", &password)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::inherit())
    .process_group(0)
    .kill_on_drop(true);
    if let Some(config) =
        warmup.and_then(|port| with_warmup_provider(&std::env::var(super::CONFIG_ENV).ok()?, port))
    {
        cmd.env(super::CONFIG_ENV, config);
    }
    process::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e}", args.opencode.display()))?;
    let pid = child.id().ok_or("it exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(BOOT_LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = listening_url(&line) {
                return Some(url);
            }
            eprintln!("{line}");
        }
        None
    })
    .await;
    let base = match base {
        Ok(Some(base)) => base,
        Ok(None) => {
            process::kill_tree(pid);
            return Err("it ended before listening (its log is in stderr)".into());
        }
        Err(_) => {
            process::kill_tree(pid);
            return Err(format!("it did not listen within {BOOT_LIMIT:?}"));
        }
    };
    // What it prints later goes to stderr (the engine keeps its tail), never to our stdout.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Server {
        child,
        pid,
        base,
        password,
        client,
    })
}

/// `http://127.0.0.1:<port>` from the server's "opencode server listening on …" line.
fn listening_url(line: &str) -> Option<String> {
    let url = line.split("listening on ").nth(1)?.trim();
    let port = url.strip_prefix("http://127.0.0.1:")?;
    port.parse::<u16>().ok().map(|_| url.to_string())
}

/// The configuration `config` (OpenCode's JSON) with the warm-up provider at `port` added.
fn with_warmup_provider(config: &str, port: u16) -> Option<String> {
    let mut config: Value = serde_json::from_str(config).ok()?;
    let providers = config
        .as_object_mut()?
        .entry("provider")
        .or_insert_with(|| json!({}));
    providers.as_object_mut()?.insert(
        WARMUP_PROVIDER.into(),
        json!({
            "npm": "@ai-sdk/openai-compatible",
            "name": "Atelier warm-up",
            "options": {"baseURL": format!("http://127.0.0.1:{port}/v1"), "apiKey": "warm-up"},
            "models": {WARMUP_MODEL: {"name": WARMUP_MODEL, "tool_call": true}},
        }),
    );
    Some(config.to_string())
}

/// The warm-up model's endpoint: every request is answered with HTTP 400 (not retried).
async fn refuse_all(listener: tokio::net::TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 8192];
            // The request head, then as much body as it announces (bounded).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if request_complete(&seen) || seen.len() > 16 << 20 {
                    break;
                }
            }
            let body = r#"{"error":{"message":"Atelier's warm-up endpoint answers no prompt","type":"invalid_request_error"}}"#;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: \
                 {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Whether `seen` holds a whole request (head and `content-length` bytes of body).
fn request_complete(seen: &[u8]) -> bool {
    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    seen.len() >= end + 4 + length
}

/// What the main loop waits on.
#[derive(Debug, PartialEq)]
enum Input {
    Turn(String),
    Event(Value),
    StdinClosed,
    EventsClosed,
    Stop,
    ServerExited,
}

impl Input {
    /// What a stdin line (`None`: stdin closed) asks for.
    fn from_line(line: Option<String>) -> Input {
        match line {
            Some(line) => Input::Turn(line),
            None => Input::StdinClosed,
        }
    }
}

/// Runs the session: boot, warm-up, turns, until stdin closes or a stop. Returns the exit code.
/// `stamp` is the worktree's OpenCode configuration as it was before the server started: a
/// turn finding it changed has OpenCode read it again first.
async fn serve(
    args: &BridgeArgs,
    server: &Server,
    can_warm: bool,
    mut stamp: ConfigStamp,
    out: &Out,
) -> Result<i32, String> {
    // Subscribed before the session exists: none of its events can be missed.
    let mut events = subscribed(server).await?;
    let session = match &args.session {
        Some(id) => id.clone(),
        None => {
            let created = server
                .call(
                    reqwest::Method::POST,
                    "/session",
                    Some(&json!({"title": "Atelier"})),
                )
                .await?;
            created
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| id.starts_with("ses"))
                .ok_or_else(|| format!("the server created no session: {created}"))?
                .to_string()
        }
    };
    if !out.line(&json!({"type": "bridge.session", "sessionID": session})) {
        return Ok(1);
    }
    let (stdin_tx, mut stdin) = mpsc::unbounded_channel::<Option<String>>();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            let line = lines.next_line().await.ok().flatten();
            let end = line.is_none();
            if stdin_tx.send(line).is_err() || end {
                return;
            }
        }
    });
    let mut stops = Stops::new()?;
    let session_state = Session {
        server,
        id: session,
        out,
        model: args.model.clone(),
        variant: args.variant.clone(),
    };
    // A turn already waiting (a cold start) goes first; an idle (warm) process warms up, and
    // a turn, the end of stdin or a stop that comes meanwhile is taken at once: OpenCode builds
    // its machinery once for both prompts, so the turn does not wait for the warm-up's end.
    tokio::task::yield_now().await;
    let mut pending = stdin.try_recv().ok().map(Input::from_line);
    let mut warm_session = None;
    // The warm-up's session while its prompt is still in flight (a turn cut it short), with
    // the warm-up's deadline.
    let mut warming = None;
    if pending.is_none() && can_warm {
        let deadline = tokio::time::Instant::now() + WARMUP_LIMIT;
        let (session, cut) = session_state
            .warm_up(deadline, &mut events, &mut stdin, &mut stops)
            .await;
        if cut.is_some() {
            warming = session.clone().map(|id| (id, deadline));
        }
        warm_session = session;
        pending = cut.or_else(|| stdin.try_recv().ok().map(Input::from_line));
    }
    let workdir = std::env::current_dir().unwrap_or_default();
    let mut child_exit = Box::pin(wait_exit(server.pid));
    loop {
        let input = match pending.take() {
            Some(input) => input,
            // A stop goes first (it aborts the turn), then stdin, so a flood of events
            // starves neither.
            None => tokio::select! {
                biased;
                () = stops.next() => Input::Stop,
                line = stdin.recv() => match line.flatten() {
                    Some(line) => Input::Turn(line),
                    None => Input::StdinClosed,
                },
                event = events.recv() => match event.flatten() {
                    Some(event) => Input::Event(event),
                    None => Input::EventsClosed,
                },
                () = &mut child_exit => Input::ServerExited,
            },
        };
        match input {
            Input::Turn(line) => {
                let now = config_stamp(&workdir);
                if now != stamp {
                    // Disposed of while the warm-up still builds it, OpenCode ends the next
                    // prompt at once without running it ("All fibers interrupted"): the
                    // warm-up ends first.
                    if let Some((id, deadline)) = warming.take() {
                        eprintln!(
                            "opencode bridge: the worktree's OpenCode configuration changed; \
                             reloading it once the warm-up has ended"
                        );
                        let cut = session_state
                            .until_idle(&id, deadline, &mut events, &mut stops, None)
                            .await;
                        if cut == Some(Input::Stop) {
                            session_state.abort(&mut events).await;
                            return Ok(0);
                        }
                    }
                    stamp = now;
                    events = reload(server).await?;
                }
                session_state.turn(&line).await;
            }
            Input::Event(event) => {
                if warming.as_ref().is_some_and(|(id, _)| is_idle(&event, id)) {
                    warming = None;
                }
                if !session_state.event(event).await {
                    return Ok(1);
                }
            }
            Input::StdinClosed => {
                // The warm-up's session goes now: OpenCode may still write it right after its
                // failure.
                if let Some(id) = warm_session {
                    let path = format!("/session/{id}");
                    let _ = server.call(reqwest::Method::DELETE, &path, None).await;
                }
                return Ok(0);
            }
            Input::EventsClosed => return Err("the server's event stream ended".into()),
            Input::ServerExited => return Err("`opencode serve` exited".into()),
            Input::Stop => {
                session_state.abort(&mut events).await;
                return Ok(0);
            }
        }
    }
}

/// A subscription to the server's event stream, once it is open (its first event came).
async fn subscribed(server: &Server) -> Result<mpsc::UnboundedReceiver<Option<Value>>, String> {
    let (tx, mut events) = mpsc::unbounded_channel::<Option<Value>>();
    tokio::spawn(subscribe(
        server.client.clone(),
        format!("{}/event", server.base),
        server.password.clone(),
        tx,
    ));
    match tokio::time::timeout(BOOT_LIMIT, events.recv()).await {
        Ok(Some(Some(_))) => Ok(events),
        _ => Err("the server's event stream did not open".into()),
    }
}

/// Makes OpenCode read its configuration again: disposes of the instance (its event stream
/// ends with it) and subscribes anew.
async fn reload(server: &Server) -> Result<mpsc::UnboundedReceiver<Option<Value>>, String> {
    server
        .call(reqwest::Method::POST, "/instance/dispose", None)
        .await?;
    subscribed(server).await
}

/// What of OpenCode's configuration lives in a worktree, file by file: (path, length, modified).
type ConfigStamp = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;

/// What of OpenCode's configuration lives in the worktree `dir` (`opencode.json`,
/// `opencode.jsonc`, the `.opencode` folder but its `node_modules`), as (path, length, modified)
/// of each file, in order. Bounded: a huge folder is compared by its first files.
fn config_stamp(dir: &Path) -> ConfigStamp {
    const MOST: usize = 2000;
    let mut out = Vec::new();
    // A stack: the first to look at last.
    let mut queue: Vec<PathBuf> = [".opencode", "opencode.jsonc", "opencode.json"]
        .iter()
        .map(|name| dir.join(name))
        .collect();
    while let Some(path) = queue.pop() {
        if out.len() >= MOST {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == "node_modules") {
                continue;
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            queue.extend(entries.into_iter().rev());
        } else {
            out.push((path, meta.len(), meta.modified().ok()));
        }
    }
    out
}

/// Resolves when process `pid` (our child) is gone or a zombie.
async fn wait_exit(pid: u32) {
    while process::is_alive(pid) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stop signals (SIGTERM, SIGINT).
struct Stops {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stops {
    fn new() -> Result<Stops, String> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stops {
            term: signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
            int: signal(SignalKind::interrupt()).map_err(|e| e.to_string())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

/// The run's session on the server.
struct Session<'a> {
    server: &'a Server,
    id: String,
    out: &'a Out,
    model: String,
    variant: Option<String>,
}

impl Session<'_> {
    /// Sends one stdin line as a prompt; a turn that cannot start is ended on stdout.
    async fn turn(&self, line: &str) {
        let text = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned));
        let Some(text) = text else {
            self.out
                .error("the bridge got a turn that is not {\"text\": …}", true);
            return;
        };
        let (provider, model) = self.model.split_once('/').unwrap_or(("", &self.model));
        let mut body = json!({
            "model": {"providerID": provider, "modelID": model},
            "parts": [{"type": "text", "text": text}],
        });
        if let Some(variant) = &self.variant {
            body["variant"] = variant.as_str().into();
        }
        let path = format!("/session/{}/prompt_async", self.id);
        if let Err(err) = self
            .server
            .call(reqwest::Method::POST, &path, Some(&body))
            .await
        {
            self.out
                .error(&format!("OpenCode did not take the turn: {err}"), true);
        }
    }

    /// Handles one event of the stream; false when stdout is gone.
    async fn event(&self, mut event: Value) -> bool {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ours = event
            .pointer("/properties/sessionID")
            .and_then(Value::as_str)
            == Some(self.id.as_str());
        if !ours || !FORWARDED.contains(&kind.as_str()) {
            return true;
        }
        let request = event
            .pointer("/properties/id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (kind.as_str(), request) {
            ("permission.asked", Some(id)) => {
                let body = json!({"reply": "reject", "message": "Atelier runs this agent unattended: nobody can grant a permission"});
                let _ = self
                    .server
                    .call(
                        reqwest::Method::POST,
                        &format!("/permission/{id}/reply"),
                        Some(&body),
                    )
                    .await;
            }
            ("question.asked", Some(id)) => {
                let _ = self
                    .server
                    .call(
                        reqwest::Method::POST,
                        &format!("/question/{id}/reject"),
                        None,
                    )
                    .await;
            }
            _ => {}
        }
        // A user message's summary can hold whole file diffs; the decoder needs its role only.
        if let Some(info) = event
            .pointer_mut("/properties/info")
            .and_then(Value::as_object_mut)
        {
            info.remove("summary");
        }
        self.out.line(&event)
    }

    /// The warm-up prompt (see the module's doc): waits for its throw-away session to fail,
    /// forwarding anything of the run's own session meanwhile, unless a stdin line or a stop
    /// comes first (returned, for the main loop to take at once). Returns that session
    /// (deleted at the end).
    async fn warm_up(
        &self,
        deadline: tokio::time::Instant,
        events: &mut mpsc::UnboundedReceiver<Option<Value>>,
        stdin: &mut mpsc::UnboundedReceiver<Option<String>>,
        stops: &mut Stops,
    ) -> (Option<String>, Option<Input>) {
        let created = self
            .server
            .call(
                reqwest::Method::POST,
                "/session",
                Some(&json!({"title": "Atelier warm-up"})),
            )
            .await;
        let Some(id) = created
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        else {
            return (None, None);
        };
        let body = json!({
            "model": {"providerID": WARMUP_PROVIDER, "modelID": WARMUP_MODEL},
            "parts": [{"type": "text", "text": "warm up"}],
        });
        let sent = self
            .server
            .call(
                reqwest::Method::POST,
                &format!("/session/{id}/prompt_async"),
                Some(&body),
            )
            .await;
        let cut = match sent {
            Ok(_) => {
                self.until_idle(&id, deadline, events, stops, Some(stdin))
                    .await
            }
            Err(_) => None,
        };
        (Some(id), cut)
    }

    /// Forwards the run's events until session `id` goes idle (until `deadline` at most, or
    /// the end of the event stream). A stop, or a line of `stdin` when given, that comes first
    /// is returned instead, for the caller to take at once.
    async fn until_idle(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
        events: &mut mpsc::UnboundedReceiver<Option<Value>>,
        stops: &mut Stops,
        mut stdin: Option<&mut mpsc::UnboundedReceiver<Option<String>>>,
    ) -> Option<Input> {
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                let next_line = async {
                    match stdin.as_mut() {
                        Some(stdin) => stdin.recv().await,
                        None => std::future::pending().await,
                    }
                };
                // A stop goes first: it aborts, where the end of stdin only ends.
                let event = tokio::select! {
                    biased;
                    () = stops.next() => return Some(Input::Stop),
                    line = next_line => return Some(Input::from_line(line.flatten())),
                    event = events.recv() => event,
                };
                let Some(Some(event)) = event else {
                    return None;
                };
                if is_idle(&event, id) {
                    return None;
                }
                self.event(event).await;
            }
        })
        .await;
        waited.ok().flatten()
    }

    /// A stop: aborts the turn in flight and forwards its last events for a moment.
    async fn abort(&self, events: &mut mpsc::UnboundedReceiver<Option<Value>>) {
        let path = format!("/session/{}/abort", self.id);
        if self
            .server
            .call(reqwest::Method::POST, &path, None)
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(ABORT_LIMIT, async {
            while let Some(Some(event)) = events.recv().await {
                let idle = event.get("type").and_then(Value::as_str) == Some("session.idle")
                    && event
                        .pointer("/properties/sessionID")
                        .and_then(Value::as_str)
                        == Some(self.id.as_str());
                self.event(event).await;
                if idle {
                    return;
                }
            }
        })
        .await;
    }
}

/// Whether `event` says session `id` went idle (its turn ended).
fn is_idle(event: &Value, id: &str) -> bool {
    event.get("type").and_then(Value::as_str) == Some("session.idle")
        && event
            .pointer("/properties/sessionID")
            .and_then(Value::as_str)
            == Some(id)
}

/// Reads the server's event stream (server-sent events, one JSON object per `data:`) into
/// `tx`; `None` once it ends.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    password: String,
    tx: mpsc::UnboundedSender<Option<Value>>,
) {
    let response = client
        .get(&url)
        .basic_auth(USER, Some(&password))
        .header("accept", "text/event-stream")
        .send()
        .await;
    let Ok(response) = response.and_then(reqwest::Response::error_for_status) else {
        let _ = tx.send(None);
        return;
    };
    let mut stream = response.bytes_stream();
    let mut events = EventBuffer::default();
    while let Some(Ok(chunk)) = stream.next().await {
        events.push(&chunk);
        while let Some(block) = events.next_block() {
            if let Some(event) = event_data(&block)
                && tx.send(Some(event)).is_err()
            {
                return;
            }
        }
    }
    let _ = tx.send(None);
}

/// An event larger than this is dropped (OpenCode's events carry tool output; the transcript
/// could not use one this large either), so that a runaway stream cannot fill the bridge's
/// memory.
const MAX_EVENT_BYTES: usize = 64 << 20;

/// The event stream's bytes not yet split into blocks. Each byte is scanned for the blank line
/// that ends a block once (a large event arriving in many chunks costs linear time), and a block
/// larger than [`MAX_EVENT_BYTES`] is skipped up to its end.
#[derive(Default)]
struct EventBuffer {
    bytes: Vec<u8>,
    /// Where the search for the end of the current block resumes.
    scanned: usize,
    /// The current block outgrew the limit: its bytes are dropped until its end.
    skipping: bool,
}

impl EventBuffer {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
    }

    /// The next whole block (up to a blank line, which is consumed with it), if one is there.
    fn next_block(&mut self) -> Option<Vec<u8>> {
        loop {
            let Some((at, len)) = block_end(&self.bytes, self.scanned) else {
                // A separator may straddle the next chunk: look again from 3 bytes back.
                self.scanned = self.bytes.len().saturating_sub(3);
                if self.bytes.len() > MAX_EVENT_BYTES {
                    self.skipping = true;
                    let keep = self.bytes.split_off(self.scanned);
                    self.bytes = keep;
                    self.scanned = 0;
                }
                return None;
            };
            let block: Vec<u8> = self.bytes.drain(..at + len).take(at).collect();
            self.scanned = 0;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            return Some(block);
        }
    }
}

/// Where the first blank line (`\n\n` or `\r\n\r\n`) at or after `from` starts, and its length.
fn block_end(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let tail = bytes.get(from..)?;
    [&b"\n\n"[..], &b"\r\n\r\n"[..]]
        .iter()
        .filter_map(|sep| {
            tail.windows(sep.len())
                .position(|w| w == *sep)
                .map(|at| (from + at, sep.len()))
        })
        .min()
}

/// The JSON of an event block's `data:` lines.
fn event_data(block: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(block);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_events_split_anywhere() {
        let stream =
            b"data: {\"type\":\"a\"}\n\n: comment\n\ndata: {\"type\":\"b\"}\r\n\r\ndata: {\"ty";
        // Whole, and cut into pieces at every byte.
        for piece in [stream.len(), 1, 2, 3, 5] {
            let mut events = EventBuffer::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(piece) {
                events.push(chunk);
                while let Some(block) = events.next_block() {
                    seen.extend(event_data(&block));
                }
            }
            assert_eq!(
                seen,
                vec![json!({"type": "a"}), json!({"type": "b"})],
                "{piece}"
            );
            assert_eq!(events.bytes, b"data: {\"ty", "{piece}");
        }
    }

    #[test]
    fn an_event_over_the_limit_is_skipped_to_its_end() {
        let mut events = EventBuffer::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_EVENT_BYTES >> 20) + 2 {
            events.push(&chunk);
            assert_eq!(events.next_block(), None);
        }
        // Dropped when it outgrew the limit: only what came after is held.
        assert!(events.skipping);
        assert!(
            events.bytes.len() <= (1 << 20) + 3,
            "{}",
            events.bytes.len()
        );
        events.push(b"tail\n\ndata: {\"type\":\"c\"}\n\n");
        let block = events.next_block().unwrap();
        assert_eq!(event_data(&block), Some(json!({"type": "c"})));
        assert_eq!(events.next_block(), None);
    }

    #[test]
    fn takes_only_a_loopback_listening_line() {
        assert_eq!(
            listening_url("opencode server listening on http://127.0.0.1:4096"),
            Some("http://127.0.0.1:4096".into())
        );
        assert_eq!(
            listening_url("Warning: OPENCODE_SERVER_PASSWORD is not set"),
            None
        );
        assert_eq!(listening_url("listening on http://0.0.0.0:4096"), None);
        assert_eq!(listening_url("listening on http://127.0.0.1:99999"), None);
    }

    #[test]
    fn the_warm_up_provider_joins_the_configuration() {
        let config = r#"{"model":"atelier/m","provider":{"atelier":{"npm":"x"}}}"#;
        let merged: Value =
            serde_json::from_str(&with_warmup_provider(config, 4321).unwrap()).unwrap();
        assert_eq!(merged["provider"]["atelier"]["npm"], "x");
        assert_eq!(
            merged["provider"][WARMUP_PROVIDER]["options"]["baseURL"],
            "http://127.0.0.1:4321/v1"
        );
        assert_eq!(merged["model"], "atelier/m");
        assert_eq!(with_warmup_provider("not json", 1), None);
    }

    #[test]
    fn a_request_is_whole_with_its_announced_body() {
        assert!(!request_complete(
            b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\nab"
        ));
        assert!(request_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
        ));
        assert!(request_complete(b"GET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn the_worktrees_configuration_is_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let empty = config_stamp(dir.path());
        assert!(empty.is_empty());
        std::fs::create_dir_all(dir.path().join(".opencode/node_modules/x")).unwrap();
        std::fs::write(dir.path().join(".opencode/node_modules/x/a.js"), "1").unwrap();
        std::fs::write(dir.path().join("README.md"), "not configuration").unwrap();
        assert_eq!(config_stamp(dir.path()), empty);
        std::fs::write(dir.path().join("opencode.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join(".opencode/agent")).unwrap();
        std::fs::write(dir.path().join(".opencode/agent/a.md"), "x").unwrap();
        let stamp = config_stamp(dir.path());
        let paths: Vec<&Path> = stamp.iter().map(|(p, _, _)| p.as_path()).collect();
        assert_eq!(
            paths,
            [
                dir.path().join("opencode.json").as_path(),
                dir.path().join(".opencode/agent/a.md").as_path()
            ]
        );
        std::fs::write(dir.path().join("opencode.json"), "{\"a\":1}").unwrap();
        assert_ne!(config_stamp(dir.path()), stamp);
    }

    #[test]
    fn a_turn_is_one_json_line() {
        let line = turn_line("two\nlines");
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["text"], "two\nlines");
    }
}
