//! `bench --train`: the workload that profile-guided optimization learns from
//! (`scripts/build-host.sh`). It runs against an instrumented build of the host and the native
//! twin (`REDIS_WASM_MODULE_DIR` names its directory) and shuts the server down cleanly, which is
//! when the instrumented libraries write their counts.
//!
//! What it runs decides which code the optimized build lays out as hot: every benchmark case as
//! a guest and natively (the per-command path every guest takes: routing, `invoke`, keys,
//! `call`, replies, replication), then the example guests' commands, so that the key, list,
//! sorted-set, hash, native-type and blocking host functions they use are not compiled as code
//! that never runs. Its answers are checked: a workload that only met errors would teach the
//! wrong paths.

use redis_wasm_tests::{ServerOptions, guests};

use crate::{CASES, Runtime, command, drive, prepare_server};

/// The bench cases run a quarter of their timed calls: enough that their paths outweigh the
/// integration tests' (the other half of the training, `scripts/build-host.sh`) in the counts.
const TRAINING_DIVISOR: usize = 4;

/// Each example command with arguments it accepts is run this many times.
const EXAMPLE_CALLS: usize = 2_000;

/// Example guests' commands, with arguments they accept over and over.
const EXAMPLE_COMMANDS: &[&[&str]] = &[
    &["HELLOWORLD.RAND"],
    &["HELLO.SIMPLE"],
    &["HELLO.PUSH.NATIVE", "train:list", "7"],
    &["HELLO.PUSH.CALL", "train:list", "8"],
    &["HELLO.LIST.SUM.LEN", "train:list"],
    &["HELLO.LIST.SPLICE", "train:list", "train:list2", "2"],
    &["HELLO.LIST.SPLICE.AUTO", "train:list2", "train:list", "2"],
    &["HELLO.RAND.ARRAY", "10"],
    &["HELLO.TOGGLE.CASE", "train:string"],
    &["HELLO.MORE.EXPIRE", "train:string", "1000"],
    &["HELLO.ZSUMRANGE", "bench:zset", "10", "40"],
    &["HELLO.LEXRANGE", "train:lex", "[a", "[z", "0", "100"],
    &["HELLO.HCOPY", "train:hash", "a", "b"],
    &["HELLO.LEFTPAD", "hello", "20", "*"],
    &["HELLOTYPE.INSERT", "train:type", "42"],
    &["HELLOTYPE.RANGE", "train:type", "0", "10"],
    &["HELLOTYPE.LEN", "train:type"],
    &["BPOP.BLPOP", "train:list", "1"],
];

pub fn run() {
    let (mut server, mut c, shas, value) = prepare_server(ServerOptions::default());
    for case in CASES {
        for runtime in [Runtime::Native, Runtime::Guest] {
            let line = command(case, runtime, &shas[case.name], &value);
            let args: Vec<&str> = line.iter().map(String::as_str).collect();
            let reply = c.cmd(&args);
            assert!(!reply.is_error(), "{}: {reply:?}", line[0]);
            drive(
                case,
                server.port,
                (case.calls / TRAINING_DIVISOR).max(100),
                &line,
            );
        }
    }
    for guest in [
        guests::HELLOWORLD,
        guests::HELLO,
        guests::HELLOTYPE,
        guests::BPOP,
    ] {
        let reply = c.cmd(&["WASM.LOAD", guest]);
        assert!(!reply.is_error(), "WASM.LOAD {guest}: {reply:?}");
    }
    c.cmd(&["RPUSH", "train:list", "1", "2", "3"]);
    c.cmd(&["SET", "train:string", "Hello World"]);
    c.cmd(&["PEXPIRE", "train:string", "100000"]);
    c.cmd(&[
        "ZADD",
        "train:lex",
        "0",
        "apple",
        "0",
        "banana",
        "0",
        "cherry",
    ]);
    c.cmd(&["HSET", "train:hash", "a", "1"]);
    for command in EXAMPLE_COMMANDS {
        let reply = c.cmd(command);
        assert!(!reply.is_error(), "{}: {reply:?}", command[0]);
        let line: Vec<String> = command.iter().map(|a| a.to_string()).collect();
        crate::redis_benchmark(server.port, EXAMPLE_CALLS, &line);
    }
    // A clean exit, not the kill that dropping the server makes: the counts are written then.
    c.send(&[b"SHUTDOWN", b"NOSAVE"]);
    assert!(
        server.wait_exit(std::time::Duration::from_secs(30)),
        "the server did not exit after SHUTDOWN NOSAVE"
    );
}
