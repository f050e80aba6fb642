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
fn edge_inputs_get_the_errors_lua_gives_and_the_server_survives() {
    let server = Server::with_module_args(&["LOAD", guests::BENCH_GUEST]);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["MODULE", "LOAD", native_library().to_str().unwrap()]),
        Reply::Status("OK".into())
    );
    c.cmd(&["SET", "str", "abc"]);
    c.cmd(&["SET", "max", &i64::MAX.to_string()]);
    c.cmd(&["RPUSH", "list", "a"]);
    let lua = include_str!("../../benchmarks/bench.lua");
    let script = |case: &str| {
        lua.split(&format!("-- case: {case}\n"))
            .nth(1)
            .and_then(|rest| rest.split("-- case:").next())
            .unwrap()
            .to_owned()
    };
    // The error's first word (its code), from each runtime.
    let code = |reply: Reply| match reply {
        Reply::Error(text) => text.split(' ').next().unwrap_or("").to_owned(),
        other => format!("no error: {other:?}"),
    };
    let errors: &[(&str, &str, &str)] = &[
        ("incr", "str", "ERR"),
        ("incr", "max", "ERR"),
        ("incr", "list", "WRONGTYPE"),
        ("lrange", "str", "WRONGTYPE"),
        ("push", "str", "WRONGTYPE"),
        ("hset", "str", "WRONGTYPE"),
        ("lsum", "str", "WRONGTYPE"),
        ("zsum", "str", "WRONGTYPE"),
        ("hsum", "str", "WRONGTYPE"),
        ("rmw", "list", "WRONGTYPE"),
    ];
    for &(case, key, expected) in errors {
        let extra: &[&str] = match case {
            "push" => &["v"],
            "hset" => &["f", "v"],
            _ => &[],
        };
        let twin = |prefix: &str| {
            let mut line = vec![format!("{prefix}.{}", case.to_uppercase()), key.into()];
            line.extend(extra.iter().map(|a| a.to_string()));
            line
        };
        let mut eval = vec!["EVAL".to_string(), script(case), "1".into(), key.into()];
        eval.extend(extra.iter().map(|a| a.to_string()));
        for line in [twin("NB"), twin("BG"), eval] {
            let words: Vec<&str> = line.iter().map(String::as_str).collect();
            assert_eq!(code(c.cmd(&words)), expected, "{case} {key}: {}", words[0]);
        }
    }
    // A counter at the largest integer: the twins refuse to wrap it (Lua's numbers are doubles).
    for twin in ["NB.RMW", "BG.RMW"] {
        assert!(c.cmd(&[twin, "max"]).error().contains("overflow"), "{twin}");
    }
    assert_eq!(c.cmd(&["GET", "max"]).text(), i64::MAX.to_string());
    // Sums refuse to wrap too, and a value that is not an integer gets Redis's words for it.
    let max = i64::MAX.to_string();
    c.cmd(&["RPUSH", "big", &max, &max]);
    c.cmd(&["HSET", "bighash", "a", &max, "b", &max]);
    c.cmd(&["RPUSH", "words", "1", "x"]);
    c.cmd(&["HSET", "wordhash", "a", "x"]);
    // Integers as INCR reads them: no '+', no leading zero, no "-0".
    c.cmd(&["SET", "plus", "+5"]);
    c.cmd(&["SET", "zero", "05"]);
    c.cmd(&["RPUSH", "odd", "1", "-0"]);
    const OVERFLOW: &str = "ERR the sum overflows";
    const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    for (case, key, error) in [
        ("LSUM", "big", OVERFLOW),
        ("LRANGE", "big", OVERFLOW),
        ("HSUM", "bighash", OVERFLOW),
        ("LSUM", "words", NOT_INTEGER),
        ("LRANGE", "words", NOT_INTEGER),
        ("HSUM", "wordhash", NOT_INTEGER),
        ("RMW", "str", NOT_INTEGER),
        ("RMW", "plus", NOT_INTEGER),
        ("RMW", "zero", NOT_INTEGER),
        ("LRANGE", "odd", NOT_INTEGER),
        ("LSUM", "odd", NOT_INTEGER),
    ] {
        for twin in ["NB", "BG"] {
            let reply = c.cmd(&[&format!("{twin}.{case}"), key]);
            assert_eq!(reply.error(), error, "{twin}.{case} {key}");
        }
    }
    // Missing keys read as empty, as in Lua.
    for (twin, empty) in [
        ("ZSUM", Reply::Bulk(b"0".to_vec())),
        ("LSUM", Reply::Int(0)),
    ] {
        assert_eq!(c.cmd(&[&format!("NB.{twin}"), "missing"]), empty, "{twin}");
        assert_eq!(c.cmd(&[&format!("BG.{twin}"), "missing"]), empty, "{twin}");
    }
    // Arity, checked by the host for the guest and by each native command.
    for twin in ["NB.RMW", "BG.RMW", "NB.INT", "BG.INT"] {
        let args = if twin.ends_with("INT") {
            vec![twin, "x"]
        } else {
            vec![twin]
        };
        assert!(
            c.cmd(&args).error().contains("wrong number of arguments"),
            "{twin}"
        );
    }
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
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
