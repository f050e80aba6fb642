//! `bench --instructions`: the instructions each case executes per call, counted by valgrind's
//! callgrind instead of timed. The counts are the same on every run of the same build however
//! busy the machine is, so they show changes far below the timed table's noise, and they say
//! where a guest command's work runs: Redis, the host's own code, wasmtime, or compiled wasm.
//! Instructions are not time (an atomic or a cache miss costs more than one instruction), so
//! they complement the timed table rather than replace it.
//!
//! The server runs under `valgrind --tool=callgrind` with `hz 1` (so `serverCron` adds little).
//! For each case and runtime: a warm-up, then the counters are zeroed, the command is driven as
//! in the timed table, and the counts are dumped and read here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use redis_wasm_tests::{Server, ServerOptions};

use crate::{CASES, Runtime, command, drive, prepare_server};

/// Where an instruction ran.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    /// redis-server itself (Lua included).
    Redis,
    /// Shared libraries, whoever called them: the allocator (jemalloc, also the host's), libc
    /// (`memcpy` for everyone) and the dynamic linker (the host library's thread-local lookups).
    Libraries,
    /// The host's own code (and the `redis-module` crate and std inlined into it).
    Host,
    /// wasmtime's runtime, linked into the host.
    Wasmtime,
    /// Code compiled from wasm: the guest and wasmtime's trampolines into and out of it.
    CompiledWasm,
    /// The native twin module.
    Native,
}

const WASM_SPLIT: [Place; 5] = [
    Place::Redis,
    Place::Libraries,
    Place::Host,
    Place::Wasmtime,
    Place::CompiledWasm,
];

fn place(object: &str, file: &str, function: &str) -> Place {
    if object == "???" {
        // Code with no object file behind it: what wasmtime compiled.
        return Place::CompiledWasm;
    }
    if object.ends_with("libredis_wasm.so") {
        let wasmtime_source = file.contains("/wasmtime") || file.contains("/cranelift");
        // std and hashbrown code inlined somewhere: the function it landed in decides.
        let own_source = file.contains("/host/src/") || file.contains("/redis-module");
        return if wasmtime_source || (!own_source && function.starts_with("wasmtime")) {
            Place::Wasmtime
        } else {
            Place::Host
        };
    }
    if object.contains("native_baseline") {
        return Place::Native;
    }
    if object.contains("redis-server") || object.contains("redis-check-rdb") {
        // Debian's redis-server is a link to redis-check-rdb.
        return Place::Redis;
    }
    Place::Libraries
}

/// Self instructions in one callgrind dump, by place.
///
/// The format (valgrind's "Callgrind Format Specification"): `ob=`, `fl=`/`fi=`/`fe=` and `fn=`
/// set the object, source file and function that the following cost lines (`<line> <count>`)
/// belong to; names are compressed as `(id) name` the first time and `(id)` after, with `cob=`,
/// `cfi=`/`cfl=` and `cfn=` defining ids too. The cost line right after `calls=` is the call's
/// inclusive cost, already counted in the callee's own lines.
fn self_costs(dump: &str) -> HashMap<Place, u64> {
    let mut names: HashMap<(&str, &str), &str> = HashMap::new();
    let mut costs = HashMap::new();
    let (mut object, mut fl_file, mut file, mut function) = ("", "", "", "");
    let mut after_call = false;
    for line in dump.lines() {
        if let Some((key, value)) = line.split_once('=') {
            let kind = match key {
                "ob" | "cob" => "object",
                "fl" | "fi" | "fe" | "cfi" | "cfl" => "file",
                "fn" | "cfn" => "function",
                "calls" => {
                    after_call = true;
                    continue;
                }
                _ => continue,
            };
            let name = match value.strip_prefix('(').and_then(|v| v.split_once(')')) {
                Some((id, rest)) => {
                    let rest = rest.trim();
                    if !rest.is_empty() {
                        names.insert((kind, id), rest);
                    }
                    names.get(&(kind, id)).copied().unwrap_or("")
                }
                None => value.trim(),
            };
            match key {
                "ob" => object = name,
                "fl" => (fl_file, file) = (name, name),
                "fi" | "fe" => file = name,
                "fn" => (function, file) = (name, fl_file),
                _ => {}
            }
            continue;
        }
        let is_cost = line
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '*'));
        if !is_cost {
            continue;
        }
        if std::mem::take(&mut after_call) {
            continue;
        }
        let count: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *costs.entry(place(object, file, function)).or_default() += count;
    }
    costs
}

/// Runs `args` through `callgrind_control` for the server's process.
fn callgrind_control(server: &Server, args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(server.pid().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("callgrind_control (from valgrind) runs");
    assert!(status.success(), "callgrind_control {args:?} failed");
}

/// Waits for dump number `n` (`<out>.<n>`) to be complete, and returns its text.
fn read_dump(out: &Path, n: usize) -> String {
    let path = PathBuf::from(format!("{}.{n}", out.display()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.lines().any(|l| l.starts_with("totals:"))
        {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "callgrind wrote no {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn run(only: &[String]) {
    let dir = std::env::temp_dir().join(format!("redis-wasm-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for callgrind's dumps");
    let out = dir.join("callgrind.out");
    let mut valgrind = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    // More of callgrind's options, such as `--cache-sim=yes` (its dumps then count simulated
    // cache misses too; the table stays instructions).
    if let Ok(extra) = std::env::var("BENCH_VALGRIND_EXTRA") {
        valgrind.extend(extra.split_whitespace().map(str::to_owned));
    }
    let keep_dumps = std::env::var_os("BENCH_KEEP_DUMPS").is_some();
    let mut config = vec![("hz".into(), "1".into())];
    if keep_dumps {
        // Names for the dumps' bare addresses of compiled guest code.
        config.push(("wasm.perf-map".into(), "1".into()));
    }
    let (server, mut c, shas, value) = prepare_server(ServerOptions {
        run_under: valgrind,
        config,
        ..Default::default()
    });
    println!(
        "| case | native | wasm | Lua | wasm / native | wasm / Lua | wasm: Redis | wasm: libraries | wasm: host | wasm: wasmtime | wasm: compiled wasm |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut dumps = 0;
    for case in CASES
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
    {
        let sha = &shas[case.name];
        let calls = (case.calls / 20).max(100);
        let mut totals = Vec::new();
        let mut wasm_split = HashMap::new();
        for runtime in [Runtime::Native, Runtime::Guest, Runtime::Lua] {
            let line = command(case, runtime, sha, &value);
            c.cmd(&["DEL", &format!("bench:{}:{}", case.name, runtime.label())]);
            drive(case, server.port, calls / 10, &line);
            callgrind_control(&server, &["--zero"]);
            drive(case, server.port, calls, &line);
            callgrind_control(&server, &["--dump"]);
            dumps += 1;
            let costs = self_costs(&read_dump(&out, dumps));
            totals.push(costs.values().sum::<u64>() as f64 / calls as f64);
            if runtime == Runtime::Guest {
                wasm_split = costs;
            }
        }
        let (native, wasm, lua) = (totals[0], totals[1], totals[2]);
        let split: Vec<String> = WASM_SPLIT
            .iter()
            .map(|p| {
                format!(
                    "{:.0}",
                    *wasm_split.get(p).unwrap_or(&0) as f64 / calls as f64
                )
            })
            .collect();
        println!(
            "| {} | {native:.0} | {wasm:.0} | {lua:.0} | {:.2}x | {:.2}x | {} |",
            case.what,
            wasm / native,
            wasm / lua,
            split.join(" | ")
        );
    }
    let perf_map = format!("/tmp/perf-{}.map", server.pid());
    drop(server);
    if keep_dumps {
        let kept_map = dir.join("perf.map");
        let _ = std::fs::copy(&perf_map, &kept_map);
        let _ = std::fs::remove_file(&perf_map);
        println!(
            "callgrind dumps kept in {} (with perf.map: the guests' compiled functions, start address, size and name)",
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_costs_follow_names_inlined_files_and_skip_call_costs() {
        let dump = "\
# callgrind format
events: Ir
summary: 1000

ob=(1) /usr/lib/x86_64-linux-gnu/libredis_wasm.so
fl=(1) /work/main/host/src/guest.rs
fn=(1) redis_wasm::guest::Guest::run
10 100
fi=(2) /root/.cargo/registry/src/index.crates.io-0/wasmtime-49.0.5/src/runtime/func.rs
+2 40
fe=(1)
-1 7
cob=(2) ???
cfi=(3) ???
cfn=(2) 0x0000000005997f00
calls=1 0
* 5000
ob=(3) /usr/bin/redis-check-rdb
fl=(3)
fn=(3) processCommand
0 300
ob=(2)
fn=(2)
0 60
ob=(1)
fl=(4) /rustc/abc/library/core/src/ptr/mod.rs
fn=(4) wasmtime::runtime::vm::Instance::drop
0 9
fn=(1)
0 1
ob=(4) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(3)
fn=(5) memcpy
0 20

totals: 537
";
        let costs = self_costs(dump);
        let get = |p| costs.get(&p).copied().unwrap_or(0);
        // The 5000 after `calls=` is the callee's inclusive cost: not counted.
        assert_eq!(get(Place::Host), 100 + 7 + 1);
        assert_eq!(get(Place::Wasmtime), 40 + 9);
        assert_eq!(get(Place::CompiledWasm), 60);
        assert_eq!(get(Place::Redis), 300);
        assert_eq!(get(Place::Libraries), 20);
        assert_eq!(costs.values().sum::<u64>(), 537);
    }
}
