//! How loading a ~1 MB guest affects other clients: one client sends PING in a loop and records
//! each round trip while another loads the guest — compiled in the background (a normal
//! `WASM.LOAD`, and a `WASM.RESTORE`), then compiled inline (the same load inside MULTI, where
//! the client cannot block).
//!
//! Run: `cargo run --release -p redis-wasm-tests --bin load_latency`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_wasm_tests::{Client, Reply, Server, guests};

/// Pings until `stop`, returning the slowest round trip.
fn pinger(port: u16, stop: Arc<AtomicBool>, worst: Arc<Mutex<Duration>>) {
    let mut c = Client::connect(port).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
        let took = started.elapsed();
        let mut w = worst.lock().unwrap();
        *w = (*w).max(took);
    }
}

/// Runs `load` while pinging; returns (how long the load took, the worst ping).
fn measure(server: &Server, load: impl FnOnce()) -> (Duration, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let handle = {
        let (stop, worst, port) = (stop.clone(), worst.clone(), server.port);
        std::thread::spawn(move || pinger(port, stop, worst))
    };
    std::thread::sleep(Duration::from_millis(200));
    *worst.lock().unwrap() = Duration::ZERO;
    let started = Instant::now();
    load();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    let worst = *worst.lock().unwrap();
    (took, worst)
}

fn main() {
    let server = Server::start();
    let module = std::fs::read(guests::BIG).unwrap();
    let mut c = server.client();
    let (idle_took, idle_worst) =
        measure(&server, || std::thread::sleep(Duration::from_millis(500)));
    // Three background loads: the machine's own noise varies from run to run.
    let background: Vec<(Duration, Duration)> = (0..3)
        .map(|_| {
            let measured = measure(&server, || {
                assert_eq!(
                    c.cmd_bytes(&[b"WASM.LOAD", &module]),
                    Reply::Bulk(b"big".to_vec())
                );
            });
            c.cmd(&["WASM.UNLOAD", "big"]);
            measured
        })
        .collect();
    // A restore compiles in the background too: FLUSH starts every guest again.
    c.cmd_bytes(&[b"WASM.LOAD", &module]);
    let Reply::Bulk(payload) = c.cmd(&["WASM.DUMP"]) else {
        panic!("no WASM.DUMP payload")
    };
    let (restore_took, restore_worst) = measure(&server, || {
        assert_eq!(
            c.cmd_bytes(&[b"WASM.RESTORE", b"FLUSH", &payload]),
            Reply::Status("OK".into())
        );
    });
    c.cmd(&["WASM.UNLOAD", "big"]);
    let (inline_took, inline_worst) = measure(&server, || {
        c.cmd(&["MULTI"]);
        c.cmd_bytes(&[b"WASM.LOAD", &module]);
        assert_eq!(c.cmd(&["EXEC"]).array()[0], Reply::Bulk(b"big".to_vec()));
    });
    println!("module: {} bytes", module.len());
    println!("| load | load time | slowest PING of another client |");
    println!("|---|---:|---:|");
    println!(
        "| none (idle, {} ms) | - | {:.2} ms |",
        idle_took.as_millis(),
        idle_worst.as_secs_f64() * 1e3
    );
    for (i, (took, worst)) in background.iter().enumerate() {
        println!(
            "| WASM.LOAD (compiled in the background), run {} | {:.0} ms | {:.2} ms |",
            i + 1,
            took.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
    println!(
        "| WASM.RESTORE FLUSH of its WASM.DUMP (compiled in the background) | {:.0} ms | {:.2} ms |",
        restore_took.as_secs_f64() * 1e3,
        restore_worst.as_secs_f64() * 1e3
    );
    println!(
        "| WASM.LOAD in MULTI (compiled inline) | {:.0} ms | {:.2} ms |",
        inline_took.as_secs_f64() * 1e3,
        inline_worst.as_secs_f64() * 1e3
    );
    let memory = c.cmd(&["INFO", "wasm"]).text();
    println!(
        "{}",
        memory
            .lines()
            .find(|l| l.contains("guest_big"))
            .unwrap_or("")
    );
}
