//! The benchmark twins compute the same answers (so the benchmark compares runtimes, not logic).

use redis_wasm_tests::{Reply, Server, guests, native_library};

#[test]
fn guest_native_and_lua_benchmark_cases_agree() {
    let server = Server::with_module_args(&["LOAD", guests::BENCH_GUEST]);
    // The twins replicate their writes too (verbatim, or as effects): a replica ends up equal.
    let replica = Server::with_module_args(&["LOAD", guests::BENCH_GUEST]);
    for s in [&server, &replica] {
        assert_eq!(
            s.client()
                .cmd(&["MODULE", "LOAD", native_library().to_str().unwrap()]),
            Reply::Status("OK".into())
        );
    }
    replica.replicate_from(&server);
    let mut c = server.client();
    for i in 0..100 {
        c.cmd(&["ZADD", "z", &format!("{i}.5"), &format!("m{i}")]);
        c.cmd(&["RPUSH", "l", &i.to_string()]);
        c.cmd(&["HSET", "h", &format!("f{i}"), &i.to_string()]);
    }
    let cases: &[(&str, &[&str])] = &[
        ("INT", &[]),
        ("RMW", &["{key}"]),
        ("RMW", &["{key}"]),
        ("RMWFX", &["{key}"]),
        ("RMWFX", &["{key}"]),
        ("INCR", &["{key}"]),
        ("PUSH", &["{key}", "e"]),
        ("PUSH", &["{key}", "e"]),
        ("HSET", &["{key}", "a", "1", "b", "2"]),
        ("HSET", &["{key}", "a", "3", "c", "4"]),
        ("ZSUM", &["z"]),
        ("LSUM", &["l"]),
        ("HSUM", &["h"]),
        ("HSUM", &["nohash"]),
        ("LRANGE", &["l"]),
        ("LOOP", &[]),
        ("ECHO", &["hello"]),
        ("ARRAY", &[]),
    ];
    for (case, args) in cases {
        let run = |c: &mut redis_wasm_tests::Client, prefix: &str| {
            let key = format!("{prefix}:{case}");
            let mut line = vec![format!("{prefix}.{case}")];
            line.extend(args.iter().map(|a| {
                if *a == "{key}" {
                    key.clone()
                } else {
                    a.to_string()
                }
            }));
            let line: Vec<&str> = line.iter().map(String::as_str).collect();
            c.cmd(&line)
        };
        let (native, guest) = (run(&mut c, "NB"), run(&mut c, "BG"));
        assert_eq!(native, guest, "{case}");
    }
    server.assert_same_dataset(&replica);
    assert_eq!(
        replica
            .client()
            .cmd(&["MGET", "NB:INCR", "BG:INCR", "NB:RMWFX", "BG:RMWFX"]),
        Reply::Array(vec![
            Reply::Bulk(b"1".to_vec()),
            Reply::Bulk(b"1".to_vec()),
            Reply::Bulk(b"2".to_vec()),
            Reply::Bulk(b"2".to_vec()),
        ])
    );
    // The Lua twin of the CPU loop (benchmarks/bench.lua) gets the same number.
    let lua = include_str!("../../benchmarks/bench.lua");
    let lua_loop = lua
        .split("-- case: loop\n")
        .nth(1)
        .and_then(|rest| rest.split("-- case:").next())
        .unwrap();
    assert_eq!(
        c.cmd(&["BG.LOOP"]),
        Reply::Int(c.cmd(&["EVAL", lua_loop, "0"]).int())
    );
}

#[test]
fn a_large_guest_loads_and_runs() {
    let server = Server::start();
    let module = std::fs::read(guests::BIG).unwrap();
    assert!(
        module.len() > 900_000,
        "the big guest should be about 1 MB, is {}",
        module.len()
    );
    let mut c = server.client();
    assert_eq!(
        c.cmd_bytes(&[b"WASM.LOAD", &module]),
        Reply::Bulk(b"big".to_vec())
    );
    assert!(matches!(c.cmd(&["BIG.RUN", "12345"]), Reply::Int(_)));
}
