//! guard's root end-to-end tests, in one binary: each file is a module here (run
//! one with `-E 'test(/^MODULE::/)'`), so the harness and the dependencies are
//! compiled and linked once for all of them, not once per file.

mod agents;
mod codex;
mod containers;
mod daemon;
mod delegation;
mod deny;
mod deploy;
mod digest;
mod dns;
mod egress;
mod export;
mod files;
mod fleet_policy;
mod identity;
mod landlock;
mod metrics;
mod net;
mod packages;
mod policy;
mod redteam;
mod repeats;
mod report;
mod resolver;
mod roles;
mod routes;
mod run;
mod sandbox;
mod scan;
mod storm;
mod survive;
mod taint;
mod tamper;
mod top;
mod tree;
mod unix;
