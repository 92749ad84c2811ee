//! One batch to the endpoint: an `ExportLogsServiceRequest` over HTTP (protobuf or
//! JSON, gzip'd unless told not to), and what the answer means for the records in
//! it (OTLP/HTTP's rules, docs/export.md "Delivery").

use std::time::Duration;

use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::policy::model::{Export, ExportProtocol};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no [export] endpoint")]
    NoEndpoint,
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM")]
    Pem {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("header {name}: {why}")]
    Header { name: String, why: String },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// What the endpoint's answer (or its silence) means for the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Stored (2xx): the records leave the spool; `rejected` of them the receiver
    /// said it could not take (OTLP partial success), with its message.
    Stored { rejected: u64, message: String },
    /// Not now (connection refused, timeout, 429, 5xx, 401/403): sent again after
    /// `after` (or the back-off), the records stay.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// 413: too big; the caller splits the batch (a single record is refused).
    TooLarge,
    /// 400 (or another 4xx): the receiver will never take this batch; its records
    /// are dropped and counted.
    Refused { why: String },
}

/// The HTTP side of the export, built from `[export]`.
pub struct Sender {
    client: reqwest::Client,
    endpoint: String,
    headers: HeaderMap,
    protocol: ExportProtocol,
    gzip: bool,
}

/// `${VAR}` in `text` replaced by the daemon's environment (an unset variable is
/// an error: a header with a hole would fail every request).
fn expand(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let var = &after[..end];
        let value = std::env::var(var)
            .map_err(|_| format!("${{{var}}} is not set in the daemon's environment"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The HTTP client and headers `[export]` describes (its CA, client certificate,
/// headers and token): how this host reaches the fleet, for the export and for
/// the policy it pulls. Its files are read now.
pub fn connection(config: &Export) -> Result<(reqwest::Client, HeaderMap), Error> {
    // reqwest with rustls and no provider of its own: ring, once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("guard/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.ca_file {
        let pem = read("CA file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| Error::Pem {
            what: "CA file",
            path: ca.clone(),
            source,
        })?;
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
        let mut pem = read("client key", key)?;
        pem.extend(read("client certificate", cert)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|source| Error::Pem {
            what: "client certificate",
            path: cert.clone(),
            source,
        })?;
        builder = builder.identity(identity);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let header = |why: String| Error::Header {
            name: name.clone(),
            why,
        };
        let value = expand(value).map_err(header)?;
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| header(e.to_string()))?;
        let mut value = HeaderValue::from_str(&value).map_err(|e| header(e.to_string()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(path) = &config.token_file {
        let token = String::from_utf8_lossy(&read("token file", path)?)
            .trim()
            .to_owned();
        let mut value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| Error::Header {
                name: "authorization".to_owned(),
                why: format!("the token in {}: {e}", path.display()),
            })?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok((builder.build().map_err(Error::Client)?, headers))
}

impl Sender {
    /// A sender for `config`: its files are read now, so a missing CA or key is an
    /// error at start-up (or reload), not a failure at every batch.
    pub fn new(config: &Export, endpoint: Option<&str>) -> Result<Self, Error> {
        let endpoint = endpoint
            .or(config.endpoint.as_deref())
            .ok_or(Error::NoEndpoint)?
            .to_owned();
        let (client, headers) = connection(config)?;
        Ok(Self {
            client,
            endpoint,
            headers,
            protocol: config.protocol,
            gzip: config.gzip,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The request body for `records` (each an encoded `LogRecord`, as the spool
    /// holds it) under `resource`, as it goes on the wire (encoded, compressed), its
    /// content type, and how many records it carries (http/json drops a record that
    /// does not decode; none should).
    pub fn body(&self, resource: &Resource, records: &[&[u8]]) -> (Vec<u8>, &'static str, u64) {
        let (bytes, content_type, n) = match self.protocol {
            ExportProtocol::Protobuf => (
                encoded_request(resource, records),
                "application/x-protobuf",
                records.len() as u64,
            ),
            ExportProtocol::Json => {
                let records: Vec<LogRecord> = records
                    .iter()
                    .filter_map(|r| LogRecord::decode(*r).ok())
                    .collect();
                let n = records.len() as u64;
                // Serialising a request of plain messages cannot fail.
                let json = serde_json::to_vec(&request(resource.clone(), records));
                (json.unwrap_or_default(), "application/json", n)
            }
        };
        if !self.gzip {
            return (bytes, content_type, n);
        }
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(bytes.len() / 4),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&bytes);
        (gz.finish().unwrap_or_default(), content_type, n)
    }

    /// Sends one prepared body; says what became of it.
    pub async fn send(&self, body: Vec<u8>, content_type: &'static str) -> Sent {
        let mut request = self
            .client
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type);
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return Sent::Retry {
                    why: crate::ebpf::short_chain(&e),
                    after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        let text = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            // A body the receiver did not fill in (or garbage) still says: stored.
            let reply = if json {
                serde_json::from_slice::<ExportLogsServiceResponse>(&text).ok()
            } else {
                ExportLogsServiceResponse::decode(text.as_ref()).ok()
            };
            let (rejected, message) = reply
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_log_records.max(0) as u64, p.error_message))
                .unwrap_or_default();
            return Sent::Stored { rejected, message };
        }
        let why = format!(
            "{status}: {}",
            String::from_utf8_lossy(&text[..text.len().min(300)]).trim()
        );
        match status.as_u16() {
            413 => Sent::TooLarge,
            // Credentials can be fixed (a reload, a rotated secret): keep the records.
            401 | 403 | 408 | 429 => Sent::Retry {
                why,
                after: retry_after,
            },
            s if s >= 500 => Sent::Retry {
                why,
                after: retry_after,
            },
            _ => Sent::Refused { why },
        }
    }
}

/// One `ExportLogsServiceRequest` of `records` under `resource`.
fn request(resource: Resource, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(super::record::scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// [`request`] encoded, with `records` (each an encoded `LogRecord`) copied in as they
/// are: a repeated message field is each element's key, length and encoding in turn,
/// so the spooled records need no decoding and encoding again (a sixth of the
/// daemon's export work, measured 2026-11-28). Every message here is field 1 (the
/// resource logs, the resource, the scope) or field 2 (the scope logs, each record)
/// of its parent, as prost writes them.
fn encoded_request(resource: &Resource, records: &[&[u8]]) -> Vec<u8> {
    /// A length-delimited field's key (tags below 16 take one byte).
    const fn key(tag: u8) -> u8 {
        (tag << 3) | 2
    }
    let field = |len: usize| 1 + prost::length_delimiter_len(len) + len;
    let scope = super::record::scope();
    let scope_logs =
        field(scope.encoded_len()) + records.iter().map(|r| field(r.len())).sum::<usize>();
    let resource_logs = field(resource.encoded_len()) + field(scope_logs);
    let mut out = Vec::with_capacity(field(resource_logs));
    // Writing into a Vec cannot run out of room.
    let put = |tag: u8, len: usize, out: &mut Vec<u8>| {
        out.push(key(tag));
        let _ = prost::encode_length_delimiter(len, out);
    };
    put(1, resource_logs, &mut out);
    put(1, resource.encoded_len(), &mut out);
    resource.encode_raw(&mut out);
    put(2, scope_logs, &mut out);
    put(1, scope.encoded_len(), &mut out);
    scope.encode_raw(&mut out);
    for record in records {
        put(2, record.len(), &mut out);
        out.extend_from_slice(record);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body copied from the spool's records is the request prost encodes.
    #[test]
    fn spooled_records_go_into_the_request_as_they_are() {
        let resource = super::super::record::Host {
            name: "h".into(),
            id: "m".into(),
            ..Default::default()
        }
        .resource();
        let records: Vec<LogRecord> = (0..300)
            .map(|i| LogRecord {
                time_unix_nano: i,
                event_name: format!("guard.{}", "x".repeat(i as usize)),
                ..Default::default()
            })
            .collect();
        let encoded: Vec<Vec<u8>> = records.iter().map(prost::Message::encode_to_vec).collect();
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        assert_eq!(
            encoded_request(&resource, &slices),
            request(resource.clone(), records).encode_to_vec()
        );
        assert_eq!(
            encoded_request(&resource, &[]),
            request(resource, Vec::new()).encode_to_vec()
        );
    }

    #[test]
    fn headers_take_the_daemon_s_environment() {
        // SAFETY: tests in this module do not read the variable concurrently.
        unsafe { std::env::set_var("GUARD_TEST_EXPORT_TOKEN", "t0k3n") };
        assert_eq!(
            expand("Bearer ${GUARD_TEST_EXPORT_TOKEN}").as_deref(),
            Ok("Bearer t0k3n")
        );
        assert!(expand("Bearer ${GUARD_TEST_UNSET_VAR}").is_err());
        assert!(expand("Bearer ${oops").is_err());
        assert_eq!(expand("plain").as_deref(), Ok("plain"));
    }

    #[test]
    fn a_missing_ca_is_an_error_at_start() {
        let config = Export {
            endpoint: Some("https://fleet.example:4318/v1/logs".into()),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Export::default()
        };
        let err = Sender::new(&config, None).err().expect("an error");
        assert!(err.to_string().contains("CA file"), "{err}");
    }

    /// A receiver whose certificate (from a CA the export trusts) names another host:
    /// each send is a retry that says why, and nothing goes out in clear.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_certificate_for_another_name_is_a_retry_that_says_so() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca = CertificateParams::new(Vec::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["fleet.example".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("sign");
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
            )
            .expect("server config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Serves handshakes until the test ends; what a client sent after one would
        // land in `plain`.
        let plain = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let got = std::sync::Arc::clone(&plain);
        std::thread::spawn(move || {
            let server = std::sync::Arc::new(server);
            for stream in listener.incoming().map_while(Result::ok) {
                let conn = rustls::ServerConnection::new(std::sync::Arc::clone(&server))
                    .expect("connection");
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut buf = [0u8; 256];
                if let Ok(n) = std::io::Read::read(&mut tls, &mut buf) {
                    got.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write the CA");
        let config = Export {
            endpoint: Some(format!("https://127.0.0.1:{port}/v1/logs")),
            ca_file: Some(ca_file),
            ..Export::default()
        };
        let sender = Sender::new(&config, None).expect("a sender");
        match sender
            .send(b"records".to_vec(), "application/x-protobuf")
            .await
        {
            Sent::Retry { why, .. } => assert!(
                why.contains("certificate") && why.contains("127.0.0.1"),
                "{why}"
            ),
            other => panic!("sent to a server of another name: {other:?}"),
        }
        assert!(plain.lock().expect("lock").is_empty(), "data got through");
    }
}
