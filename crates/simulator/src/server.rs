//! The HTTP server: routes each request to its API, records it, plays the scenario and sends
//! the answer. [`Simulator`] runs it in-process (tests bind `127.0.0.1:0`);
//! `atelier simulator` runs it as a command.

use crate::conversation::Conversation;
use crate::play::{Counters, Outcome, Tail, play};
use crate::recorder::{RecordedRequest, Recorder};
use crate::stream::{Ids, Out, Render, Shutdown, now};
use crate::vocab::{self, ToolCall};
use crate::{anthropic, openai_chat, openai_responses};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The largest request body read (the CLIs send whole conversations).
const BODY_LIMIT: usize = 512 << 20;

/// How to run the simulator.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where `<stage>.json` scenario files are.
    pub scenarios_dir: PathBuf,
    /// Also append every request to this JSONL file.
    pub record_file: Option<PathBuf>,
    /// How long the simulated model takes before each answer to a model request (Messages,
    /// Responses, Chat Completions; not probes, model lists or token counts): after the
    /// request arrived and was recorded, before the answer starts. Zero (the default) answers
    /// at once. It counts as model time (inside `received_at_us`..`finished_at_us`), so a
    /// benchmark can make runs last like real ones without moving its hand-off clock (the
    /// arrival of the next request).
    pub latency: Duration,
}

/// A running simulator. Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct AppState {
    scenarios: PathBuf,
    latency: Duration,
    recorder: Recorder,
    counters: Counters,
    ids: Ids,
    shutdown: Shutdown,
}

impl Simulator {
    /// Serves on `listener`, playing the scenarios in `scenarios_dir`.
    pub async fn start(listener: TcpListener, scenarios_dir: PathBuf) -> Simulator {
        Simulator::spawn(listener, scenarios_dir, Recorder::default(), Duration::ZERO)
    }

    /// [`start`](Self::start) with options; fails only when the record file cannot be opened.
    pub async fn start_with(listener: TcpListener, options: Options) -> std::io::Result<Simulator> {
        let recorder = match &options.record_file {
            Some(path) => Recorder::with_file(path)?,
            None => Recorder::default(),
        };
        Ok(Simulator::spawn(
            listener,
            options.scenarios_dir,
            recorder,
            options.latency,
        ))
    }

    fn spawn(
        listener: TcpListener,
        scenarios: PathBuf,
        recorder: Recorder,
        latency: Duration,
    ) -> Simulator {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, rx) = watch::channel(false);
        let state = Arc::new(AppState {
            scenarios,
            latency,
            recorder,
            counters: Counters::default(),
            ids: Ids::default(),
            shutdown: Shutdown(rx.clone()),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let mut stop = Shutdown(rx);
        let task = tokio::spawn(async move {
            let serve =
                axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await });
            if let Err(err) = serve.await {
                tracing::warn!(%err, "the model simulator stopped");
            }
        });
        Simulator {
            addr,
            state,
            shutdown: tx,
            task: Some(task),
        }
    }

    /// `http://ADDR` (no trailing slash, no `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.list()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.state.recorder.clear();
    }

    /// Stops the server: ends every open stream, stall and hang, and waits (at most 5 s) for
    /// the connections to close.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// The three model APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Anthropic,
    Responses,
    Chat,
}

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    // The arrival time is taken before the body is read: a large prompt takes a while to upload.
    let received_at_us = crate::recorder::unix_micros();
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let body: Bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(body) => body,
        Err(err) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Atelier simulator: cannot read the request body: {err}"),
            )
                .into_response();
        }
    };
    let path = uri.path().trim_end_matches('/');
    let full = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    if let Some(response) = internal(&state, &method, path) {
        return response;
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
        .map(str::to_string);
    let parsed = if body.is_empty() {
        Value::Null
    } else if encoding.is_some() {
        json!({"unparsed": format!("{} bytes of {} content", body.len(), encoding.as_deref().unwrap_or_default())})
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({"unparsed": String::from_utf8_lossy(&body).chars().take(4000).collect::<String>()}))
    };
    let seq = state.recorder.arrive(
        received_at_us,
        method.as_str(),
        full,
        &headers,
        parsed.clone(),
    );
    // Armed before the answer is decided: a client that leaves during a stall still ends it.
    let finish = Finish {
        state: Arc::clone(&state),
        seq,
        done: false,
    };
    let response = reply(&state, seq, &method, path, encoding, parsed, body.len()).await;
    timed(finish, response)
}

/// Notes when request `seq`'s response ended ([`Recorder::finished`]) once, at the latest when
/// dropped (the client went away, the connection broke, the simulator stopped).
struct Finish {
    state: Arc<AppState>,
    seq: u64,
    done: bool,
}

impl Finish {
    fn now(&mut self) {
        if !self.done {
            self.done = true;
            self.state
                .recorder
                .finished(self.seq, crate::recorder::unix_micros());
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.now();
    }
}

/// `response` with `finish` noted when its last byte is handed to the connection: at once for
/// a whole body (sent in one piece), else when its stream ends, before the end of the chunked
/// body goes out (so a client that read the whole answer finds it recorded).
fn timed(mut finish: Finish, response: Response) -> Response {
    use axum::body::HttpBody;
    use futures::StreamExt;
    let (parts, body) = response.into_parts();
    if body.size_hint().exact().is_some() {
        finish.now();
        return Response::from_parts(parts, body);
    }
    let stream = futures::stream::unfold(
        (body.into_data_stream(), finish),
        |(mut stream, mut finish)| async move {
            match stream.next().await {
                Some(chunk) => Some((chunk, (stream, finish))),
                None => {
                    finish.now();
                    None
                }
            }
        },
    );
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// The answer to a recorded request.
async fn reply(
    state: &AppState,
    seq: u64,
    method: &Method,
    path: &str,
    encoding: Option<String>,
    parsed: Value,
    body_len: usize,
) -> Response {
    let note = |answer: &str| state.recorder.answered(seq, answer.to_string());

    let api = match *method {
        Method::POST if path.ends_with("/messages/count_tokens") => {
            note("count_tokens");
            return json_response(StatusCode::OK, &json!({"input_tokens": body_len / 4 + 1}));
        }
        Method::POST if path.ends_with("/messages") => Api::Anthropic,
        Method::POST if path.ends_with("/responses") => Api::Responses,
        Method::POST if path.ends_with("/chat/completions") => Api::Chat,
        Method::HEAD => {
            note("probe");
            return StatusCode::OK.into_response();
        }
        Method::GET if path.ends_with("/models") => {
            note("models");
            return json_response(StatusCode::OK, &models());
        }
        Method::GET if path.is_empty() || path == "/v1" => {
            note("probe");
            return json_response(
                StatusCode::OK,
                &json!({"ok": true, "name": "Atelier model simulator"}),
            );
        }
        _ => {
            let message = format!("Atelier simulator: no {method} {path}");
            note("404");
            return json_response(
                StatusCode::NOT_FOUND,
                &anthropic::error(404, &message, "req_none"),
            );
        }
    };
    if !state.latency.is_zero() {
        let mut shutdown = state.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(state.latency) => {}
            () = shutdown.wait() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    let request_id = state.ids.make("req_");
    let problem = match (&encoding, &parsed) {
        (Some(e), _) => Some(format!(
            "Atelier simulator: request bodies with content-encoding `{e}` are not supported"
        )),
        (None, Value::Object(map)) if !map.contains_key("unparsed") => None,
        _ => Some("Atelier simulator: the request body is not a JSON object".to_string()),
    };
    if let Some(message) = problem {
        note(&format!("400: {message}"));
        return error_response(api, 400, &message, None, &request_id);
    }
    let conv = match api {
        Api::Anthropic => anthropic::conversation(&parsed, body_len),
        Api::Responses => openai_responses::conversation(&parsed, body_len),
        Api::Chat => openai_chat::conversation(&parsed, body_len),
    };
    model_reply(state, api, &conv, &request_id, &note).await
}

/// `/_sim/…`: the recorder and a readiness probe; not recorded.
fn internal(state: &AppState, method: &Method, path: &str) -> Option<Response> {
    match (method, path) {
        (&Method::GET, "/_sim/requests") => {
            Some(json_response(StatusCode::OK, &json!(state.recorder.list())))
        }
        (&Method::DELETE, "/_sim/requests") => {
            state.recorder.clear();
            Some(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::GET, "/_sim/health") => Some(json_response(StatusCode::OK, &json!({"ok": true}))),
        (_, p) if p.starts_with("/_sim/") => Some(StatusCode::METHOD_NOT_ALLOWED.into_response()),
        _ => None,
    }
}

async fn model_reply(
    state: &AppState,
    api: Api,
    conv: &Conversation,
    request_id: &str,
    note: &impl Fn(&str),
) -> Response {
    let model = conv.model.clone().unwrap_or_else(|| "simulator".into());
    if conv.tools.is_empty() {
        // Title generation, quota probes and other side requests: a short text, no scenario.
        let text = if conv.system.contains("isNewTopic") {
            r#"{"isNewTopic": false, "title": null}"#
        } else {
            "Atelier simulated session"
        };
        note("side request without tools: text");
        let answer = crate::play::Answer {
            parts: vec![crate::play::Part::Text(text.into())],
            ..Default::default()
        };
        return render(state, api, conv, &model, &answer, None, request_id);
    }
    let reply = match play(conv, &state.scenarios, &state.counters) {
        Ok(reply) => reply,
        Err(e) => {
            note(&format!("400: {e}"));
            return error_response(api, 400, &e.0, None, request_id);
        }
    };
    let position = &reply.position;
    let ready = match &reply.outcome {
        Outcome::Answer(answer) => {
            let call = match &answer.tail {
                Tail::Action(action) => match vocab::tool_call(action, conv) {
                    Ok(call) => Some(call),
                    Err(message) => {
                        note(&format!("{position}: 400: {message}"));
                        return error_response(api, 400, &message, None, request_id);
                    }
                },
                _ => None,
            };
            let what = match (&call, &answer.tail) {
                (Some(call), _) => format!("tool {}", call.name),
                (None, Tail::Hang) => "hang".into(),
                (None, Tail::Cut) => "crash".into(),
                (None, _) => "end of turn".into(),
            };
            note(&format!("{position}: {what}"));
            Ok((answer, call))
        }
        Outcome::HttpError { status, .. } => {
            note(&format!("{position}: http_error {status}"));
            Err(())
        }
        Outcome::Garbage { .. } => {
            note(&format!("{position}: garbage"));
            Err(())
        }
    };
    if let Some(stall) = reply.stall {
        let mut shutdown = state.shutdown.clone();
        match stall {
            Some(pause) => tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.wait() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            },
            None => {
                shutdown.wait().await;
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    match (ready, &reply.outcome) {
        (Ok((answer, call)), _) => {
            render(state, api, conv, &model, answer, call.as_ref(), request_id)
        }
        (
            Err(()),
            Outcome::HttpError {
                status,
                message,
                body,
            },
        ) => error_response(api, *status, message, body.as_deref(), request_id),
        (Err(()), Outcome::Garbage { lines }) => {
            let mut out = Out::sse(None);
            for i in 1..=*lines {
                out.raw(format!("garbage line {i}: this is not SSE {{\n"));
            }
            out.raw("data: {this is not JSON either\n\n".into());
            out.into_response(StatusCode::OK, request_id, state.shutdown.clone())
        }
        (Err(()), Outcome::Answer(_)) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn render(
    state: &AppState,
    api: Api,
    conv: &Conversation,
    model: &str,
    answer: &crate::play::Answer,
    call: Option<&ToolCall>,
    request_id: &str,
) -> Response {
    let said: usize = answer
        .parts
        .iter()
        .map(|p| match p {
            crate::play::Part::Text(t) | crate::play::Part::Thinking(t) => t.len(),
            crate::play::Part::Pause(_) => 0,
        })
        .sum::<usize>()
        + call.map_or(0, |c| c.input.to_json().to_string().len());
    let r = Render {
        model,
        ids: &state.ids,
        input_tokens: (conv.body_len / 4 + 1) as u64,
        output_tokens: (10 + said / 4) as u64,
        stream: conv.stream,
    };
    let out = match api {
        Api::Anthropic => anthropic::render(answer, call, &r),
        Api::Responses => openai_responses::render(answer, call, &r),
        Api::Chat => openai_chat::render(answer, call, &r),
    };
    out.into_response(StatusCode::OK, request_id, state.shutdown.clone())
}

fn error_response(
    api: Api,
    status: u16,
    message: &str,
    body: Option<&str>,
    request_id: &str,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match body {
        Some(raw) => {
            let kind = if serde_json::from_str::<Value>(raw).is_ok() {
                "application/json"
            } else {
                "text/plain"
            };
            let mut response = (code, raw.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            response
        }
        None => {
            let value = match api {
                Api::Anthropic => anthropic::error(status, message, request_id),
                Api::Responses | Api::Chat => openai_responses::error(status, message),
            };
            json_response(code, &value)
        }
    };
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", id.clone());
        headers.insert("x-request-id", id);
    }
    if status == 429 {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    }
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /v1/models` in both shapes (Anthropic `data` + paging fields, OpenAI `data`; Codex's
/// `models` list left empty so it keeps its built-in catalog).
fn models() -> Value {
    let ids = ["claude-sonnet-4-5", "gpt-5.5", "simulator"];
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"id": id, "object": "model", "created": now(), "owned_by": "atelier",
            "type": "model", "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    json!({"object": "list", "data": data, "models": [], "has_more": false,
        "first_id": ids[0], "last_id": ids[ids.len() - 1]})
}
