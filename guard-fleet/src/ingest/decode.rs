//! Bytes on the wire → an `ExportLogsServiceRequest`, and the answer back in the
//! request's own encoding (OTLP/HTTP: binary protobuf or its JSON mapping, either
//! possibly gzipped).

use std::io::Read as _;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;

/// How a request's body (and so its answer) is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The `Content-Type` of this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("content type `{0}` is not application/x-protobuf or application/json")]
    ContentType(String),
    #[error("content encoding `{0}` is not gzip or identity")]
    ContentEncoding(String),
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the decompressed body is larger than {limit} bytes")]
    TooLargeDecompressed { limit: usize },
    #[error("the body is not valid gzip")]
    Gzip(#[source] std::io::Error),
    #[error("the body is not an ExportLogsServiceRequest")]
    Protobuf(#[source] prost::DecodeError),
    #[error("the body is not an ExportLogsServiceRequest in OTLP's JSON mapping")]
    Json(#[source] serde_json::Error),
}

/// The encoding a `Content-Type` names (parameters such as `charset` ignored).
pub fn encoding(content_type: Option<&str>) -> Result<Encoding, DecodeError> {
    let full = content_type.unwrap_or("");
    let essence = full.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(Encoding::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(DecodeError::ContentType(full.chars().take(100).collect()))
    }
}

/// Whether a `Content-Encoding` says gzip (`None`: identity).
pub fn gzipped(content_encoding: Option<&str>) -> Result<bool, DecodeError> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => Ok(true),
        Some(e) => Err(DecodeError::ContentEncoding(e.chars().take(100).collect())),
    }
}

/// Gunzips `body`, stopping past `limit` bytes of output: a small body that would
/// inflate to gigabytes costs at most `limit + 1` bytes of memory.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let decoder = flate2::read::MultiGzDecoder::new(body);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(DecodeError::Gzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLargeDecompressed { limit });
    }
    Ok(out)
}

/// The request in `bytes`.
pub fn decode(encoding: Encoding, bytes: &[u8]) -> Result<ExportLogsServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => {
            ExportLogsServiceRequest::decode(bytes).map_err(DecodeError::Protobuf)
        }
        Encoding::Json => serde_json::from_slice(bytes).map_err(DecodeError::Json),
    }
}

/// The success answer, with the records skipped as invalid counted.
pub fn response(encoding: Encoding, rejected: u64, message: &str) -> Vec<u8> {
    let partial = rejected > 0 || !message.is_empty();
    let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
    match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse {
            partial_success: partial.then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec(),
        // OTLP's JSON mapping writes an int64 as a decimal string.
        Encoding::Json if partial => serde_json::json!({"partialSuccess": {
            "rejectedLogRecords": rejected.to_string(),
            "errorMessage": message,
        }})
        .to_string()
        .into_bytes(),
        Encoding::Json => b"{}".to_vec(),
    }
}

/// `google.rpc.Status`: the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error answer's body (a `Status` with its message) in `encoding`.
pub fn status(encoding: Encoding, code: i32, message: &str) -> Vec<u8> {
    let s = Status {
        code,
        message: message.to_owned(),
    };
    match encoding {
        Encoding::Protobuf => s.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&s).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).expect("gzip");
        gz.finish().expect("gzip")
    }

    #[test]
    fn content_types_and_encodings() {
        assert_eq!(
            encoding(Some("application/x-protobuf")).ok(),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            encoding(Some("Application/JSON; charset=utf-8")).ok(),
            Some(Encoding::Json)
        );
        assert!(matches!(
            encoding(Some("text/plain")),
            Err(DecodeError::ContentType(_))
        ));
        assert!(matches!(encoding(None), Err(DecodeError::ContentType(_))));
        assert_eq!(gzipped(None).ok(), Some(false));
        assert_eq!(gzipped(Some("gzip")).ok(), Some(true));
        assert!(matches!(
            gzipped(Some("br")),
            Err(DecodeError::ContentEncoding(_))
        ));
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        assert!(matches!(
            gunzip(&bomb, 1 << 20),
            Err(DecodeError::TooLargeDecompressed { limit }) if limit == 1 << 20
        ));
        assert_eq!(
            gunzip(&gzip(b"hello"), 5).expect("fits").as_slice(),
            b"hello"
        );
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(DecodeError::Gzip(_))
        ));
    }

    #[test]
    fn answers_carry_partial_success_in_the_request_encoding() {
        let pb = response(Encoding::Protobuf, 2, "2 records rejected");
        let back = ExportLogsServiceResponse::decode(pb.as_slice()).expect("decode");
        let ps = back.partial_success.expect("partial");
        assert_eq!(ps.rejected_log_records, 2);
        let json: serde_json::Value =
            serde_json::from_slice(&response(Encoding::Json, 1, "x")).expect("json");
        assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "1");
        assert!(
            response(Encoding::Protobuf, 0, "").is_empty(),
            "full success: empty message"
        );
        let st = Status::decode(status(Encoding::Protobuf, 16, "no").as_slice()).expect("status");
        assert_eq!((st.code, st.message.as_str()), (16, "no"));
    }
}
