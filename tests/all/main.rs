//! Integration tests against a real redis-server with the host loaded.
//! Each test starts its own server (see `redis_wasm_tests::Server`).
//!
//! - `foundation` — loading, unloading, listing, routing, replies, help.
//! - `module_api` — the Modules API as guests see it: keys, calls, replies, replication.
//! - `sandbox` — runaway guests, memory and stack limits, refused imports, fault injection.
//! - `persistence` — guests in RDB/AOF, replicas, `WASM.DUMP`/`WASM.RESTORE`.
//! - `data_types`, `blocking`, `cluster` — guest data types, blocking commands, cluster mode.
//! - `hello` — the example guests in `examples/`.
//! - `benchmarks` — the benchmark twins agree and replicate alike.

mod benchmarks;
mod blocking;
mod cluster;
mod data_types;
mod foundation;
mod hello;
mod module_api;
mod persistence;
mod sandbox;

/// Every guest the build compiles must be used by some test: adding a guest without a test fails.
#[test]
fn every_test_guest_is_used() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("all");
    let mut sources = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        sources.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for (constant, _) in redis_wasm_tests::guests::ALL {
        assert!(
            sources.contains(&format!("guests::{constant}")),
            "guest {constant} is built but no test uses it"
        );
    }
}
