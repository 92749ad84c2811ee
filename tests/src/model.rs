//! Scripted model APIs for the real-agent tests (tests/tests/e2e/agents.rs, codex.rs) and the
//! bench's Codex workload (the `guard-model` program): the OpenAI Responses API (Codex,
//! as Codex's own tests in openai/codex `codex-rs/core/tests` script it), the Anthropic
//! Messages API (Claude Code), the Gemini API (Gemini CLI) and an OpenAI-compatible
//! Chat Completions provider (Copilot CLI in its offline, bring-your-own-key mode),
//! each over SSE as the CLIs stream it (the wire formats measured with the CLIs
//! against stand-ins, headless and offline).
//!
//! The server listens on 127.0.0.1 of a network namespace of the test's own, where
//! the agent runs too. Each request that offers the agent's shell tool is one model
//! turn: its step is the number of tool results it carries, and the answer is a call
//! of the shell tool with the step's command, or, once every command has its result,
//! a final text ([`FINAL_MESSAGE`]). Anything else is answered with a short text (or a
//! 404 for an unknown path). Every request is kept, headers and body, so a test can
//! check what reached the model.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::NetNs;

/// A model server's name in its namespace: a veth (so the namespace is one guard's
/// resolver serves), a DNS server on the namespace's side of it, and the
/// namespace's resolv.conf naming that server.
struct Named {
    _dns: crate::dnsmasq::Dnsmasq,
    _resolv: crate::dnsmasq::NsResolvConf,
    _veth: crate::Veth,
    _dir: crate::TempDir,
}

impl Named {
    fn new(ns: &NetNs, host: &str) -> Self {
        let veth = ns.veth();
        let dir = crate::TempDir::new("guard-e2e-model-dns");
        let dns = crate::dnsmasq::Dnsmasq::start(
            ns.command("dnsmasq"),
            veth.peer,
            &[host],
            std::net::Ipv4Addr::LOCALHOST,
            dir.path(),
        );
        let resolv = crate::dnsmasq::NsResolvConf::new(ns.name(), veth.peer);
        Self {
            _dns: dns,
            _resolv: resolv,
            _veth: veth,
            _dir: dir,
        }
    }
}

/// What the model says when its script is done.
pub const FINAL_MESSAGE: &str = "guard-e2e: every scripted command ran";

/// The wire format a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/responses`, tool `exec_command` (Codex).
    OpenAiResponses,
    /// `POST /v1/messages?beta=true`, tool `Bash` (Claude Code).
    Anthropic,
    /// `POST /v1beta/models/<model>:streamGenerateContent?alt=sse`, tool
    /// `run_shell_command` (Gemini CLI).
    Gemini,
    /// `POST /v1/chat/completions`, tool `bash` (Copilot CLI).
    OpenAiChat,
}

impl Api {
    /// The host the agents reach this API at: the real provider's name, which
    /// both built-in policies allow, answered by the test's own DNS server in the
    /// model's namespace (so the agent resolves it through guard's resolver).
    pub fn host(self) -> &'static str {
        match self {
            Self::OpenAiResponses => "api.openai.com",
            Self::Anthropic => "api.anthropic.com",
            Self::Gemini => "generativelanguage.googleapis.com",
            Self::OpenAiChat => "api.githubcopilot.com",
        }
    }

    /// The name of the agent's shell tool.
    pub fn shell_tool(self) -> &'static str {
        match self {
            Self::OpenAiResponses => "exec_command",
            Self::Anthropic => "Bash",
            Self::Gemini => "run_shell_command",
            Self::OpenAiChat => "bash",
        }
    }

    /// Whether `path` is this API's model call.
    fn is_turn(self, method: &str, path: &str) -> bool {
        let route = path.split('?').next().unwrap_or("");
        method == "POST"
            && match self {
                Self::OpenAiResponses => route.ends_with("/responses"),
                Self::Anthropic => route == "/v1/messages",
                Self::Gemini => route.ends_with(":streamGenerateContent"),
                Self::OpenAiChat => route.ends_with("/chat/completions"),
            }
    }

    /// Whether the request offers the shell tool (the agent's main loop; not a title or
    /// a check of its own).
    fn offers_shell(self, body: &Value) -> bool {
        let tools = body.get("tools").and_then(Value::as_array);
        let name = self.shell_tool();
        tools.into_iter().flatten().any(|t| match self {
            Self::OpenAiResponses | Self::Anthropic => {
                t.get("name").and_then(Value::as_str) == Some(name)
            }
            Self::OpenAiChat => t.pointer("/function/name").and_then(Value::as_str) == Some(name),
            Self::Gemini => t
                .get("functionDeclarations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|d| d.get("name").and_then(Value::as_str) == Some(name)),
        })
    }

    /// The tool results a request carries, in order: (call id, output). Gemini's
    /// results name no call of ours: their id is the step.
    pub fn tool_results(self, body: &Value) -> Vec<(String, String)> {
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let mut out = Vec::new();
        match self {
            Self::OpenAiResponses => {
                for i in array(body, "input") {
                    if i.get("type").and_then(Value::as_str) == Some("function_call_output") {
                        let id = i.get("call_id").and_then(Value::as_str).unwrap_or("");
                        out.push((id.to_owned(), text(i.get("output"))));
                    }
                }
            }
            Self::Anthropic => {
                for m in array(body, "messages") {
                    for b in m
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                            let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                            out.push((id.to_owned(), text(b.get("content"))));
                        }
                    }
                }
            }
            Self::OpenAiChat => {
                for m in array(body, "messages") {
                    if m.get("role").and_then(Value::as_str) == Some("tool") {
                        let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                        out.push((id.to_owned(), text(m.get("content"))));
                    }
                }
            }
            Self::Gemini => {
                for c in array(body, "contents") {
                    for p in c
                        .get("parts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(r) = p.get("functionResponse") {
                            let output = r.pointer("/response/output").or(r.get("response"));
                            out.push((call_id(out.len()), text(output)));
                        }
                    }
                }
            }
        }
        out
    }

    /// The answer to a model turn at `step` of `commands`, as the HTTP body and its
    /// content type.
    fn turn(self, body: &Value, step: usize, commands: &[String]) -> String {
        let command = commands.get(step);
        match self {
            Self::OpenAiResponses => responses_sse(step, command),
            Self::Anthropic => anthropic_sse(body, step, command),
            Self::Gemini => gemini_sse(command),
            Self::OpenAiChat => openai_sse(body, step, command),
        }
    }
}

fn array<'a>(body: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    body.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The id of the tool call of `step` (Claude Code and Copilot send it back with the
/// result).
pub fn call_id(step: usize) -> String {
    format!("guard_e2e_call_{step}")
}

fn sse(events: &[(Option<&str>, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| match name {
            Some(name) => format!("event: {name}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect()
}

/// Responses API: `response.created`, one output item (an `exec_command` call or the
/// final message), `response.completed`.
fn responses_sse(step: usize, command: Option<&String>) -> String {
    let id = format!("resp_guard_e2e_{step}");
    let item = match command {
        Some(cmd) => json!({"type": "function_call", "call_id": call_id(step),
            "name": "exec_command",
            "arguments": json!({"cmd": cmd, "yield_time_ms": 10000}).to_string()}),
        None => {
            json!({"type": "message", "role": "assistant", "id": format!("msg_guard_e2e_{step}"),
            "content": [{"type": "output_text", "text": FINAL_MESSAGE}]})
        }
    };
    let usage = json!({"input_tokens": 0, "input_tokens_details": null, "output_tokens": 0,
        "output_tokens_details": null, "total_tokens": 0});
    sse(&[
        (
            Some("response.created"),
            json!({"type": "response.created", "response": {"id": id}}),
        ),
        (
            Some("response.output_item.done"),
            json!({"type": "response.output_item.done", "item": item}),
        ),
        (
            Some("response.completed"),
            json!({"type": "response.completed", "response": {"id": id, "usage": usage}}),
        ),
    ])
}

/// Messages API: `message_start`, one content block (a `Bash` tool use or the text),
/// `message_delta` with the stop reason, `message_stop`.
fn anthropic_sse(body: &Value, step: usize, command: Option<&String>) -> String {
    let model = body.get("model").cloned().unwrap_or(json!("guard-e2e"));
    let usage = json!({"input_tokens": 10, "output_tokens": 1,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    let (start, delta, stop) = match command {
        Some(cmd) => (
            json!({"type": "tool_use", "id": call_id(step), "name": "Bash", "input": {}}),
            json!({"type": "input_json_delta", "partial_json":
                json!({"command": cmd, "description": "guard e2e step"}).to_string()}),
            "tool_use",
        ),
        None => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": FINAL_MESSAGE}),
            "end_turn",
        ),
    };
    sse(&[
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": format!("msg_guard_e2e_{step}"),
                "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage}}),
        ),
        (Some("ping"), json!({"type": "ping"})),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": start}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": 5}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ])
}

/// Gemini API: one chunk with a `run_shell_command` call or the text.
fn gemini_sse(command: Option<&String>) -> String {
    let part = match command {
        Some(cmd) => json!({"functionCall": {"name": "run_shell_command",
            "args": {"command": cmd, "description": "guard e2e step"}}}),
        None => json!({"text": FINAL_MESSAGE}),
    };
    // Gemini's SSE parser splits events on CRLF CRLF as the API sends them.
    format!(
        "data: {}\r\n\r\n",
        json!({"candidates": [{"content": {"role": "model", "parts": [part]},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": "guard-e2e"})
    )
}

/// Chat Completions: the tool call's name, then its arguments (or the text), the finish
/// reason, the usage when asked for, `[DONE]`.
fn openai_sse(body: &Value, step: usize, command: Option<&String>) -> String {
    let model = body.get("model").cloned().unwrap_or(json!("guard-e2e"));
    let chunk = |choices: Value| {
        (
            None,
            json!({"id": format!("chatcmpl-guard-e2e-{step}"), "object": "chat.completion.chunk",
                "created": 0, "model": model, "choices": choices}),
        )
    };
    let mut events = match command {
        Some(cmd) => vec![
            chunk(
                json!([{"index": 0, "finish_reason": null, "delta": {"role": "assistant",
                "content": null, "tool_calls": [{"index": 0, "id": call_id(step), "type": "function",
                "function": {"name": "bash", "arguments": ""}}]}}]),
            ),
            chunk(
                json!([{"index": 0, "finish_reason": null, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": json!({"command": cmd, "description": "guard e2e step",
                "mode": "sync"}).to_string()}}]}}]),
            ),
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
        ],
        None => vec![
            chunk(json!([{"index": 0, "finish_reason": null,
                "delta": {"role": "assistant", "content": FINAL_MESSAGE}}])),
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
        ],
    };
    if body.pointer("/stream_options/include_usage") == Some(&json!(true)) {
        let (name, mut last) = chunk(json!([]));
        last["usage"] = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        events.push((name, last));
    }
    sse(&events) + "data: [DONE]\n\n"
}

/// One HTTP request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case header names and their values.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    pub body_text: String,
    /// The body, when it is JSON.
    pub body: Option<Value>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as received: request line, headers and body.
    pub fn raw(&self) -> String {
        let mut out = format!("{} {}\n", self.method, self.path);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out + "\n" + &self.body_text
    }
}

/// The scripted server (see the module's documentation); stopped on drop.
pub struct ModelServer {
    api: Api,
    /// Its name, answered by a DNS server of its namespace (dropped before `ns`).
    named: Option<Named>,
    /// The namespace of its own it listens in (None: the caller's).
    ns: Option<NetNs>,
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl ModelServer {
    /// Starts a server speaking `api` in a new network namespace; the model has the
    /// agent run `commands`, one per turn.
    /// Its namespace has a veth to the host and a DNS server of its own (its
    /// resolv.conf names it) that answers [`Api::host`] with 127.0.0.1: the agent
    /// reaches the model by its name ([`ModelServer::base_url`]), through guard's
    /// resolver in that namespace, as it would reach the real provider.
    pub fn start(api: Api, commands: Vec<String>) -> Self {
        let ns = NetNs::new();
        let listener = ns
            .enter(|| TcpListener::bind("127.0.0.1:0"))
            .expect("bind the model server");
        let named = Named::new(&ns, api.host());
        let mut server = Self::serve(api, commands, listener, Some(ns));
        server.named = Some(named);
        server
    }

    /// As [`ModelServer::start`], on 127.0.0.1 of the caller's own network namespace
    /// (the `guard-model` program, which has one of its own).
    pub fn start_here(api: Api, commands: Vec<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        Ok(Self::serve(api, commands, listener, None))
    }

    fn serve(api: Api, commands: Vec<String>, listener: TcpListener, ns: Option<NetNs>) -> Self {
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(commands);
        let accept = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(conn) = conn {
                        let (requests, script) = (Arc::clone(&requests), Arc::clone(&script));
                        thread::spawn(move || connection(api, conn, &requests, &script));
                    }
                }
            })
        };
        Self {
            api,
            named: None,
            ns,
            port,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    pub fn api(&self) -> Api {
        self.api
    }

    /// The namespace the server listens in (the agent must run there).
    pub fn ns(&self) -> &NetNs {
        self.ns
            .as_ref()
            .expect("a server started with ModelServer::start")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    /// `http://HOST:PORT`: by [`Api::host`] where the server has its name, else by
    /// 127.0.0.1.
    pub fn base_url(&self) -> String {
        match &self.named {
            Some(_) => format!("http://{}:{}", self.api.host(), self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The model turns among `requests`: calls of the model that offered the shell tool.
    pub fn turns(&self, requests: &[Request]) -> Vec<Request> {
        requests
            .iter()
            .filter(|r| {
                self.api.is_turn(&r.method, &r.path)
                    && r.body.as_ref().is_some_and(|b| self.api.offers_shell(b))
            })
            .cloned()
            .collect()
    }

    /// The output the agent sent back for the command of `step`, in `turns` (the last
    /// turn that carries it).
    pub fn tool_output(&self, turns: &[Request], step: usize) -> Option<String> {
        let id = call_id(step);
        turns.iter().rev().find_map(|r| {
            self.api
                .tool_results(r.body.as_ref()?)
                .into_iter()
                .find_map(|(i, out)| (i == id).then_some(out))
        })
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let port = self.port;
        let wake = || TcpStream::connect(("127.0.0.1", port));
        let _ = match &self.ns {
            Some(ns) => ns.enter(wake),
            None => wake(),
        };
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Reads one request off `reader`: None at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_owned();
    let path = words.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let body_text = String::from_utf8_lossy(&body).into_owned();
    Some(Request {
        body: serde_json::from_str(&body_text).ok(),
        method,
        path,
        headers,
        body_text,
    })
}

/// Serves one keep-alive connection.
fn connection(api: Api, conn: TcpStream, requests: &Mutex<Vec<Request>>, script: &[String]) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_request(&mut reader) {
        let body = request.body.clone().unwrap_or(Value::Null);
        let (status, kind, text) = if api.is_turn(&request.method, &request.path) {
            let answer = if api.offers_shell(&body) {
                let step = api.tool_results(&body).len();
                api.turn(&body, step, script)
            } else {
                // Not the main loop (a title, a check of its own): a short text.
                api.turn(&body, usize::MAX, &[])
            };
            ("200 OK", "text/event-stream", answer)
        } else if api == Api::Gemini && request.path.contains(":generateContent") {
            // Gemini's own checks (next speaker, loop detection) ask for JSON.
            let text = json!({"reasoning": "guard e2e", "next_speaker": "user"}).to_string();
            let answer = json!({"candidates": [{"content": {"role": "model",
                "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}]});
            ("200 OK", "application/json", answer.to_string())
        } else if api == Api::Gemini && request.path.contains(":countTokens") {
            (
                "200 OK",
                "application/json",
                json!({"totalTokens": 42}).to_string(),
            )
        } else {
            ("404 Not Found", "application/json", "{}".to_owned())
        };
        if let Ok(mut all) = requests.lock() {
            all.push(request);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncache-control: no-cache\r\n\
             content-length: {}\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_apis_tool_results() {
        let codex = json!({"input": [{"type": "message", "role": "user", "content": []},
            {"type": "function_call", "call_id": call_id(0)},
            {"type": "function_call_output", "call_id": call_id(0), "output": "z"}]});
        assert_eq!(
            Api::OpenAiResponses.tool_results(&codex),
            vec![(call_id(0), "z".to_owned())]
        );
        let claude = json!({"messages": [{"role": "user", "content": "go"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id(0),
            "content": "out"}]}]});
        assert_eq!(
            Api::Anthropic.tool_results(&claude),
            vec![(call_id(0), "out".to_owned())]
        );
        let gemini = json!({"contents": [{"role": "user", "parts": [{"functionResponse":
            {"name": "run_shell_command", "response": {"output": "x"}}}]}]});
        assert_eq!(
            Api::Gemini.tool_results(&gemini),
            vec![(call_id(0), "x".to_owned())]
        );
        let chat = json!({"messages": [{"role": "tool", "tool_call_id": call_id(0),
            "content": "y"}]});
        assert_eq!(
            Api::OpenAiChat.tool_results(&chat),
            vec![(call_id(0), "y".to_owned())]
        );
    }
}
