//! guard's fleet server: one place where a security team sees every agent session
//! of the organisation (docs/fleet.md).
//!
//! Data flows one way:
//!
//! ```text
//! host ──OTLP/HTTP──▶ auth ─▶ ingest (decode ─▶ validate) ─▶ store::write ──▶ database
//! database ─▶ store::read ─▶ web (pages, charts, JSON API) ─▶ browser, client (CLI)
//! database ─▶ store::alerts (the outbox) ─▶ alerts ─▶ webhooks, Slack, Teams, PagerDuty
//! ```
//!
//! - [`config`]: the TOML file and its checks;
//! - [`auth`]: tokens, client certificates, the proxy's header: who is talking;
//! - [`ingest`]: `POST /v1/logs`, bytes to checked rows;
//! - [`store`]: PostgreSQL or SQLite through one query layer; migrations, writes,
//!   reads, retention;
//! - [`web`]: the dashboard and its JSON API;
//! - [`alerts`]: `[alerts]` rules' messages, delivered from the outbox;
//! - [`server`]: all of it behind one listener;
//! - [`client`]: the CLI's view of the API.

pub mod alerts;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod ingest;
pub mod policy;
pub mod server;
pub mod signing;
pub mod store;
pub mod web;

/// Real OTLP requests as hosts build them, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/fleet/support/records.rs"]
mod records;
