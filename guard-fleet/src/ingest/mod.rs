//! OTLP/HTTP logs from guard hosts: bytes → a request ([`decode`]) → checked rows
//! ([`validate`], [`batch`]).

pub mod batch;
pub mod decode;
pub mod validate;
