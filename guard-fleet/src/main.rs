//! `guard-fleet`: the fleet server (work in progress).

fn main() {}
