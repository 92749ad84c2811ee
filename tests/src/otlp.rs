//! An OTLP/HTTP logs receiver for the export tests: it decodes what guard sends
//! with the same maintained crates a collector uses (opentelemetry-proto, prost),
//! stores each record once by its `guard.record.id`, counts what arrived twice,
//! and answers as the test tells it to (stored, an error status, garbage, no
//! answer at all), on a loopback port of its own, stopped on drop.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as Any};
use prost::Message as _;
use serde_json::Value;

use crate::watch;

/// What the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with an `ExportLogsServiceResponse`: the batch is stored.
    Store,
    /// This status, with a short text body; nothing is stored.
    Status(u16),
    /// 200 with a body that is no response at all; the batch is stored.
    Garbage,
    /// The request is read and never answered (a receiver that died mid-batch, as
    /// far as the sender can tell): the sender's request times out; nothing is stored.
    Hangup,
}

/// One record as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub event_name: String,
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
    /// The body as JSON.
    pub body: Value,
    pub time_unix_nano: u64,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

#[derive(Default)]
struct State {
    answer: Option<Answer>,
    /// Stored records by id, in arrival order of their first copy.
    records: BTreeMap<String, Received>,
    order: Vec<String>,
    duplicates: u64,
    requests: u64,
    /// Content types and encodings seen.
    content: Vec<(String, String)>,
    /// Authorization headers seen.
    auth: Vec<String>,
    bytes: u64,
}

/// A receiver on a port of 127.0.0.1 (or of `bind`).
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn any_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => Value::from(*d),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.iter().map(any_json).collect()),
        Some(Any::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|k| {
                    (
                        k.key.clone(),
                        k.value.as_ref().map_or(Value::Null, any_json),
                    )
                })
                .collect(),
        ),
        Some(Any::BytesValue(b)) => Value::from(b.len()),
        Some(_) => Value::Null,
    }
}

fn attrs(list: &[KeyValue]) -> BTreeMap<String, Value> {
    list.iter()
        .map(|k| {
            (
                k.key.clone(),
                k.value.as_ref().map_or(Value::Null, any_json),
            )
        })
        .collect()
}

impl Receiver {
    /// Starts a receiver on `127.0.0.1:0` that stores what it gets.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts a receiver on `bind` (`ADDR:PORT`; port 0 picks one).
    pub fn start_on(bind: &str) -> Self {
        let server = Arc::new(
            tiny_http::Server::http(bind).unwrap_or_else(|e| panic!("listen on {bind}: {e}")),
        );
        let addr = server.server_addr().to_ip().expect("an IP address");
        let state = Arc::new(Mutex::new(State {
            answer: Some(Answer::Store),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) =
                (Arc::clone(&server), Arc::clone(&state), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => serve(request, &state),
                        Ok(None) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        Self {
            addr,
            state,
            server,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://ADDR:PORT/v1/logs`.
    pub fn url(&self) -> String {
        format!("http://{}/v1/logs", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, answer `answer`.
    pub fn answer(&self, answer: Answer) {
        if let Ok(mut s) = self.state.lock() {
            s.answer = Some(answer);
        }
    }

    /// Every record stored (once each), in arrival order.
    pub fn records(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| {
                s.order
                    .iter()
                    .filter_map(|id| s.records.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Copies of stored records that arrived again (a retry after a lost answer).
    pub fn duplicates(&self) -> u64 {
        self.state.lock().map(|s| s.duplicates).unwrap_or(0)
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().map(|s| s.requests).unwrap_or(0)
    }

    /// Request body bytes received in all.
    pub fn bytes(&self) -> u64 {
        self.state.lock().map(|s| s.bytes).unwrap_or(0)
    }

    /// (Content-Type, Content-Encoding) of each request.
    pub fn content(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .map(|s| s.content.clone())
            .unwrap_or_default()
    }

    /// The Authorization header of each request.
    pub fn auth(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.auth.clone())
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(request: &tiny_http::Request, name: &str) -> String {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_owned())
        .unwrap_or_default()
}

fn serve(mut request: tiny_http::Request, state: &Mutex<State>) {
    let content_type = header(&request, "Content-Type");
    let encoding = header(&request, "Content-Encoding");
    let auth = header(&request, "Authorization");
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let answer = {
        let Ok(mut s) = state.lock() else { return };
        s.requests += 1;
        s.bytes += body.len() as u64;
        s.content.push((content_type.clone(), encoding.clone()));
        s.auth.push(auth);
        s.answer.unwrap_or(Answer::Store)
    };
    match answer {
        Answer::Hangup => return drop(request.into_writer()),
        Answer::Status(code) => return respond(request, code, b"not now".to_vec(), true),
        Answer::Store | Answer::Garbage => {}
    }
    if encoding == "gzip" {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut plain)
            .is_err()
        {
            return respond(request, 400, b"bad gzip".to_vec(), true);
        }
        body = plain;
    }
    let json = content_type.starts_with("application/json");
    let decoded = if json {
        serde_json::from_slice::<ExportLogsServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        ExportLogsServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string())
    };
    let Ok(req) = decoded else {
        return respond(request, 400, b"malformed".to_vec(), true);
    };
    if let Ok(mut s) = state.lock() {
        for rl in &req.resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let attributes = attrs(&r.attributes);
                    let id = attributes
                        .get("guard.record.id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if s.records.contains_key(&id) {
                        s.duplicates += 1;
                        continue;
                    }
                    s.order.push(id.clone());
                    s.records.insert(
                        id.clone(),
                        Received {
                            id,
                            event_name: r.event_name.clone(),
                            attributes,
                            resource: resource.clone(),
                            body: r.body.as_ref().map_or(Value::Null, any_json),
                            time_unix_nano: r.time_unix_nano,
                        },
                    );
                }
            }
        }
    }
    if answer == Answer::Garbage {
        return respond(request, 200, b"\xff\x00not a response".to_vec(), false);
    }
    let reply = ExportLogsServiceResponse::default();
    if json {
        respond(
            request,
            200,
            serde_json::to_vec(&reply).unwrap_or_default(),
            true,
        );
    } else {
        respond(request, 200, reply.encode_to_vec(), false);
    }
}

fn respond(request: tiny_http::Request, status: u16, body: Vec<u8>, json: bool) {
    let mut response = tiny_http::Response::from_data(body).with_status_code(status);
    let ct = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], ct.as_bytes()) {
        response = response.with_header(h);
    }
    let _ = request.respond(response);
}

/// Waits (up to `timeout`) until `done` holds of the receiver's records.
pub fn wait_for(
    receiver: &Receiver,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let _w = watch::waiting(what);
    let start = std::time::Instant::now();
    loop {
        let records = receiver.records();
        if done(&records) {
            return records;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}: {} records, {} requests\n{}",
            records.len(),
            receiver.requests(),
            watch::state()
        );
        thread::sleep(Duration::from_millis(100));
    }
}
