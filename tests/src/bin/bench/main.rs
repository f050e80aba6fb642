//! The benchmark suite: the same logic as a native module (`benchmarks/native`), a guest
//! (`tests/guests/bench`) and Lua (`benchmarks/bench.lua`), side by side in one server.
//!
//! For each case and runtime it resets `INFO commandstats`, drives the command with
//! `redis-benchmark` (pipelined), and reports the server time per call (`usec_per_call`) and the
//! throughput: the median of [`ROUNDS`] rounds that take turns between the runtimes, so a noisy
//! stretch of the machine slows all three instead of one; the ratios are the medians of each
//! round's ratios. The 1 MB echo cannot be given to `redis-benchmark` (a command-line argument is
//! limited to 128 KB), so it is driven by this program, pipelined the same way.
//!
//! Run: `scripts/bench.sh` (or `cargo run --release -p redis-wasm-tests --bin bench`). With
//! `--instructions`, counts instructions per call instead (see `instructions.rs`); with
//! `--train`, runs the workload profile-guided optimization learns from (see `train.rs`).

mod instructions;
mod train;

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use redis_wasm_tests::{
    Client, Reply, Server, ServerOptions, context_switches, guests, native_library,
};

const LUA: &str = include_str!("../../../../benchmarks/bench.lua");

struct Case {
    name: &'static str,
    what: &'static str,
    /// Arguments after the command name; `{key}` is replaced per runtime.
    args: &'static [&'static str],
    keys: usize,
    calls: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "int",
        what: "reply an integer",
        args: &[],
        keys: 0,
        calls: 400_000,
    },
    Case {
        name: "rmw",
        what: "low-level read-modify-write of a counter",
        args: &["{key}"],
        keys: 1,
        calls: 400_000,
    },
    Case {
        name: "rmwfx",
        what: "read-modify-write, replicated as its effect (`SET`, the guest default)",
        args: &["{key}"],
        keys: 1,
        calls: 400_000,
    },
    Case {
        name: "incr",
        what: "call INCR",
        args: &["{key}"],
        keys: 1,
        calls: 400_000,
    },
    Case {
        name: "push",
        what: "list push and length",
        args: &["{key}", "element"],
        keys: 1,
        calls: 400_000,
    },
    Case {
        name: "hset",
        what: "set 10 fields of a hash (21 arguments)",
        args: &[
            "{key}", "f1", "v1", "f2", "v2", "f3", "v3", "f4", "v4", "f5", "v5", "f6", "v6", "f7",
            "v7", "f8", "v8", "f9", "v9", "f10", "v10",
        ],
        keys: 1,
        calls: 200_000,
    },
    Case {
        name: "zsum",
        what: "sum of a 100-member sorted-set range",
        args: &["bench:zset"],
        keys: 1,
        calls: 100_000,
    },
    Case {
        name: "lsum",
        what: "sum of a 100-element list of integers",
        args: &["bench:list"],
        keys: 1,
        calls: 100_000,
    },
    Case {
        name: "hsum",
        what: "sum of a 100-field hash's values (a scan)",
        args: &["bench:hash"],
        keys: 1,
        calls: 100_000,
    },
    Case {
        name: "lrange",
        what: "call LRANGE on a 100-element list and sum it",
        args: &["bench:list"],
        keys: 1,
        calls: 100_000,
    },
    Case {
        name: "loop",
        what: "CPU loop: 10,000 rounds of xorshift",
        args: &[],
        keys: 0,
        calls: 2_000,
    },
    Case {
        name: "echo",
        what: "echo of a 1 MB value",
        args: &["{1mb}"],
        keys: 0,
        calls: 2_000,
    },
    Case {
        name: "array",
        what: "a 100-element array reply",
        args: &[],
        keys: 0,
        calls: 200_000,
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    Native,
    Guest,
    Lua,
}

impl Runtime {
    /// The start of the command names its calls are counted under in `INFO commandstats`.
    fn stats_prefix(self) -> &'static str {
        match self {
            Runtime::Native => "nb.",
            Runtime::Guest => "wasm.invoke",
            Runtime::Lua => "evalsha",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Runtime::Native => "native",
            Runtime::Guest => "wasm",
            Runtime::Lua => "lua",
        }
    }
}

fn lua_scripts() -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in LUA.lines() {
        if let Some(name) = line.strip_prefix("-- case: ") {
            scripts.extend(current.take());
            current = Some((name.to_owned(), String::new()));
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    scripts.extend(current);
    scripts
}

/// The command line for one case and runtime.
fn command(case: &Case, runtime: Runtime, sha: &str, value: &str) -> Vec<String> {
    let key = format!("bench:{}:{}", case.name, runtime.label());
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| match *a {
            "{key}" => key.clone(),
            "{1mb}" => value.to_owned(),
            other => other.to_owned(),
        })
        .collect();
    match runtime {
        Runtime::Native => [format!("NB.{}", case.name.to_uppercase())]
            .into_iter()
            .chain(args)
            .collect(),
        Runtime::Guest => [format!("BG.{}", case.name.to_uppercase())]
            .into_iter()
            .chain(args)
            .collect(),
        Runtime::Lua => {
            let mut line = vec!["EVALSHA".to_owned(), sha.to_owned(), case.keys.to_string()];
            line.extend(args);
            line
        }
    }
}

/// `usec_per_call` of the command that ran (the busiest whose name starts with `prefix`; the
/// commands it called through `call` have their own rows), from INFO commandstats.
fn usec_per_call(client: &mut Client, prefix: &str) -> f64 {
    let stats = client.cmd(&["INFO", "commandstats"]).text();
    let mut best = (0u64, 0.0);
    for line in stats.lines() {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let Some(command) = name.strip_prefix("cmdstat_") else {
            continue;
        };
        if !command.starts_with(prefix) {
            continue;
        }
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let calls = field("calls=").unwrap_or(0.0) as u64;
        if calls > best.0 {
            best = (calls, field("usec_per_call=").unwrap_or(0.0));
        }
    }
    best.1
}

/// Runs `calls` commands with redis-benchmark: 50 clients, 16 deep. Returns requests per second.
fn redis_benchmark(port: u16, calls: usize, line: &[String]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-n",
            &calls.to_string(),
            "-c",
            "50",
            "-P",
            "16",
            "-q",
        ])
        .args(line)
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.rsplit('\r').next().unwrap_or(&text).to_owned();
    last.split_whitespace()
        .zip(last.split_whitespace().skip(1))
        .find(|(_, unit)| *unit == "requests")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read redis-benchmark's output: {text}"))
}

/// Runs `calls` commands on 4 connections, 16 deep. Returns requests per second.
fn pipelined(port: u16, calls: usize, line: &[String]) -> f64 {
    let args: Vec<&[u8]> = line.iter().map(|a| a.as_bytes()).collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut client = Client::connect(port).unwrap();
                let mut left = calls / 4;
                while left > 0 {
                    let batch = left.min(16);
                    for _ in 0..batch {
                        client.send(&args);
                    }
                    for _ in 0..batch {
                        assert!(!client.read().is_error());
                    }
                    left -= batch;
                }
            });
        }
    });
    calls as f64 / started.elapsed().as_secs_f64()
}

/// Rounds per case; each runs a fifth of the case's calls on each runtime in turn.
const ROUNDS: usize = 5;

/// The median of a few measurements.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts a server with the host, the bench guest and the native twin, loads the Lua twins and
/// the data the cases read. Returns it, a client, each case's script SHA, and the 1 MB value.
fn prepare_server(mut options: ServerOptions) -> (Server, Client, HashMap<String, String>, String) {
    options.module_args = vec!["LOAD".into(), guests::BENCH_GUEST.into()];
    options
        .config
        .push(("maxmemory-policy".into(), "noeviction".into()));
    let server = Server::start_with(options);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["MODULE", "LOAD", native_library().to_str().unwrap()]),
        Reply::Status("OK".into())
    );
    let shas = lua_scripts()
        .into_iter()
        .map(|(name, body)| (name, c.cmd(&["SCRIPT", "LOAD", &body]).text()))
        .collect();
    let value = "v".repeat(1 << 20);
    for i in 0..100 {
        c.cmd(&["RPUSH", "bench:list", &i.to_string()]);
        c.cmd(&[
            "ZADD",
            "bench:zset",
            &format!("{}.5", i),
            &format!("member{i}"),
        ]);
        c.cmd(&["HSET", "bench:hash", &format!("field{i}"), &i.to_string()]);
    }
    (server, c, shas, value)
}

/// Runs `calls` of a case's command line. Returns requests per second.
fn drive(case: &Case, port: u16, calls: usize, line: &[String]) -> f64 {
    if case.name == "echo" {
        pipelined(port, calls, line)
    } else {
        redis_benchmark(port, calls, line)
    }
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    if only.first().is_some_and(|a| a == "--instructions") {
        instructions::run(&only[1..]);
        return;
    }
    if only.first().is_some_and(|a| a == "--train") {
        train::run();
        return;
    }
    let (server, mut c, shas, value) = prepare_server(ServerOptions::default());

    println!(
        "| case | native µs/call | wasm µs/call | Lua µs/call | wasm / native | wasm / Lua | native req/s | wasm req/s | Lua req/s | wasm / native req/s | wasm / Lua req/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in CASES
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
    {
        let sha = &shas[case.name];
        let runtimes = [Runtime::Native, Runtime::Guest, Runtime::Lua];
        let lines: Vec<Vec<String>> = runtimes
            .iter()
            .map(|&runtime| command(case, runtime, sha, &value))
            .collect();
        let mut answers = Vec::new();
        for (runtime, line) in runtimes.iter().zip(&lines) {
            let args: Vec<&str> = line.iter().map(String::as_str).collect();
            c.cmd(&["DEL", &format!("bench:{}:{}", case.name, runtime.label())]);
            answers.push(match c.cmd(&args) {
                Reply::Bulk(b) if b.len() > 64 => Reply::Int(b.len() as i64),
                other => other,
            });
            c.cmd(&["DEL", &format!("bench:{}:{}", case.name, runtime.label())]);
        }
        let mut rounds: Vec<Vec<(f64, f64)>> = vec![Vec::new(); runtimes.len()];
        let calls = (case.calls / ROUNDS).max(1);
        for _ in 0..ROUNDS {
            for (i, (runtime, line)) in runtimes.iter().zip(&lines).enumerate() {
                c.cmd(&["CONFIG", "RESETSTAT"]);
                let throughput = drive(case, server.port, calls, line);
                rounds[i].push((usec_per_call(&mut c, runtime.stats_prefix()), throughput));
            }
        }
        let results: Vec<(f64, f64)> = rounds
            .iter()
            .map(|runs| {
                let usec = median(runs.iter().map(|r| r.0).collect());
                let throughput = median(runs.iter().map(|r| r.1).collect());
                (usec, throughput)
            })
            .collect();
        // Ratios are taken within each round, where the runtimes ran seconds apart, and their
        // median reported: the machine's slow and fast stretches move all three together.
        let ratio = |of: usize, to: usize, field: fn(&(f64, f64)) -> f64| {
            median(
                rounds[of]
                    .iter()
                    .zip(&rounds[to])
                    .map(|(a, b)| field(a) / field(b))
                    .collect(),
            )
        };
        let usec = |r: &(f64, f64)| r.0;
        let rate = |r: &(f64, f64)| r.1;
        // The three runtimes must compute the same thing (doubles may differ in formatting).
        let same = answers.iter().all(|a| a.clone() == answers[0].clone()) || case.name == "zsum";
        assert!(
            same,
            "case {} gives different answers: {answers:?}",
            case.name
        );
        let (n, w, l) = (results[0], results[1], results[2]);
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2}x | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            case.what,
            n.0,
            w.0,
            l.0,
            ratio(1, 0, usec),
            ratio(1, 2, usec),
            n.1,
            w.1,
            l.1,
            ratio(1, 0, rate),
            ratio(1, 2, rate)
        );
    }
    if only.is_empty() {
        host_call_costs(&mut c, server.port);
        host_overhead(&server);
    }
    let info = c.cmd(&["INFO", "wasm"]).text();
    let memory = info
        .lines()
        .find_map(|l| l.strip_prefix("wasm_guest_bench:"))
        .unwrap_or("")
        .to_owned();
    println!("\nbench guest: {memory}");

    println!(
        "\n| guest | module bytes | compiled code | linear memory | host heap (`used_memory`) | RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, path) in [("helloworld", guests::HELLOWORLD), ("hello", guests::HELLO)] {
        memory_cost(&mut c, name, path);
    }
}

/// What one host call costs a guest: commands that make one kind of call 1,000 times, less the
/// same command making none, over 1,000.
fn host_call_costs(c: &mut Client, port: u16) {
    const N: usize = 1000;
    c.cmd(&["SET", "bench:string", "12345"]);
    println!("\n| host call (made 1,000 times in one command) | µs per call |");
    println!("|---|---:|");
    for (what, command, key) in [
        (
            "`get-selected-db` (no arguments, a number back)",
            "BG.CALLS-DB",
            None,
        ),
        (
            "`value-length` of an open key",
            "BG.CALLS-LEN",
            Some("bench:string"),
        ),
        (
            "`string-read` of a 5-byte string (bytes back)",
            "BG.CALLS-GET",
            Some("bench:string"),
        ),
        (
            "`open-key` and `close-key` (two calls)",
            "BG.CALLS-OPEN",
            Some("bench:string"),
        ),
    ] {
        let mut per_command = |n: usize| {
            let mut line = vec![command.to_owned()];
            line.extend(key.map(str::to_owned));
            line.push(n.to_string());
            let args: Vec<&str> = line.iter().map(String::as_str).collect();
            assert!(!c.cmd(&args).is_error(), "{command} answers");
            let runs = (0..ROUNDS)
                .map(|_| {
                    c.cmd(&["CONFIG", "RESETSTAT"]);
                    redis_benchmark(port, 2_000, &line);
                    usec_per_call(c, Runtime::Guest.stats_prefix())
                })
                .collect();
            median(runs)
        };
        let cost = (per_command(N) - per_command(0)) / N as f64;
        println!("| {what} | {cost:.3} |");
    }
}

/// The CPU time (in clock ticks) and context switches of a process so far, over all its threads.
fn process_activity(pid: u32) -> (u64, u64) {
    let mut activity = (0, 0);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After the command name (which may hold spaces) comes field 3, the state: utime and
        // stime, fields 14 and 15, are then at 11 and 12.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        activity.0 += ticks(11) + ticks(12);
        activity.1 += context_switches(&task.path());
    }
    activity
}

/// What the host costs the rest of the server, against a server without it: the throughput of
/// plain `GET` and `SET` (every command passes the host's command filter), and the CPU and
/// wakeups of an idle server.
fn host_overhead(with_host: &Server) {
    let without_host = Server::start_with(ServerOptions {
        without_host: true,
        ..Default::default()
    });
    println!("\n| the rest of the server | without the host | with the host and guests | ratio |");
    println!("|---|---:|---:|---:|");
    for command in ["get", "set"] {
        let line = ["-t".to_owned(), command.to_owned()];
        let mut rounds = (Vec::new(), Vec::new());
        for _ in 0..5 {
            rounds
                .0
                .push(redis_benchmark(without_host.port, 300_000, &line));
            rounds
                .1
                .push(redis_benchmark(with_host.port, 300_000, &line));
        }
        let (without, with) = (median(rounds.0), median(rounds.1));
        println!(
            "| `{}` requests per second | {without:.0} | {with:.0} | {:.2}x |",
            command.to_uppercase(),
            with / without
        );
    }
    // Both idle over the same five seconds, starting well over 100 epoch ticks after the last
    // guest command.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pids = [without_host.pid(), with_host.pid()];
    let before = pids.map(process_activity);
    let window = std::time::Duration::from_secs(5);
    std::thread::sleep(window);
    let after = pids.map(process_activity);
    let tick_ms = 1000.0 / 100.0; // USER_HZ
    let per_second = |i: usize, pick: fn((u64, u64)) -> u64, scale: f64| {
        (pick(after[i]) - pick(before[i])) as f64 * scale / window.as_secs_f64()
    };
    let cpu = [0, 1].map(|i| per_second(i, |a| a.0, tick_ms));
    let switches = [0, 1].map(|i| per_second(i, |a| a.1, 1.0));
    println!(
        "| idle: CPU ms per second | {:.1} | {:.1} | - |",
        cpu[0], cpu[1]
    );
    println!(
        "| idle: context switches per second | {:.0} | {:.0} | {:.2}x |",
        switches[0],
        switches[1],
        switches[1] / switches[0]
    );
}

/// What loading one guest costs: its code, its instance's linear memory, and how much Redis's
/// heap (`used_memory`, where the host's own allocations are counted) and the process (RSS) grew.
fn memory_cost(c: &mut Client, name: &str, path: &str) {
    let field = |c: &mut Client, section: &str, key: &str| -> i64 {
        c.cmd(&["INFO", section])
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = (
        field(c, "memory", "used_memory"),
        field(c, "memory", "used_memory_rss"),
    );
    assert!(!c.cmd(&["WASM.LOAD", path]).is_error(), "{name} loads");
    let after = (
        field(c, "memory", "used_memory"),
        field(c, "memory", "used_memory_rss"),
    );
    let stats = c.cmd(&["INFO", "wasm"]).text();
    let guest_field = |key: &str| -> i64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("wasm_guest_{name}:")))
            .and_then(|fields| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(&format!("{key}=")))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let module_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "| {name} | {module_bytes} | {} | {} | {} | {} |",
        guest_field("code"),
        guest_field("memory"),
        after.0 - before.0,
        // RSS moves in allocator-sized steps and can even shrink across a load.
        (after.1 - before.1).max(0)
    );
    c.cmd(&["WASM.UNLOAD", name]);
}
