//! The sandbox: runaway guests, memory and stack, bad inputs, capabilities, signal handlers.

use std::time::{Duration, Instant};

use redis_wasm_tests::hand_made::{self, Trick};
use redis_wasm_tests::{Reply, Server, ServerOptions, guests};

/// A server with the evil guest loaded and a short busy threshold.
fn evil_server(extra: &[(&str, &str)]) -> Server {
    let mut config = vec![("busy-reply-threshold".to_owned(), "100".to_owned())];
    config.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with(ServerOptions {
        module_args: vec!["LOAD".into(), guests::EVIL.into()],
        config,
        ..Default::default()
    })
}

fn pong(server: &Server) {
    assert_eq!(server.client().cmd(&["PING"]), Reply::Status("PONG".into()));
}

/// Waits until other clients get -BUSY.
fn wait_busy(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = server.client().cmd(&["GET", "x"]);
        if let Reply::Error(e) = &reply
            && e.starts_with("BUSY")
        {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the server never reported BUSY: {reply:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_runaway_guest_is_busy_then_killed_and_pipelined_commands_run() {
    let server = evil_server(&[]);
    let mut runner = server.client();
    runner.send(&[b"EVIL.LOOP"]);
    runner.send(&[b"PING"]);
    let busy = wait_busy(&server);
    assert_eq!(
        busy,
        "BUSY Redis is busy running guest 'evil' command 'evil.loop'. You can only call WASM.KILL or SHUTDOWN NOSAVE NOW."
    );
    // Introspection still works while busy.
    assert_eq!(server.client().cmd(&["WASM.LIST"]).array().len(), 1);
    assert_eq!(
        server.client().cmd(&["WASM.KILL"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        runner.read().error(),
        "ERR guest 'evil' command 'evil.loop' was killed by WASM.KILL"
    );
    assert_eq!(runner.read(), Reply::Status("PONG".into()));
    pong(&server);
    // The guest works again (a fresh instance).
    assert_eq!(runner.cmd(&["EVIL.CALLS", "3"]), Reply::Int(3));
    assert_eq!(
        server.client().cmd(&["WASM.KILL"]).error(),
        "NOTBUSY No guest command is running right now."
    );
    let stats = runner.cmd(&["WASM.LIST", "evil"]).array()[0]
        .field("stats")
        .clone();
    assert_eq!(stats.field("kills").int(), 1);
}

#[test]
fn a_runaway_guest_inside_exec_or_a_script_stops_without_yielding() {
    // Redis asserts (and dies) if another client's command runs inside EXEC or a script, so a
    // guest there must not yield: it stops at busy-reply-threshold (100 ms here) instead.
    let server = evil_server(&[]);
    let mut runner = server.client();
    let mut other = server.client();
    runner.send(&[b"MULTI"]);
    runner.send(&[b"EVIL.LOOP"]);
    runner.send(&[b"EXEC"]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    other.send(&[b"PING"]);
    assert_eq!(runner.read(), Reply::Status("OK".into()));
    assert_eq!(runner.read(), Reply::Status("QUEUED".into()));
    let exec = runner.read();
    let stopped = exec.array()[0].error();
    assert!(
        stopped.contains(
            "ran longer than busy-reply-threshold (100 ms) inside MULTI/EXEC, where it cannot \
             let other clients in"
        ),
        "{stopped}"
    );
    assert_eq!(other.read(), Reply::Status("PONG".into()));
    let script = runner.cmd(&["EVAL", "return redis.call('evil.loop')", "0"]);
    assert!(
        script
            .error()
            .contains("inside a script or function, where it cannot let other clients in"),
        "{script:?}"
    );
    pong(&server);
}

#[test]
fn a_kill_of_an_init_run_to_recreate_an_instance_is_counted() {
    let server = Server::start_with(ServerOptions {
        module_args: ["LOAD", guests::EVIL, "ARGS", "init-ms", "1500"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let mut c = server.client();
    c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "200"]);
    assert!(c.cmd(&["EVIL.OOB"]).is_error()); // the instance is dropped
    c.send(&[b"EVIL.CALLS", b"1"]); // re-creates it: its init runs 1.5 s, and yields
    let mut killer = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while killer.cmd(&["WASM.KILL"]).is_error() {
        assert!(Instant::now() < deadline, "never busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = c.read();
    assert!(
        killed.error().contains("could not restart") && killed.error().contains("WASM.KILL"),
        "{killed:?}"
    );
    assert_eq!(killer.info_u64("wasm", "wasm_kills"), 1);
    assert_eq!(killer.info_u64("wasm", "wasm_traps"), 2);
}

#[test]
fn a_failed_re_creation_is_retried_after_a_wait_not_on_every_call() {
    // Each attempt runs the init on the main thread (150 ms here, up to wasm.max-init-ms):
    // retried on every call, it would stall the server on every call.
    let server = Server::start_with(ServerOptions {
        module_args: ["LOAD", guests::EVIL, "ARGS", "init-ms", "150"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let mut c = server.client();
    c.cmd(&["CONFIG", "SET", "wasm.max-init-ms", "100"]);
    // An attempt takes 100 ms at least: the slow log tells the calls that made one.
    c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "50000"]);
    assert!(c.cmd(&["EVIL.OOB"]).is_error()); // the instance is dropped
    c.cmd(&["SLOWLOG", "RESET"]);
    let failed = c.cmd(&["EVIL.CALLS", "1"]);
    assert!(
        failed.error().contains("could not restart")
            && failed.error().contains("wasm.max-init-ms")
            && !failed.error().contains("due in"),
        "{failed:?}"
    );
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Reply::Int(1));
    // The next calls answer that failure without running the init again.
    for _ in 0..3 {
        let waiting = c.cmd(&["EVIL.CALLS", "1"]);
        assert!(
            waiting.error().contains("wasm.max-init-ms")
                && waiting.error().contains("ms ago; the next is due in"),
            "{waiting:?}"
        );
    }
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Reply::Int(1));
    // Once the wait (1 s after the first failure) is over, the next call tries again.
    std::thread::sleep(Duration::from_millis(1100));
    let again = c.cmd(&["EVIL.CALLS", "1"]);
    assert!(
        again.error().contains("wasm.max-init-ms") && !again.error().contains("due in"),
        "{again:?}"
    );
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Reply::Int(2));
    // A change of the loaded guests ends the wait (now 2 s): it may have freed memory...
    assert!(!c.cmd(&["WASM.LOAD", guests::HELLOWORLD]).is_error());
    assert!(!c.cmd(&["EVIL.CALLS", "1"]).error().contains("due in"));
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Reply::Int(3));
    // ...and so does a CONFIG SET: the limit may have been what failed.
    c.cmd(&["CONFIG", "SET", "wasm.max-init-ms", "10000"]);
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
    // An attempt that could not let other clients in (EXEC: stopped at busy-reply-threshold,
    // and named so) holds back no caller that can.
    c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    assert!(c.cmd(&["EVIL.OOB"]).is_error());
    c.cmd(&["MULTI"]);
    c.cmd(&["EVIL.CALLS", "1"]);
    let exec = c.cmd(&["EXEC"]);
    let in_exec = exec.array()[0].error();
    assert!(
        in_exec.contains("busy-reply-threshold") && in_exec.contains("inside MULTI/EXEC"),
        "{exec:?}"
    );
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

#[test]
fn replayed_work_re_creates_an_instance_whatever_the_wait() {
    // On a replica, a client's call fails to re-create the instance (its init outlasts the
    // replica's wasm.max-init-ms) and sets a wait; the master's verbatim command, replayed,
    // must run anyway (replayed work has no limits): the datasets stay equal.
    let guests = [
        "LOAD",
        guests::API_GUEST,
        "LOAD",
        guests::EVIL,
        "ARGS",
        "init-ms",
        "150",
    ];
    let master = Server::with_module_args(&guests);
    let replica = Server::with_module_args(&guests);
    replica.replicate_from(&master);
    let mut r = replica.client();
    r.cmd(&["CONFIG", "SET", "wasm.max-init-ms", "100"]);
    assert!(r.cmd(&["EVIL.OOB"]).is_error());
    assert!(
        r.cmd(&["EVIL.CALLS", "1"])
            .error()
            .contains("wasm.max-init-ms")
    );
    assert!(r.cmd(&["EVIL.CALLS", "1"]).error().contains("due in"));
    let mut m = master.client();
    assert!(
        !m.cmd(&["API.VERBATIMCALL", "EVIL.BIGARG", "bk", "1"])
            .is_error()
    );
    master.assert_same_dataset(&replica);
    assert_eq!(r.cmd(&["EXISTS", "bk"]), Reply::Int(1));
    assert_eq!(r.info_u64("wasm", "wasm_restarts"), 1);
}

#[test]
fn a_guest_loaded_at_startup_has_max_init_ms_for_its_init() {
    // No client waits on the module's arguments: the busy threshold does not stop their init.
    let server = Server::start_with(ServerOptions {
        config: vec![("busy-reply-threshold".into(), "200".into())],
        module_args: ["LOAD", guests::EVIL, "ARGS", "init-ms", "600"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    assert_eq!(server.client().cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

#[test]
fn a_guest_cannot_swallow_a_kill() {
    let server = evil_server(&[]);
    let mut runner = server.client();
    runner.send(&[b"EVIL.LOOPCALLS"]);
    wait_busy(&server);
    assert_eq!(
        server.client().cmd(&["WASM.KILL"]),
        Reply::Status("OK".into())
    );
    assert!(runner.read().error().ends_with("was killed by WASM.KILL"));
    pong(&server);
}

#[test]
fn a_guest_that_wrote_is_unkillable_and_shutdown_nosave_still_works() {
    let mut server = evil_server(&[]);
    let mut runner = server.client();
    runner.send(&[b"EVIL.WRITELOOP", b"k"]);
    wait_busy(&server);
    let refused = server.client().cmd(&["WASM.KILL"]);
    assert!(
        refused.error().starts_with(
            "UNKILLABLE Guest 'evil' command 'evil.writeloop' already wrote to the dataset"
        ),
        "{refused:?}"
    );
    let shutdown = server.client().cmd(&["SHUTDOWN"]);
    assert!(shutdown.error().starts_with("BUSY"), "{shutdown:?}");
    let mut c = server.client();
    c.send(&[b"SHUTDOWN", b"NOSAVE", b"NOW"]);
    assert!(
        server.wait_exit(Duration::from_secs(10)),
        "SHUTDOWN NOSAVE NOW did not stop the server"
    );
}

#[test]
fn long_but_finite_guests_complete() {
    let server = evil_server(&[]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["EVIL.CALLS", "100000"]), Reply::Int(100_000));
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn hard_time_limits_for_calls_and_init() {
    // busy-reply-threshold above the init limit: a load's init stops at whichever comes first.
    let server = evil_server(&[
        ("wasm.max-call-ms", "200"),
        ("wasm.max-init-ms", "300"),
        ("busy-reply-threshold", "2000"),
    ]);
    let mut c = server.client();
    let started = Instant::now();
    assert_eq!(
        c.cmd(&["EVIL.LOOP"]).error(),
        "ERR guest 'evil' command 'evil.loop' ran longer than 200 ms (wasm.max-call-ms)"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let load = c.cmd(&["WASM.LOAD", guests::EVIL, "REPLACE", "ARGS", "loop-in-init"]);
    assert!(
        load.error()
            .ends_with("init ran longer than 300 ms (wasm.max-init-ms)"),
        "{load:?}"
    );
    // The loaded version is untouched.
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "wasm.max-call-ms"]).array()[1].text(),
        "200"
    );
}

#[test]
fn an_init_that_cannot_yield_stops_at_the_busy_threshold() {
    let server = evil_server(&[("busy-reply-threshold", "300")]);
    let mut c = server.client();
    // A load's init runs on the main thread once the guest compiled, from a blocked client's
    // callback: it cannot yield, so it must not run until wasm.max-init-ms (10 s).
    let started = Instant::now();
    let load = c.cmd(&["WASM.LOAD", guests::EVIL, "REPLACE", "ARGS", "loop-in-init"]);
    assert!(
        load.error().contains(
            "init ran longer than busy-reply-threshold (300 ms) in an init that ends a load, \
                 where it cannot let other clients in"
        ),
        "{load:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

#[test]
fn memory_limits_hold_and_nothing_leaks() {
    let server = evil_server(&[("wasm.max-memory", "32mb")]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["EVIL.GROW", "8"]), Reply::Int(8 << 20));
    let refused = c.cmd(&["EVIL.GROW", "64"]);
    assert!(refused.error().starts_with("ERR guest 'evil' command 'evil.grow' ran out of memory (wasm.max-memory (33554432 bytes) refused growing to"), "{refused:?}");
    // The guest's own account is logged, without Rust's hint about RUST_BACKTRACE, which
    // cannot reach a guest.
    let log = server.log();
    assert!(log.contains("<wasm:evil> memory allocation of"), "{log}");
    assert!(!log.contains("RUST_BACKTRACE"), "{log}");
    let memory = || server.client().info_u64("wasm", "wasm_memory_bytes");
    for _ in 0..50 {
        assert!(c.cmd(&["EVIL.GROW", "64"]).is_error());
    }
    assert!(
        memory() <= 33 << 20,
        "guest memory {} over the cap",
        memory()
    );
    assert_eq!(c.cmd(&["EVIL.GROW", "4"]), Reply::Int(4 << 20));
    // A global cap across guests.
    c.cmd(&["CONFIG", "SET", "wasm.max-memory", "64mb"]);
    c.cmd(&["CONFIG", "SET", "wasm.max-total-memory", "24mb"]);
    let refused = c.cmd(&["EVIL.GROW", "30"]);
    assert!(
        refused
            .error()
            .contains("wasm.max-total-memory (25165824 bytes) refused: all instances would use "),
        "{refused:?}"
    );
    // The message gives the total the growth would have made, which is over the cap.
    let total: u64 = refused
        .error()
        .split("all instances would use ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the total in the message");
    assert!(total > 24 << 20, "{refused:?}");
    pong(&server);
}

#[test]
fn a_failed_growth_past_a_declared_maximum_is_not_counted() {
    // The host approves growing past 3 GB; the guest's memory declares 3 GB at most, so the
    // growth fails after the approval.
    let server = evil_server(&[("wasm.max-memory", "4gb"), ("wasm.max-total-memory", "4gb")]);
    let mut c = server.client();
    let before = c.info_u64("wasm", "wasm_memory_bytes");
    assert_eq!(c.cmd(&["EVIL.GROWPASTMAX", "40"]), Reply::Int(40));
    let after = c.info_u64("wasm", "wasm_memory_bytes");
    assert_eq!(after, before, "failed growth stayed counted");
    // Other growth is judged on what is really used: the failures were not kept against the
    // 4 GB cap.
    assert_eq!(c.cmd(&["EVIL.GROW", "1200"]), Reply::Int(1200 << 20));
    pong(&server);
}

#[test]
fn guests_calling_guests_cannot_overflow_the_native_stack() {
    // Each guest's wasm gets its own stack allowance from where it is entered, so a chain of
    // guests calling guests, each well within its own, would overflow the thread's stack.
    let mut module_args = vec!["LOAD".to_owned(), guests::API_GUEST.to_owned()];
    for i in 1..=24 {
        module_args.extend(
            ["LOAD", guests::RAW_GUEST, "ARGS", "relay", &format!("g{i}")].map(String::from),
        );
    }
    let server = Server::start_with(ServerOptions {
        module_args,
        ..Default::default()
    });
    let mut c = server.client();
    // Each relay recurses 1,800 frames (about 2,000 fit in one guest's allowance), then calls
    // the next one.
    let chain = |guests: usize| -> Vec<String> {
        (1..=guests)
            .flat_map(|i| [format!("g{i}.relay"), "1800".to_owned()])
            .collect()
    };
    let line = |words: &[String]| {
        words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let short = chain(3);
    let short: Vec<&str> = short.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&short), Reply::Int(1));
    let long = chain(24);
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let refused = c.cmd(&long);
    assert!(
        refused
            .error()
            .contains("cannot start: guests calling guests have used up the native stack"),
        "{refused:?}"
    );
    // A background job's thread too.
    let words = chain(24);
    let in_job = c.cmd(&["API.WAIT", "bgcall", "5000", &line(&words)]);
    assert!(
        format!("{in_job:?}").contains("used up the native stack"),
        "{in_job:?}"
    );
    pong(&server);
}

#[test]
fn an_instance_that_cannot_be_recreated_answers_errors_and_is_not_counted_as_restarted() {
    let server = Server::with_module_args(&["LOAD", guests::BASICS]);
    let mut c = server.client();
    let restarts = |c: &mut redis_wasm_tests::Client| c.info_u64("wasm", "wasm_restarts");
    assert!(c.cmd(&["BASICS.PANIC"]).is_error());
    // The next instance needs more than 1 MB of linear memory: it cannot start.
    c.cmd(&["CONFIG", "SET", "wasm.max-memory", "1mb"]);
    // Refused at once (no init ran): each call tries again, with no wait.
    for _ in 0..3 {
        let refused = c.cmd(&["BASICS.ECHO", "x"]);
        assert!(!refused.error().contains("due in"), "{refused:?}");
        assert!(
            refused.error().starts_with(
                "ERR guest 'basics' command 'basics.echo' cannot run: the guest could not \
                     restart (its instance is made anew after a trap, a kill or running low on \
                     handles): cannot instantiate the guest: ran out of memory"
            ),
            "{refused:?}"
        );
    }
    assert_eq!(restarts(&mut c), 0);
    c.cmd(&["CONFIG", "SET", "wasm.max-memory", "128mb"]);
    assert!(!c.cmd(&["BASICS.ECHO", "x"]).is_error());
    assert_eq!(restarts(&mut c), 1);
}

#[test]
fn stack_overflow_and_out_of_bounds_reads_are_errors() {
    let server = evil_server(&[]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["EVIL.RECURSE", "100"]), Reply::Int(100));
    assert_eq!(
        c.cmd(&["EVIL.RECURSE", "100000000"]).error(),
        "ERR guest 'evil' command 'evil.recurse' trapped: stack overflow"
    );
    assert_eq!(
        c.cmd(&["EVIL.OOB"]).error(),
        "ERR guest 'evil' command 'evil.oob' trapped: out-of-bounds memory access"
    );
    // A host function handed a list outside the guest's memory refuses to read it.
    assert_eq!(
        c.cmd(&["EVIL.FORGED", "call", "outside"]).error(),
        "ERR guest 'evil' command 'evil.forged' trapped: list pointer/length out of bounds of memory"
    );
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
    // Redis re-installs its crash handlers when crash-log-enabled changes; guests must still trap.
    for value in ["no", "yes", "no", "yes"] {
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "crash-log-enabled", value]),
            Reply::Status("OK".into())
        );
        assert_eq!(
            c.cmd(&["EVIL.OOB"]).error(),
            "ERR guest 'evil' command 'evil.oob' trapped: out-of-bounds memory access"
        );
    }
    pong(&server);
}

#[test]
fn sizes_at_the_limits() {
    let server = evil_server(&[
        ("wasm.max-memory", "1200mb"),
        ("wasm.max-total-memory", "2gb"),
    ]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["EVIL.ARGS", "8000"]), Reply::Int(0));
    assert_eq!(c.cmd(&["EVIL.BIGARG", "big", "512"]), Reply::Int(512 << 20));
    assert_eq!(c.cmd(&["STRLEN", "big"]), Reply::Int(512 << 20));
    c.cmd(&["DEL", "big"]);
    // Past what one host call may copy out of the guest: the message names the limit.
    let over = c.cmd(&["EVIL.BIGARG", "big", "600"]);
    assert!(
        over.error()
            .contains("(one host call may copy at most 576 MB out of the guest)"),
        "{over:?}"
    );
    c.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "1mb"]);
    let big = c.cmd(&["EVIL.BIGREPLY", "2"]);
    assert!(
        big.error()
            .ends_with("the reply is larger than wasm.max-reply-bytes (1048576 bytes)"),
        "{big:?}"
    );
    // The limit counts what a reply holds in memory: each element costs more than its payload.
    let many = c.cmd(&["EVIL.MANYREPLIES", "30000"]);
    assert!(
        many.error()
            .ends_with("the reply is larger than wasm.max-reply-bytes (1048576 bytes)"),
        "{many:?}"
    );
    // A big reply's memory is given back once sent (it counts in Redis's used_memory, where it
    // could make Redis evict keys long after the command).
    c.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "256mb"]);
    let before = c.info_u64("memory", "used_memory");
    assert_eq!(
        c.cmd(&["EVIL.MANYREPLIES", "1000000"]).array().len(),
        1_000_000
    );
    let after = c.info_u64("memory", "used_memory");
    assert!(
        after < before + (10 << 20),
        "used_memory {before} before a 1,000,000-element reply, {after} after"
    );
    c.cmd(&["CONFIG", "SET", "wasm.max-module-size", "1024"]);
    let load = c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    let size = std::fs::metadata(guests::HELLOWORLD).unwrap().len();
    assert!(
        load.error().contains(&format!(
            "the module is {size} bytes, more than wasm.max-module-size (1024 bytes)"
        )),
        "{load:?}"
    );
}

#[test]
fn edge_integers_for_every_host_function() {
    let server = evil_server(&[]);
    let mut c = server.client();
    let survived = c.cmd(&["EVIL.EDGES"]);
    assert!(survived.int() > 100, "{survived:?}");
    pong(&server);
}

#[test]
fn random_host_calls_keep_master_and_replica_identical() {
    // Small compressed list nodes, so that the fuzzer's lists have some.
    let lists = [
        ("list-compress-depth", "1"),
        ("list-max-listpack-size", "4"),
    ];
    let master = evil_server(&lists);
    let replica = Server::start_with(ServerOptions {
        config: lists.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        ..Default::default()
    });
    replica.replicate_from(&master);
    let mut c = master.client();
    for seed in 1..=400 {
        let reply = c.cmd(&["EVIL.FUZZ", &seed.to_string(), "500"]);
        assert!(
            matches!(reply, Reply::Int(500) | Reply::Error(_)),
            "seed {seed}: {reply:?}"
        );
    }
    pong(&master);
    master.assert_same_dataset(&replica);
}

#[test]
fn forged_handle_numbers_reach_nothing() {
    let server = evil_server(&[]);
    let mut c = server.client();
    c.cmd(&["SET", "k", "v"]);
    // Numbers given out by earlier commands: those commands' keys and replies are gone.
    let Reply::Int(key) = c.cmd(&["EVIL.FORGED", "key", "open"]) else {
        panic!("evil.forged key open gave no key number")
    };
    let Reply::Int(reply) = c.cmd(&["EVIL.FORGED", "reply", "call"]) else {
        panic!("evil.forged reply call gave no reply number")
    };
    let numbers = [
        "0",
        "7",
        "4294967295",
        &key.to_string(),
        &reply.to_string(),
        &(reply + 1).to_string(),
    ];
    for number in numbers {
        assert_eq!(
            c.cmd(&["EVIL.FORGED", "key", number]).error(),
            "ERR unknown or closed key handle",
            "key number {number}"
        );
        assert_eq!(
            c.cmd(&["EVIL.FORGED", "reply", number]),
            Reply::Array(vec![
                Reply::Status("ReplyType::Unknown".into()),
                Reply::Int(0)
            ]),
            "reply number {number}"
        );
    }
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

#[test]
fn reading_a_string_config_leaks_nothing() {
    let server = evil_server(&[]);
    let mut c = server.client();
    // The config must name a directory: "/./././..." is the root, in 4 KB (near PATH_MAX).
    let long = format!("/{}", "./".repeat(2_000));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "wasm.load-dir", &long]),
        Reply::Status("OK".into())
    );
    let used_memory = |c: &mut redis_wasm_tests::Client| -> i64 {
        let info = c.cmd(&["INFO", "memory"]).text();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    c.cmd(&["CONFIG", "GET", "wasm.load-dir"]);
    let before = used_memory(&mut c);
    for _ in 0..3_000 {
        assert_eq!(c.cmd(&["CONFIG", "GET", "wasm.load-dir"]).array().len(), 2);
    }
    // Each read used to leak a copy: 3,000 x 4 KB.
    let grown = used_memory(&mut c) - before;
    assert!(grown < 5_000_000, "used_memory grew by {grown} bytes");
}

#[test]
fn a_link_swapped_during_a_load_cannot_lead_outside_load_dir() {
    let server = evil_server(&[]);
    let mut c = server.client();
    let dir = server.dir.join("guests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(guests::HELLOWORLD, dir.join("inside.wasm")).unwrap();
    std::fs::copy(guests::HELLO, server.dir.join("outside.wasm")).unwrap();
    c.cmd(&["CONFIG", "SET", "wasm.load-dir", dir.to_str().unwrap()]);
    // `link.wasm` flips between the two files while the loads run: each load reads the file
    // inside, or is refused; never the one outside.
    let link = dir.join("link.wasm");
    std::os::unix::fs::symlink(dir.join("inside.wasm"), &link).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, dir, outside) = (stop.clone(), dir.clone(), server.dir.join("outside.wasm"));
        std::thread::spawn(move || {
            let (staged, link) = (dir.join("staged.wasm"), dir.join("link.wasm"));
            for round in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let target = if round % 2 == 0 {
                    outside.clone()
                } else {
                    dir.join("inside.wasm")
                };
                let _ = std::fs::remove_file(&staged);
                std::os::unix::fs::symlink(target, &staged).unwrap();
                std::fs::rename(&staged, &link).unwrap();
            }
        })
    };
    let (mut inside, mut refused) = (0, 0);
    for _ in 0..150 {
        match c.cmd(&["WASM.LOAD", link.to_str().unwrap(), "REPLACE"]) {
            Reply::Bulk(name) if name == b"helloworld" => inside += 1,
            Reply::Error(e) if e.contains("is outside wasm.load-dir") => refused += 1,
            other => panic!("a load through the link read something else: {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(
        inside > 0 && refused > 0,
        "{inside} loads, {refused} refusals"
    );
    assert_eq!(c.cmd(&["WASM.LIST", "hello"]), Reply::Array(vec![]));
}

#[test]
fn loading_from_paths_can_be_restricted() {
    let server = evil_server(&[]);
    let mut c = server.client();
    let dir = server.dir.join("guests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(guests::HELLOWORLD, dir.join("hw.wasm")).unwrap();
    c.cmd(&["CONFIG", "SET", "wasm.load-dir", dir.to_str().unwrap()]);
    let outside = c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    assert!(
        outside.error().contains("is outside wasm.load-dir"),
        "{outside:?}"
    );
    std::fs::copy(guests::HELLOWORLD, server.dir.join("outside.wasm")).unwrap();
    let escape = format!("{}/../outside.wasm", dir.display());
    assert!(
        c.cmd(&["WASM.LOAD", &escape])
            .error()
            .contains("is outside wasm.load-dir")
    );
    // Whether a path outside exists is not told; a missing file inside says why.
    let missing_outside = format!("{}/../no-such.wasm", dir.display());
    assert!(
        c.cmd(&["WASM.LOAD", &missing_outside])
            .error()
            .contains("is outside wasm.load-dir")
    );
    let missing_inside = dir.join("no-such.wasm");
    let missing = c.cmd(&["WASM.LOAD", missing_inside.to_str().unwrap()]);
    assert!(
        missing.error().contains("No such file") && !missing.error().contains("os error"),
        "{missing:?}"
    );
    assert_eq!(
        c.cmd(&["WASM.LOAD", dir.join("hw.wasm").to_str().unwrap()]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    // A CONFIG SET that fails restores the directory set before, even gone meanwhile: Redis
    // would keep the new one if the host refused it.
    let gone = server.dir.join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    c.cmd(&["CONFIG", "SET", "wasm.load-dir", gone.to_str().unwrap()]);
    std::fs::remove_dir(&gone).unwrap();
    let failed = c.cmd(&[
        "CONFIG",
        "SET",
        "wasm.load-dir",
        dir.to_str().unwrap(),
        "wasm.max-compiles",
        "0",
    ]);
    assert!(failed.is_error(), "{failed:?}");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "wasm.load-dir"]).array()[1],
        Reply::Bulk(gone.to_str().unwrap().as_bytes().to_vec())
    );
    // A load then blames the setting, not the module.
    let unusable = c.cmd(&["WASM.LOAD", dir.join("hw.wasm").to_str().unwrap()]);
    assert!(
        unusable.error().contains(&format!(
            "wasm.load-dir is unusable: cannot read '{}': No such file or directory",
            gone.display()
        )) && !unusable.error().contains("os error"),
        "{unusable:?}"
    );
    c.cmd(&["CONFIG", "SET", "wasm.load-dir", dir.to_str().unwrap()]);
    // Bytes sent by a client are always accepted.
    c.cmd(&["WASM.UNLOAD", "helloworld"]);
    let bytes = std::fs::read(guests::HELLOWORLD).unwrap();
    assert_eq!(
        c.cmd_bytes(&[b"WASM.LOAD", &bytes]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    // Only an absolute path to an existing directory (or nothing) is accepted.
    let file = dir.join("hw.wasm");
    for (bad, why) in [
        ("guests", "must be an absolute path"),
        ("/no/such/dir", "No such file or directory"),
        (file.to_str().unwrap(), "is not a directory"),
    ] {
        let refused = c.cmd(&["CONFIG", "SET", "wasm.load-dir", bad]);
        assert!(refused.error().contains(why), "{bad}: {refused:?}");
    }
    let kept = c.cmd(&["CONFIG", "GET", "wasm.load-dir"]);
    assert_eq!(kept.array()[1].text(), dir.to_str().unwrap());
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "wasm.load-dir", ""]),
        Reply::Status("OK".into())
    );
}

#[test]
fn info_and_configs_describe_the_host() {
    let server = evil_server(&[]);
    let mut c = server.client();
    c.cmd(&["EVIL.CALLS", "2"]);
    c.cmd(&["EVIL.OOB"]);
    let info = c.cmd(&["INFO", "wasm"]).text();
    for field in [
        "wasm_guests:1",
        "wasm_calls:2",
        "wasm_errors:1",
        "wasm_traps:1",
        "wasm_instances:0",
        "wasm_guest_evil:commands=15,",
    ] {
        assert!(info.contains(field), "{field} missing from:\n{info}");
    }
    let configs = c.cmd(&["CONFIG", "GET", "wasm.*"]);
    let names: Vec<String> = configs.array().iter().step_by(2).map(Reply::text).collect();
    for name in [
        "wasm.max-memory",
        "wasm.max-total-memory",
        "wasm.max-call-ms",
        "wasm.max-init-ms",
        "wasm.max-module-size",
        "wasm.max-reply-bytes",
        "wasm.load-dir",
        "wasm.time-commands",
        "wasm.perf-map",
    ] {
        assert!(
            names.contains(&name.to_owned()),
            "{name} missing from {names:?}"
        );
    }
    let list = c.cmd(&["WASM.LIST", "evil"]).array()[0].clone();
    assert_eq!(
        list.field("stats").field("last-error").text(),
        "ERR guest 'evil' command 'evil.oob' trapped: out-of-bounds memory access"
    );
    let calls = list
        .field("commands")
        .array()
        .iter()
        .find(|c| c.field("name").text() == "evil.calls")
        .unwrap()
        .field("calls")
        .int();
    assert_eq!(calls, 1);
    // The totals count guests since the server started: replacing or unloading one keeps its
    // counts in them (its own line starts again, or goes).
    c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    c.cmd(&["HELLOWORLD.RAND"]);
    let totals = |c: &mut redis_wasm_tests::Client| {
        ["calls", "errors", "traps"].map(|f| c.info_u64("wasm", &format!("wasm_{f}")))
    };
    assert_eq!(totals(&mut c), [3, 1, 1]);
    c.cmd(&["WASM.LOAD", "REPLACE", guests::EVIL]);
    assert_eq!(totals(&mut c), [3, 1, 1]);
    c.cmd(&["WASM.UNLOAD", "helloworld"]);
    c.cmd(&["EVIL.CALLS", "1"]);
    assert_eq!(totals(&mut c), [4, 1, 1]);
}

#[test]
fn a_panic_in_any_entry_point_or_host_function_is_an_error_reply() {
    let mut server = Server::start_with(ServerOptions {
        module_args: vec!["LOAD".into(), guests::API_GUEST.into()],
        config: vec![("wasm.enable-debug".into(), "1".into())],
        ..Default::default()
    });
    let mut c = server.client();
    // Like DEBUG, not from scripts (nor, then, from guests: they call as scripts do).
    let scripted = c.cmd(&[
        "EVAL",
        "return redis.pcall('wasm.debug', 'panic', 'INFO')",
        "0",
    ]);
    assert!(
        scripted.error().contains("not allowed from script"),
        "{scripted:?}"
    );
    let internal = |site: &str| format!("ERR internal error in redis-wasm while running {site}");
    let arm = |c: &mut redis_wasm_tests::Client, site: &str| {
        assert_eq!(
            c.cmd(&["WASM.DEBUG", "PANIC", site]),
            Reply::Status("OK".into())
        );
    };
    let fails_in_api_key = |c: &mut redis_wasm_tests::Client, words: &[&str]| {
        let reply = c.cmd(words);
        assert!(
            reply
                .error()
                .starts_with(&internal("guest 'api' command 'api.key'")),
            "{reply:?}"
        );
    };
    arm(&mut c, "host-function");
    fails_in_api_key(&mut c, &["API.KEY", "type", "k"]);
    assert_eq!(
        c.cmd(&["API.KEY", "type", "k"]),
        Reply::Bulk(b"empty".to_vec())
    );
    // A panic in a callback Redis makes in the middle of a host function (a key scan's) fails
    // that command the same way, once Redis's frames are left.
    c.cmd(&["HSET", "h", "f", "v"]);
    arm(&mut c, "a key scan");
    fails_in_api_key(&mut c, &["API.KEY", "scan-batches", "h", "10"]);
    assert_eq!(
        c.cmd(&["API.KEY", "scan-batches", "h", "10"]).array()[1],
        Reply::Array(vec![Reply::Bulk(b"f".to_vec()), Reply::Bulk(b"v".to_vec())])
    );
    arm(&mut c, "wasm.list");
    assert!(
        c.cmd(&["WASM.LIST"])
            .error()
            .starts_with(&internal("'wasm.list'"))
    );
    arm(&mut c, "wasm.invoke-readonly");
    assert!(
        c.cmd(&["API.PARSE", "1"])
            .error()
            .starts_with(&internal("'wasm.invoke-readonly'"))
    );
    // A panic in the command filter lets the command through unchanged.
    arm(&mut c, "the command filter");
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    arm(&mut c, "INFO");
    assert!(!c.cmd(&["INFO", "wasm"]).text().contains("wasm_guests"));
    assert!(c.cmd(&["INFO", "wasm"]).text().contains("wasm_guests:1"));
    arm(&mut c, "the config change event");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "1000"]),
        Reply::Status("OK".into())
    );
    // A failed save of the guest record leaves a readable RDB: without guests, but with the
    // data types its keys need (here one a guest registered at runtime).
    assert_eq!(
        c.cmd(&["WASM.LOAD", guests::HELLOTYPE]),
        Reply::Bulk(b"hellotype".to_vec())
    );
    c.cmd(&["HELLOTYPE.INSERT", "k", "5"]);
    arm(&mut c, "saving guests to the RDB");
    assert_eq!(c.cmd(&["SAVE"]), Reply::Status("OK".into()));
    let log = server.log();
    assert!(log.contains("panic injected into"), "{log}");
    assert!(
        log.contains("the guests could not be saved in this RDB"),
        "{log}"
    );
    server
        .restart_with(ServerOptions::default())
        .expect("the RDB stays readable");
    let mut c = server.client();
    assert_eq!(c.cmd(&["TYPE", "k"]), Reply::Status("hellotype".into()));
    assert_eq!(c.cmd(&["WASM.LIST"]), Reply::Array(vec![]));
    // Without the config, WASM.DEBUG is refused; the config is set at startup only.
    assert!(
        c.cmd(&["CONFIG", "SET", "wasm.enable-debug", "1"])
            .error()
            .contains("immutable")
    );
    assert!(
        c.cmd(&["WASM.DEBUG", "PANIC", "INFO"])
            .error()
            .contains("disabled")
    );
}

/// Handle numbers are never reused; an instance that used half of them is replaced between
/// commands, quietly, instead of failing a command when they run out.
#[test]
fn handle_numbers_run_out_into_a_quiet_restart() {
    let server = Server::start_with(ServerOptions {
        module_args: vec!["LOAD".into(), guests::API_GUEST.into()],
        config: vec![("wasm.enable-debug".into(), "1".into())],
        ..Default::default()
    });
    let mut c = server.client();
    c.cmd(&["RPUSH", "list", "a", "b"]);
    let forward = |c: &mut redis_wasm_tests::Client| {
        c.cmd(&["API.FORWARD", "2", "LRANGE", "list", "0", "-1"])
    };
    let both = Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Bulk(b"b".to_vec())]);
    assert_eq!(forward(&mut c), both);
    let restarts = |c: &mut redis_wasm_tests::Client| c.info_u64("wasm", "wasm_restarts");
    assert_eq!(restarts(&mut c), 0);
    // Just below the limit: the instance still serves, and its next handles cross it.
    let below = (u32::MAX / 2).to_string();
    assert_eq!(
        c.cmd(&["WASM.DEBUG", "HANDLES", "api", &below]),
        Reply::Status("OK".into())
    );
    assert_eq!(forward(&mut c), both);
    assert_eq!(restarts(&mut c), 0);
    // The next command gets a fresh instance, with no error.
    assert_eq!(forward(&mut c), both);
    assert_eq!(restarts(&mut c), 1);
    // Even at the very last number, a command is answered.
    assert_eq!(
        c.cmd(&["WASM.DEBUG", "HANDLES", "api", &u32::MAX.to_string()]),
        Reply::Status("OK".into())
    );
    assert_eq!(forward(&mut c), both);
    assert!(
        c.cmd(&["WASM.DEBUG", "HANDLES", "nope", "1"])
            .error()
            .contains("no guest named 'nope'")
    );
}

/// One test per class of known Redis scripting vulnerabilities.
#[test]
fn scripting_vulnerability_classes_are_closed() {
    let server = evil_server(&[]);
    let mut c = server.client();
    c.cmd(&["WASM.LOAD", guests::BASICS]);
    c.cmd(&["WASM.LOAD", guests::API_GUEST]);
    // Deeply nested replies (CVE-2021-32675-style protocol abuse): refused, not sent.
    assert!(
        c.cmd(&["BASICS.NESTED", "1000"])
            .error()
            .contains("deeper than 128")
    );
    // Nor by forwarding a call reply inside the guest's own aggregates, guest after guest (a
    // Lua script parsing such a reply killed the server past its stack): the levels add up.
    let reply = c.cmd(&["API.FWDNEST", "28", "2", "BASICS.NESTED", "100"]); // 128 levels
    let mut depth = 0;
    let mut inner = &reply;
    while let Reply::Array(items) = inner {
        depth += 1;
        inner = &items[0];
    }
    assert_eq!((depth, inner), (128, &Reply::Int(100)));
    let too_deep = c.cmd(&["API.FWDNEST", "29", "2", "BASICS.NESTED", "100"]);
    assert!(
        too_deep
            .error()
            .contains("deeper than 128 levels (100 more inside 29 open)"),
        "{too_deep:?}"
    );
    // A forwarded call reply kept for a blocked client is copied into items, which take more
    // memory than its RESP bytes: that counts against wasm.max-reply-bytes too.
    let mut r = server.client();
    for chunk in 0..10 {
        let mut push = vec!["RPUSH".to_owned(), "ones".to_owned()];
        push.extend((0..5_000).map(|i| ((chunk + i) % 10).to_string()));
        let push: Vec<&str> = push.iter().map(String::as_str).collect();
        r.cmd(&push);
    }
    r.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "1mb"]);
    // 50,000 one-byte elements: 350 KB of RESP, about 3 MB as items.
    let direct = r.cmd(&["API.FORWARD", "2", "LRANGE", "ones", "0", "-1"]);
    assert_eq!(direct.array().len(), 50_000);
    let kept = r.cmd(&["API.WAIT", "bgforward", "0", "LRANGE", "ones", "0", "-1"]);
    assert!(
        kept.error().contains("larger than wasm.max-reply-bytes")
            && kept.error().contains("kept for a blocked client"),
        "{kept:?}"
    );
    r.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "256mb"]);
    let kept = r.cmd(&["API.WAIT", "bgforward", "0", "LRANGE", "ones", "0", "-1"]);
    assert_eq!(kept, direct);
    // Copied, a RESP2 null array stays one (not a null bulk string).
    assert_eq!(
        r.cmd_raw(&[
            "API.WAIT",
            "bgforward",
            "0",
            "XREAD",
            "STREAMS",
            "nosuch",
            "0"
        ]),
        b"*-1\r\n"
    );
    // A RESP3 reply converted for a RESP2 client goes item by item, whatever its size, with
    // nothing held: the limit is the RESP bytes, as when it is forwarded as it is.
    r.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "1mb"]);
    let converted = r.cmd(&["API.FORWARD", "3", "LRANGE", "ones", "0", "-1"]);
    assert_eq!(converted, direct);
    r.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "256mb"]);
    // An empty aggregate is a level too, the guest's own or forwarded.
    assert!(
        r.cmd(&["API.FWDNEST", "128", "2", "LRANGE", "nosuch", "0", "-1"])
            .error()
            .contains("deeper than 128 levels (1 more inside 128 open)")
    );
    assert!(
        r.cmd(&["API.FWDNEST", "127", "2", "LRANGE", "nosuch", "0", "-1"])
            .array()
            .len()
            == 1
    );
    // Through Lua, which calls the outer guest command: refused, the server alive.
    let script = "return redis.pcall('api.fwdnest', '100', '2', 'basics.nested', '100')";
    let lua = c.cmd(&["EVAL", script, "0"]);
    assert!(format!("{lua:?}").contains("deeper than 128"), "{lua:?}");
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    // Size overflows and edge integers: covered by `sizes_at_the_limits` and
    // `edge_integers_for_every_host_function`; one more: a length over the 512 MB limit.
    assert!(
        c.cmd(&["API.KEY", "string-truncate", "s", "600000000"])
            .error()
            .contains("out of range")
    );
    // State leaking between callers: a half-built reply or a handle never reaches the next call.
    assert_eq!(
        c.cmd(&["BASICS.PARTIAL-THEN-ERROR"]).error(),
        "ERR gave up half-way"
    );
    assert_eq!(
        c.cmd(&["BASICS.ECHO", "clean"]),
        Reply::Array(vec![Reply::Bulk(b"clean".to_vec())])
    );
    c.cmd(&["API.KEEP", "k"]);
    assert_eq!(c.cmd(&["API.USEKEPT"]).error(), "KEYERR closed");
    // Unloading while running: refused while busy, and not callable from a guest.
    assert!(
        c.cmd(&["API.WCALL", "2", "WASM.UNLOAD", "evil"])
            .error()
            .starts_with("CALLERR not-allowed")
    );
    let mut runner = server.client();
    runner.send(&[b"EVIL.LOOP"]);
    wait_busy(&server);
    assert!(
        server
            .client()
            .cmd(&["WASM.UNLOAD", "evil"])
            .error()
            .starts_with("BUSY")
    );
    server.client().cmd(&["WASM.KILL"]);
    assert!(runner.read().is_error());
    // Precompiled code and extra capabilities: refused at load (see foundation tests too).
    let elf = server.dir.join("x.cwasm");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0").unwrap();
    assert!(
        c.cmd(&["WASM.LOAD", elf.to_str().unwrap()])
            .error()
            .contains("precompiled")
    );
    pong(&server);
}

#[test]
fn files_and_sockets_are_there_without_any_capability() {
    // Rust's std links in wasi:filesystem and wasi:sockets (as other languages' toolchains do):
    // the guest loads, no file can be opened, and a socket traps naming the function.
    let server = Server::with_module_args(&["LOAD", guests::FS_USER]);
    let mut c = server.client();
    for path in ["/etc/passwd", "passwd", "."] {
        let read = c.cmd(&["FSUSER.READ", path]).text();
        assert!(
            read.starts_with("error: No such file or directory"),
            "{path}: {read}"
        );
    }
    let connect = c.cmd(&["FSUSER.CONNECT", "127.0.0.1:1"]);
    assert_eq!(
        connect.error(),
        "ERR guest 'fs-user' command 'fsuser.connect' trapped: the guest called \
         'wasi:sockets/tcp-create-socket#create-tcp-socket': this host grants no files or sockets"
    );
    // The trap re-created the instance; the guest answers as before.
    assert!(c.cmd(&["FSUSER.READ", "x"]).text().starts_with("error:"));
}

#[test]
fn an_init_reaching_for_a_client_while_an_rdb_loads_is_harmless() {
    // evil's init asks for the selected database, whether a key exists and signals a key: in
    // the init run by an RDB load, Redis's context has no client, and these answer harmlessly.
    let mut server = Server::start();
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["WASM.LOAD", guests::EVIL]),
        Reply::Bulk(b"evil".to_vec())
    );
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), Reply::Status("OK".into()));
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
    c.cmd(&["SAVE"]);
    server.restart().expect("restart from the RDB");
    assert_eq!(server.client().cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

#[test]
fn a_start_function_that_never_returns_stops_at_the_init_limits() {
    let server = evil_server(&[("busy-reply-threshold", "300")]);
    let mut c = server.client();
    let component = hand_made::guest(Trick::EndlessStart);
    // The load's last step runs from a blocked client's callback, which cannot yield: the busy
    // threshold stops it (wasm.max-init-ms is 10 s).
    let started = Instant::now();
    let load = c.cmd_bytes(&[b"WASM.LOAD", &component]);
    assert!(
        load.error().contains(
            "cannot instantiate the guest: ran longer than busy-reply-threshold (300 ms)"
        ),
        "{load:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Inside MULTI the whole load runs inline; wasm.max-init-ms below the threshold stops it.
    c.cmd(&["CONFIG", "SET", "wasm.max-init-ms", "200"]);
    c.cmd(&["MULTI"]);
    c.cmd_bytes(&[b"WASM.LOAD", &component]);
    let exec = c.cmd(&["EXEC"]);
    assert_eq!(
        exec.array()[0].error(),
        format!(
            "ERR cannot load a module of {} bytes: cannot instantiate the guest: ran longer \
             than 200 ms (wasm.max-init-ms)",
            component.len()
        )
    );
    pong(&server);
    // Nothing of it stayed; the loaded guest still answers.
    assert_eq!(c.cmd(&["WASM.LIST"]).array().len(), 1);
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

/// Context switches of the server's epoch thread so far.
fn epoch_thread_switches(server: &Server) -> u64 {
    let tasks = format!("/proc/{}/task", server.pid());
    for task in std::fs::read_dir(&tasks).unwrap().flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim() == "wasm-epoch" {
            return redis_wasm_tests::context_switches(&task.path());
        }
    }
    panic!("no wasm-epoch thread in {tasks}");
}

#[test]
fn an_idle_server_lets_the_epoch_thread_sleep_and_a_guest_wakes_it() {
    let server = evil_server(&[("wasm.max-call-ms", "300")]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
    // 100 ticks with no guest code, and the thread sleeps; ticking, it switches ~500 times in
    // 500 ms. (Ticks run late on a loaded machine: wait for the quiet, up to 10 s.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = epoch_thread_switches(&server);
        std::thread::sleep(Duration::from_millis(500));
        let switches = epoch_thread_switches(&server) - before;
        if switches < 25 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle epoch thread still switched {switches} times in 500 ms"
        );
    }
    // The next guest wakes it, and a running guest keeps it ticking past those 100 ticks: the
    // time limit, which counts ticks, stops a runaway guest.
    let started = Instant::now();
    assert_eq!(
        c.cmd(&["EVIL.LOOP"]).error(),
        "ERR guest 'evil' command 'evil.loop' ran longer than 300 ms (wasm.max-call-ms)"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    pong(&server);
}

/// Loads each hand-made guest (with a load argument, so that init gets a list to allocate),
/// expecting the load to fail with a message containing the case's text within 5 s; the server
/// answers meanwhile, and nothing of the failed loads stays.
fn assert_loads_refused(server: &Server, cases: &[(Trick, &str)]) {
    let mut c = server.client();
    for &(trick, error) in cases {
        let started = Instant::now();
        let load = c.cmd_bytes(&[b"WASM.LOAD", &hand_made::guest(trick), b"ARGS", b"a"]);
        assert!(load.error().contains(error), "{trick:?}: {load:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{trick:?}");
        pong(server);
    }
    assert_eq!(c.cmd(&["WASM.LIST"]).array().len(), 1);
    assert_eq!(c.cmd(&["EVIL.CALLS", "1"]), Reply::Int(1));
}

#[test]
fn start_allocator_and_post_return_functions_cannot_escape_init() {
    let server = evil_server(&[("busy-reply-threshold", "300")]);
    assert_loads_refused(
        &server,
        &[
            // Host calls from a start function find no command and do nothing; the stray reply
            // is remembered as the guest's mistake and fails the load once init has run.
            (
                Trick::StartCallsTheHost,
                "init failed: reply functions can only be called while a command runs",
            ),
            // wasmtime calls the allocator to pass init its arguments, and the post-return after
            // init returns: both inside the call, under init's clock.
            (
                Trick::EndlessRealloc,
                "init ran longer than busy-reply-threshold (300 ms)",
            ),
            (
                Trick::EndlessPostReturn,
                "init ran longer than busy-reply-threshold (300 ms)",
            ),
            // The component model forbids the allocator to leave the instance.
            (
                Trick::ReallocCallsTheHost,
                "init trapped: wasm trap: cannot leave component instance",
            ),
            (
                Trick::ResultOutOfBounds,
                "init trapped: pointer out of bounds of memory",
            ),
        ],
    );
}

#[test]
fn components_that_cannot_start_or_do_not_fit_the_guest_world_are_refused() {
    let server = evil_server(&[("wasm.max-memory", "32mb")]);
    assert_loads_refused(
        &server,
        &[
            (
                Trick::HugeMemory,
                "cannot instantiate the guest: ran out of memory (wasm.max-memory (33554432 \
                 bytes) refused growing to 4294967296 bytes)",
            ),
            (
                Trick::HugeTable,
                "cannot instantiate the guest: trapped: table minimum size of 100000000 \
                 elements exceeds table limits",
            ),
            // Tables and every memory count towards the instance's wasm.max-memory (each
            // memory alone would fit).
            (
                Trick::ManyTables,
                "cannot instantiate the guest: ran out of memory (wasm.max-memory (33554432 \
                 bytes) refused growing to",
            ),
            (
                Trick::ManyMemories,
                "cannot instantiate the guest: ran out of memory (wasm.max-memory (33554432 \
                 bytes) refused growing to",
            ),
            (
                Trick::ImportsAnUnknownFunction,
                "cannot link the guest: component imports instance \
                 `redis:module/context@0.3.2`, but a matching implementation was not found in \
                 the linker: instance export `no-such-function` has the wrong type: function \
                 implementation is missing",
            ),
            (
                Trick::ImportsHttp,
                "the guest imports 'wasi:http/outgoing-handler@0.2.0', which this host does not \
                 grant",
            ),
            (
                Trick::NotAGuest,
                "the component does not export redis:module/guest: it is not a redis-wasm guest",
            ),
            (
                Trick::NoInvoke,
                "the guest's 'redis:module/guest@0.3.2' export has no function 'invoke'",
            ),
            (
                Trick::InvokeOfTheWrongType,
                "the guest's invoke export has the wrong type: type mismatch with results",
            ),
            (
                Trick::PackedInvokeOfTheWrongType,
                "the guest's packed-arguments.invoke export has the wrong type: type mismatch \
                 with parameters",
            ),
            (
                Trick::WordsInvokeOfTheWrongType,
                "the guest's word-arguments.invoke export has the wrong type: type mismatch \
                 with parameters",
            ),
            (
                Trick::WordArgumentsBeforeTheirVersion,
                "the guest exports 'redis:module/guest@0.3.4' and \
                 'redis:module/word-arguments@0.3.4', which no world has together \
                 (redis:module/word-arguments came in 0.3.5)",
            ),
            (
                Trick::PackedArgumentsBeforeTheirVersion,
                "the guest exports 'redis:module/guest@0.3.2' and \
                 'redis:module/packed-arguments@0.3.2', which no world has together \
                 (redis:module/packed-arguments came in 0.3.4)",
            ),
        ],
    );
}

#[test]
fn busy_reply_threshold_0_runs_guests_uninterrupted_as_it_does_scripts() {
    // Redis's 0 turns the busy mechanism off: no -BUSY for other clients, no stop where the
    // guest cannot yield; only wasm.max-call-ms stops a runaway.
    let server = evil_server(&[("busy-reply-threshold", "0"), ("wasm.max-call-ms", "400")]);
    let mut c = server.client();
    let exec = c.cmd(&["EVAL", "return redis.call('evil.calls', '20000')", "0"]);
    assert!(!exec.is_error(), "{exec:?}");
    let mut runner = server.client();
    let mut other = server.client();
    runner.send(&[b"EVIL.LOOP"]);
    std::thread::sleep(Duration::from_millis(100));
    other.send(&[b"GET", b"x"]);
    assert_eq!(
        runner.read().error(),
        "ERR guest 'evil' command 'evil.loop' ran longer than 400 ms (wasm.max-call-ms)"
    );
    assert_eq!(other.read(), Reply::Nil);
}

#[test]
fn a_big_commands_declared_keys_give_their_memory_back() {
    // The host keeps a command's declared keys to check later opens against them; a command
    // with many big keys must not leave that room in Redis's used_memory (eviction goes by it).
    let server = Server::with_module_args(&["LOAD", guests::BASICS]);
    let mut c = server.client();
    let keys: Vec<String> = (0..20_000).map(|i| format!("k{i:0>500}")).collect();
    let mut command = vec!["BASICS.KEYS"];
    for key in &keys {
        command.extend([key.as_str(), "v"]);
    }
    let before = c.info_u64("memory", "used_memory");
    assert_eq!(c.cmd(&command), Reply::Status("OK".into()));
    let after = c.info_u64("memory", "used_memory");
    assert!(
        after < before + (4 << 20),
        "used_memory {before} before a command with 20,000 keys of 500 bytes, {after} after"
    );
}
