//! Blocking commands: the helloblock port (Redis's `src/modules/helloblock.c`), a blocking pop
//! on keys (`examples/bpop`) and HELLOTYPE.BRANGE — with several clients, timeouts,
//! disconnections, unloads, replication, and other clients served all along.

use std::time::{Duration, Instant};

use redis_wasm_tests::{Client, Reply, Server, ServerOptions, guests};

fn blocking_server() -> Server {
    Server::start_with(ServerOptions {
        module_args: vec![
            "LOAD".into(),
            guests::HELLOBLOCK.into(),
            "LOAD".into(),
            guests::BPOP.into(),
            "LOAD".into(),
            guests::HELLOTYPE.into(),
        ],
        ..Default::default()
    })
}

/// Sends a command without waiting for its reply.
fn send(c: &mut Client, args: &[&str]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&args);
}

fn info_field(server: &Server, field: &str) -> i64 {
    server
        .client()
        .cmd(&["INFO", "wasm"])
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("wasm_{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wasm_{field} in INFO"))
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The slowest of 20 PINGs from another client.
fn slowest_ping(server: &Server) -> Duration {
    let mut c = server.client();
    (0..20)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
            std::thread::sleep(Duration::from_millis(5));
            started.elapsed()
        })
        .max()
        .unwrap()
}

#[test]
fn hello_block_replies_from_a_background_job_while_others_are_served() {
    let server = blocking_server();
    let mut clients: Vec<Client> = (0..4).map(|_| server.client()).collect();
    let started = Instant::now();
    for c in &mut clients {
        send(c, &["HELLO.BLOCK", "1", "5000"]);
    }
    // Four background jobs sleep in parallel; the main thread keeps answering.
    assert!(slowest_ping(&server) < Duration::from_millis(200));
    wait_until("the jobs run", || {
        info_field(&server, "background_jobs") > 0
    });
    for c in &mut clients {
        let reply = c.read();
        assert!(reply.int() >= 0, "a random number: {reply:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "four one-second jobs in parallel took {took:?}"
    );
    wait_until("the jobs end", || {
        info_field(&server, "background_jobs") == 0
    });
    assert_eq!(info_field(&server, "blocked_clients"), 0);
}

#[test]
fn hello_block_times_out_and_a_late_job_is_dropped() {
    let server = blocking_server();
    let mut c = server.client();
    let started = Instant::now();
    assert_eq!(
        c.cmd(&["HELLO.BLOCK", "2", "300"]),
        Reply::Status("Request timedout".into())
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    // The cancelled job ends without touching the (released) client.
    wait_until("the job ends", || {
        info_field(&server, "background_jobs") == 0
    });
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    // A timeout is no fault of the guest: the cancelled job is neither a trap nor an error.
    assert_eq!(info_field(&server, "traps"), 0);
    assert_eq!(info_field(&server, "errors"), 0);
    // It counts as one call, as a blocked BLPOP does, though its timeout phase ran the guest.
    let stats = c.cmd(&["INFO", "wasm_commandstats"]).text();
    assert!(
        stats.contains("wasm_cmdstat_hello.block:calls=1,"),
        "{stats}"
    );
    assert_eq!(
        c.cmd(&["HELLO.BLOCK", "x", "1"]).error(),
        "ERR invalid count"
    );
    assert_eq!(
        c.cmd(&["HELLO.BLOCK", "1"]).error(),
        "ERR wrong number of arguments for 'hello.block' command"
    );
    // As the C module: a negative timeout has passed already; a negative delay (C's unsigned
    // sleep of ages) waits for the timeout.
    assert_eq!(
        c.cmd(&["HELLO.BLOCK", "0", "-1"]),
        Reply::Status("Request timedout".into())
    );
    assert_eq!(
        c.cmd(&["HELLO.BLOCK", "-1", "200"]),
        Reply::Status("Request timedout".into())
    );
}

#[test]
fn hello_keys_scans_in_the_background() {
    let server = blocking_server();
    let mut c = server.client();
    // CLIENT UNBLOCK ... TIMEOUT during the scan gets the timeout answer.
    for i in 0..20_000 {
        send(&mut c, &["SET", &format!("filler:{i}"), "v"]);
    }
    for _ in 0..20_000 {
        c.read();
    }
    let id = c.cmd(&["CLIENT", "ID"]).int().to_string();
    send(&mut c, &["HELLO.KEYS"]);
    // (Unless the scan ended first: then there was nothing to unblock.)
    let unblocked = server.client().cmd(&["CLIENT", "UNBLOCK", &id, "TIMEOUT"]);
    let answer = c.read();
    if unblocked == Reply::Int(1) {
        assert_eq!(answer, Reply::Status("Request timedout".into()));
    } else {
        assert_eq!(answer.array().len(), 20_000);
    }
    c.cmd(&["FLUSHALL"]);
    for i in 0..300 {
        c.cmd(&["SET", &format!("key:{i}"), "v"]);
    }
    let mut keys: Vec<String> = c
        .cmd(&["HELLO.KEYS"])
        .array()
        .iter()
        .map(Reply::text)
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 300);
    assert!(keys.contains(&"key:42".to_owned()));
}

#[test]
fn a_disconnected_blocked_client_is_cleaned_up() {
    let server = blocking_server();
    {
        let mut gone = server.client();
        send(&mut gone, &["HELLO.BLOCK", "30", "0"]);
        let mut gone_too = server.client();
        send(&mut gone_too, &["BPOP.BLPOP", "nothing", "0"]);
        wait_until("both block", || info_field(&server, "blocked_clients") == 2);
    }
    // The job is cancelled at its next tick; both handles are released.
    wait_until("the handles are released", || {
        info_field(&server, "blocked_clients") == 0
    });
    wait_until("the job is cancelled", || {
        info_field(&server, "background_jobs") == 0
    });
    let mut c = server.client();
    c.cmd(&["RPUSH", "nothing", "a"]);
    assert_eq!(
        c.cmd(&["LLEN", "nothing"]),
        Reply::Int(1),
        "nobody popped it"
    );
}

#[test]
fn blocking_pop_serves_waiters_in_order() {
    let server = blocking_server();
    let mut first = server.client();
    let mut second = server.client();
    send(&mut first, &["BPOP.BLPOP", "a", "b", "5"]);
    wait_until("the first blocks", || {
        info_field(&server, "blocked_clients") == 1
    });
    send(&mut second, &["BPOP.BLPOP", "b", "5"]);
    wait_until("the second blocks", || {
        info_field(&server, "blocked_clients") == 2
    });
    let mut c = server.client();
    assert_eq!(c.cmd(&["RPUSH", "b", "x", "y"]), Reply::Int(2));
    let pair = |k: &str, v: &str| Reply::Array(vec![Reply::Bulk(k.into()), Reply::Bulk(v.into())]);
    assert_eq!(first.read(), pair("b", "x"));
    assert_eq!(second.read(), pair("b", "y"));
    assert_eq!(c.cmd(&["EXISTS", "b"]), Reply::Int(0));
    // Served at once when a list has elements; a timeout answers a null array.
    c.cmd(&["RPUSH", "a", "now"]);
    assert_eq!(c.cmd(&["BPOP.BLPOP", "a", "1"]), pair("a", "now"));
    let started = Instant::now();
    assert_eq!(c.cmd_raw(&["BPOP.BLPOP", "a", "0.2"]), b"*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A timeout past the host's longest is refused, as BLPOP refuses one, before anything is
    // popped; so is a negative one, in BLPOP's words.
    assert_eq!(
        c.cmd(&["BPOP.BLPOP", "a", "1e20"]).error(),
        "ERR timeout is out of range"
    );
    c.cmd(&["RPUSH", "full", "x"]);
    assert_eq!(
        c.cmd(&["BPOP.BLPOP", "full", "1e20"]).error(),
        "ERR timeout is out of range"
    );
    assert_eq!(
        c.cmd(&["BPOP.BLPOP", "full", "-1"]).error(),
        "ERR timeout is negative"
    );
    assert_eq!(c.cmd(&["LLEN", "full"]), Reply::Int(1));
    // A waited-on key that becomes another type is ignored, as BLPOP ignores it: the client
    // waits on until the timeout.
    send(&mut first, &["BPOP.BLPOP", "z", "0.5"]);
    wait_until("it blocks", || info_field(&server, "blocked_clients") == 1);
    c.cmd(&["ZADD", "z", "1", "m"]);
    assert_eq!(first.read(), Reply::Nil);
    // Where a client cannot block (MULTI, a script), it answers as a timeout would.
    c.cmd(&["MULTI"]);
    c.cmd(&["BPOP.BLPOP", "a", "0"]);
    assert_eq!(c.cmd(&["EXEC"]), Reply::Array(vec![Reply::Nil]));
    assert!(
        c.cmd(&["EVAL", "return redis.call('hello.block', '1', '100')", "0"])
            .error()
            .contains("cannot be blocked inside a script (EVAL or FCALL)")
    );
}

#[test]
fn hellotype_brange_blocks_until_the_key_gets_a_value() {
    let server = blocking_server();
    let mut waiting = server.client();
    send(&mut waiting, &["HELLOTYPE.BRANGE", "t", "0", "5", "5000"]);
    wait_until("it blocks", || info_field(&server, "blocked_clients") == 1);
    // A list push on another key does not wake it; an insert into the key does.
    let mut c = server.client();
    c.cmd(&["RPUSH", "unrelated", "x"]);
    assert_eq!(c.cmd(&["HELLOTYPE.INSERT", "t", "9"]), Reply::Int(1));
    assert_eq!(waiting.read(), Reply::Array(vec![Reply::Int(9)]));
    // Served at once when the key has a value; a timeout answers as the C module does.
    assert_eq!(
        c.cmd(&["HELLOTYPE.BRANGE", "t", "0", "5", "100"]),
        Reply::Array(vec![Reply::Int(9)])
    );
    assert_eq!(
        c.cmd(&["HELLOTYPE.BRANGE", "empty", "0", "5", "100"]),
        Reply::Status("Request timedout".into())
    );
    assert_eq!(
        c.cmd(&["HELLOTYPE.BRANGE", "t", "0", "5", "soon"]).error(),
        "ERR invalid timeout parameter"
    );
    assert_eq!(
        c.cmd(&["HELLOTYPE.BRANGE", "empty", "0", "5", "-1"]),
        Reply::Status("Request timedout".into())
    );
}

#[test]
fn unloading_a_guest_answers_its_blocked_clients() {
    let server = blocking_server();
    let mut on_keys = server.client();
    send(&mut on_keys, &["BPOP.BLPOP", "q", "0"]);
    let mut in_job = server.client();
    send(&mut in_job, &["HELLO.BLOCK", "30", "0"]);
    wait_until("both block", || info_field(&server, "blocked_clients") == 2);
    let mut c = server.client();
    assert_eq!(c.cmd(&["WASM.UNLOAD", "bpop"]), Reply::Status("OK".into()));
    assert!(
        on_keys
            .read()
            .error()
            .contains("guest 'bpop' was unloaded or replaced"),
    );
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", "helloblock"]),
        Reply::Status("OK".into())
    );
    assert!(
        in_job
            .read()
            .error()
            .contains("guest 'helloblock' was unloaded or replaced"),
    );
    wait_until("everything is released", || {
        info_field(&server, "blocked_clients") == 0 && info_field(&server, "background_jobs") == 0
    });
}

#[test]
fn writes_made_serving_a_blocked_client_reach_the_replica() {
    let master = blocking_server();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut waiter = master.client();
    send(&mut waiter, &["BPOP.BLPOP", "jobs", "5"]);
    wait_until("it blocks", || info_field(&master, "blocked_clients") == 1);
    let mut c = master.client();
    c.cmd(&["RPUSH", "jobs", "one", "two"]);
    assert_eq!(
        waiter.read(),
        Reply::Array(vec![
            Reply::Bulk(b"jobs".to_vec()),
            Reply::Bulk(b"one".to_vec())
        ])
    );
    master.assert_same_dataset(&replica);
    assert_eq!(
        replica.client().cmd(&["LRANGE", "jobs", "0", "-1"]),
        Reply::Array(vec![Reply::Bulk(b"two".to_vec())])
    );
}

#[test]
fn unblock_abort_and_mistakes_around_a_block() {
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let (mut a, mut b) = (server.client(), server.client());
    send(&mut a, &["API.WAIT", "plain"]);
    send(&mut b, &["API.WAIT", "plain", "5000"]);
    wait_until("both block", || info_field(&server, "blocked_clients") == 2);
    // Another command of the guest unblocks them with private data.
    let mut c = server.client();
    assert_eq!(c.cmd(&["API.WAKE", "hi"]), Reply::Int(2));
    assert_eq!(a.read(), Reply::Bulk(b"hi".to_vec()));
    assert_eq!(b.read(), Reply::Bulk(b"hi".to_vec()));
    // A timed-out client cannot be unblocked any more.
    assert_eq!(
        c.cmd(&["API.WAIT", "plain", "100"]),
        Reply::Status("timed out".into())
    );
    assert_eq!(c.cmd(&["API.WAKE", "late"]), Reply::Int(0));
    // Aborting lets the command reply; a reply after blocking goes through the block.
    assert_eq!(
        c.cmd(&["API.WAIT", "abort"]),
        Reply::Status("aborted".into())
    );
    assert_eq!(
        c.cmd(&["API.WAIT", "replythen"]),
        Reply::Status("anyway".into())
    );
    assert_eq!(c.cmd(&["API.WAIT", "replyint"]), Reply::Int(7));
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    assert!(
        c.cmd(&["API.WAIT", "twice"])
            .text()
            .contains("already blocked its client")
    );
    // A trap after blocking answers the blocked client with the error.
    assert!(
        c.cmd(&["API.WAIT", "trap"])
            .error()
            .contains("panicked: trapped after blocking")
    );
    // A client blocked on keys cannot be handed a reply: a command that replies or traps after
    // blocking it on keys unblocks it and answers it directly.
    assert_eq!(
        c.cmd(&["API.WAIT", "keysreply"]),
        Reply::Status("anyway".into())
    );
    assert!(
        c.cmd(&["API.WAIT", "keystrap"])
            .error()
            .contains("panicked: trapped after blocking on keys")
    );
    assert_eq!(info_field(&server, "blocked_clients"), 0);
    // A background job reads through call, but cannot write or open keys.
    let job = c.cmd(&["API.WAIT", "bgwrite"]);
    let job: Vec<String> = job.array().iter().map(Reply::text).collect();
    assert!(
        job[0].contains("write command 'set' called from a background job"),
        "{job:?}"
    );
    assert!(job[1].contains("background job"), "{job:?}");
    assert_eq!(job[2], "PONG");
    assert_eq!(c.cmd(&["EXISTS", "api:bg"]), Reply::Int(0));
    wait_until("everything is released", || {
        info_field(&server, "blocked_clients") == 0
    });
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn a_job_runs_as_the_blocked_clients_user_whoever_starts_it() {
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let mut c = server.client();
    c.cmd(&[
        "ACL", "SETUSER", "alice", "on", "nopass", "~*", "+@all", "-ping",
    ]);
    let mut alice = server.client();
    alice.cmd(&["AUTH", "alice", "x"]);
    send(&mut alice, &["API.WAIT", "plain"]);
    wait_until("alice blocks", || {
        info_field(&server, "blocked_clients") == 1
    });
    // The default user starts the job; its calls (a PING) run as alice, who may not PING. (A
    // denied call from a job used to crash Redis 7.0, which logs the denial with the job's fake
    // client's user: NULL.)
    assert_eq!(c.cmd(&["API.BGFOR"]), Reply::Int(1));
    let answer = alice.read();
    assert!(
        answer
            .error()
            .contains("no permissions to run the 'ping' command"),
        "{answer:?}"
    );
}

#[test]
fn guest_commands_a_job_calls_open_keys_only_as_the_jobs_user() {
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST, "LOAD", guests::BASICS]);
    let mut c = server.client();
    c.cmd(&["SET", "secret", "x"]);
    c.cmd(&["SET", "allowed:1", "x"]);
    c.cmd(&[
        "ACL",
        "SETUSER",
        "limited",
        "on",
        "nopass",
        "~allowed:*",
        "+@all",
    ]);
    let mut limited = server.client();
    limited.cmd(&["AUTH", "limited", "x"]);
    // BASICS.PEEK declares no keys: the key it opens is checked against the job's user, as on
    // the main thread, whatever calls it.
    // The reply describes BASICS.PEEK's: [whether the key exists, what opening it gave].
    let peek = |c: &mut Client, key: &str| {
        format!(
            "{:?}",
            c.cmd(&["API.WAIT", "bgcall", "0", "BASICS.PEEK", key])
        )
    };
    let denied = peek(&mut limited, "secret");
    assert!(
        denied.contains("[\"integer\", :0]")
            && denied.contains("no permissions to access the 'secret' key"),
        "{denied}"
    );
    let allowed = peek(&mut limited, "allowed:1");
    assert!(
        allowed.contains("[\"integer\", :1]") && allowed.contains("opened"),
        "{allowed}"
    );
    let default_user = peek(&mut c, "secret");
    assert!(default_user.contains("opened"), "{default_user}");
    // A guest command the job's user may not run is refused as the line Redis checks, its
    // dispatcher's (checking the guest command's own name, which Redis does not know, let it
    // through to Redis's own check, whose denial crashed Redis 7.0 on a job's context).
    c.cmd(&[
        "ACL",
        "SETUSER",
        "noread",
        "on",
        "nopass",
        "~*",
        "+@all",
        "-wasm.invoke-readonly",
    ]);
    let mut noread = server.client();
    noread.cmd(&["AUTH", "noread", "x"]);
    for (client, line) in [
        (&mut limited, ["BASICS.KEYS", "secret", "x"]),
        (&mut noread, ["BASICS.ECHO", "hi", "there"]),
    ] {
        let mut command = vec!["API.WAIT", "bgcall", "0"];
        command.extend(line);
        let refused = client.cmd(&command);
        assert!(refused.error().contains("no-permission"), "{refused:?}");
    }
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn a_guest_command_a_callback_calls_does_not_yield() {
    // A blocked client's callback cannot yield (Redis does not protect that client meanwhile:
    // a disconnection during the yield freed it under Redis's feet), and neither can a guest
    // command it calls: it stops at busy-reply-threshold, and other clients wait.
    let server = Server::start_with(ServerOptions {
        module_args: vec![
            "LOAD".into(),
            guests::API_GUEST.into(),
            "LOAD".into(),
            guests::EVIL.into(),
        ],
        config: vec![("busy-reply-threshold".into(), "200".into())],
        ..Default::default()
    });
    let mut waiter = server.client();
    send(&mut waiter, &["API.WAIT", "plain"]);
    wait_until("the client blocks", || {
        info_field(&server, "blocked_clients") == 1
    });
    let mut c = server.client();
    assert_eq!(c.cmd(&["API.WAKE", "call EVIL.LOOP"]), Reply::Int(1));
    let mut other = server.client();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(other.cmd(&["GET", "x"]), Reply::Nil);
    let answer = waiter.read();
    let text = format!("{answer:?}");
    // Stopped at the threshold: the called guest, or the callback around it (whichever clock
    // saw the threshold first).
    assert!(
        text.contains(
            "called by a guest invocation that cannot yield, where it cannot let other clients in"
        ) || text.contains("in a blocked client's callback, where it cannot let other clients in"),
        "{text}"
    );
}

#[test]
fn a_job_outlives_its_client_safely() {
    // The job keeps calling Redis through its client's thread-safe context while the client
    // times out, disconnects, or its guest is unloaded: the handle is released only when the
    // job, cancelled, ends.
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let mut c = server.client();
    for _ in 0..5 {
        assert_eq!(
            c.cmd(&["API.WAIT", "spin", "50"]),
            Reply::Status("timed out".into())
        );
    }
    for _ in 0..5 {
        let mut gone = server.client();
        send(&mut gone, &["API.WAIT", "spin"]);
        wait_until("the job runs", || {
            info_field(&server, "background_jobs") == 1
        });
        drop(gone);
        wait_until("the job is cancelled", || {
            info_field(&server, "background_jobs") == 0
        });
    }
    // Woken by another command while its job runs: the job is cancelled, the client gets the
    // data once the job has ended.
    let mut a = server.client();
    send(&mut a, &["API.WAIT", "spin"]);
    wait_until("the job runs", || {
        info_field(&server, "background_jobs") == 1
    });
    assert_eq!(c.cmd(&["API.WAKE", "woken"]), Reply::Int(1));
    assert_eq!(a.read(), Reply::Bulk(b"woken".to_vec()));
    assert_eq!(info_field(&server, "background_jobs"), 0);
    // Its guest unloaded while its job runs: the client gets the unload error.
    send(&mut a, &["API.WAIT", "spin"]);
    wait_until("the job runs", || {
        info_field(&server, "background_jobs") == 1
    });
    assert!(!c.cmd(&["WASM.UNLOAD", "api"]).is_error());
    assert!(a.read().error().contains("was unloaded or replaced"));
    wait_until("all released", || {
        info_field(&server, "background_jobs") == 0 && info_field(&server, "blocked_clients") == 0
    });
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn a_callback_cannot_write_while_clients_are_paused() {
    // Redis runs blocked clients' callbacks even while clients are paused, when 7.0 asserts that
    // nothing is propagated: with a replica attached, a write there would abort the server.
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let replica = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    replica.replicate_from(&server);
    let mut a = server.client();
    send(&mut a, &["API.WAIT", "plain"]);
    wait_until("blocked", || info_field(&server, "blocked_clients") == 1);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["CLIENT", "PAUSE", "5000", "WRITE"]),
        Reply::Status("OK".into())
    );
    assert_eq!(c.cmd(&["API.WAKE", "write"]), Reply::Int(1));
    let reply = a.read();
    let texts: Vec<String> = reply.array().iter().map(Reply::text).collect();
    assert!(texts[0].contains("clients are paused"), "{texts:?}");
    assert!(texts[1].contains("clients are paused"), "{texts:?}");
    assert_eq!(c.cmd(&["CLIENT", "UNPAUSE"]), Reply::Status("OK".into()));
    // Unpaused, the same callback writes.
    send(&mut a, &["API.WAIT", "plain"]);
    wait_until("blocked again", || {
        info_field(&server, "blocked_clients") == 1
    });
    assert_eq!(c.cmd(&["API.WAKE", "write"]), Reply::Int(1));
    let texts: Vec<String> = a.read().array().iter().map(Reply::text).collect();
    assert_eq!(texts, ["written", "written"]);
    server.assert_same_dataset(&replica);
}

#[test]
fn a_callback_cannot_hold_the_server_past_the_busy_threshold() {
    // A reply callback runs from Redis's event loop with no client of its own to protect, so it
    // cannot yield: it is stopped at busy-reply-threshold.
    let server = Server::start_with(ServerOptions {
        module_args: vec!["LOAD".into(), guests::API_GUEST.into()],
        config: vec![("busy-reply-threshold".into(), "200".into())],
        ..Default::default()
    });
    let mut a = server.client();
    send(&mut a, &["API.WAIT", "plain"]);
    wait_until("blocked", || info_field(&server, "blocked_clients") == 1);
    let mut c = server.client();
    let started = Instant::now();
    assert_eq!(c.cmd(&["API.WAKE", "loop"]), Reply::Int(1));
    let reply = a.read();
    assert!(
        reply.error().contains(
            "ran longer than busy-reply-threshold (200 ms) in a blocked client's callback, \
                 where it cannot let other clients in"
        ),
        "{reply:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The guest restarts and serves again; the client's reply stream is intact.
    assert_eq!(a.cmd(&["PING"]), Reply::Status("PONG".into()));
    send(&mut a, &["API.WAIT", "plain"]);
    wait_until("blocked again", || {
        info_field(&server, "blocked_clients") == 1
    });
    assert_eq!(c.cmd(&["API.WAKE", "fine"]), Reply::Int(1));
    assert_eq!(a.read(), Reply::Bulk(b"fine".to_vec()));
    // The host reads the threshold back (a CONFIG GET call) only when it is the one changed: other
    // CONFIG SETs leave no trace in SLOWLOG.
    c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    c.cmd(&["SLOWLOG", "RESET"]);
    c.cmd(&["CONFIG", "SET", "hz", "11"]);
    let slowlog = format!("{:?}", c.cmd(&["SLOWLOG", "GET", "100"]));
    assert!(!slowlog.contains("busy-reply-threshold"), "{slowlog}");
    // A new threshold set at runtime is followed.
    c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "300"]);
    send(&mut a, &["API.WAIT", "plain"]);
    wait_until("blocked a third time", || {
        info_field(&server, "blocked_clients") == 1
    });
    assert_eq!(c.cmd(&["API.WAKE", "loop"]), Reply::Int(1));
    let reply = a.read();
    assert!(
        reply.error().contains("busy-reply-threshold (300 ms)"),
        "{reply:?}"
    );
}

#[test]
fn client_unblock_of_a_client_whose_answer_is_on_its_way_keeps_the_answer() {
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let mut blocked = server.client();
    let id = blocked.cmd(&["CLIENT", "ID"]).int().to_string();
    let mut waker = server.client();
    // `spin`: a background job works for the client; the wake-up cancels it, and the client is
    // answered once the job has ended.
    for (wait, mode) in [
        ("plain", "TIMEOUT"),
        ("plain", "ERROR"),
        ("spin", "TIMEOUT"),
        ("spin", "ERROR"),
    ] {
        send(&mut blocked, &["API.WAIT", wait, "0"]);
        wait_until("the client blocks", || {
            info_field(&server, "blocked_clients") == 1
        });
        // One pipeline, so both run in the same event-loop turn: the client is unblocked, and
        // Redis delivers its answer only at the end of the turn. CLIENT UNBLOCK then finds it
        // answered (Redis 7.0 alone would drop the answer and reply 1).
        waker.send_together(&[
            &[b"API.WAKE", b"woken"],
            &[b"CLIENT", b"UNBLOCK", id.as_bytes(), mode.as_bytes()],
        ]);
        assert_eq!(waker.read(), Reply::Int(1));
        assert_eq!(waker.read(), Reply::Int(0), "{mode}");
        assert_eq!(blocked.read(), Reply::Bulk(b"woken".to_vec()), "{mode}");
        assert_eq!(
            blocked.cmd(&["ECHO", "next"]),
            Reply::Bulk(b"next".to_vec())
        );
    }
    // A client still waiting is unblocked as usual.
    send(&mut blocked, &["API.WAIT", "plain", "0"]);
    wait_until("the client blocks", || {
        info_field(&server, "blocked_clients") == 1
    });
    assert_eq!(
        waker.cmd(&["CLIENT", "UNBLOCK", &id, "TIMEOUT"]),
        Reply::Int(1)
    );
    assert_eq!(blocked.read(), Reply::Status("timed out".into()));
}

#[test]
fn client_unblock_in_the_turn_a_client_was_served_on_keys_or_aborted_answers_0() {
    let server = Server::start_with(ServerOptions {
        module_args: ["LOAD", guests::BPOP, "LOAD", guests::API_GUEST]
            .map(String::from)
            .to_vec(),
        config: vec![("enable-debug-command".into(), "yes".into())],
        ..Default::default()
    });
    let mut sleeper = server.client();
    let mut blocked = server.client();
    let id = blocked.cmd(&["CLIENT", "ID"]).int().to_string();
    let mut other = server.client();
    let wait_blocked = || {
        wait_until("the client blocks", || {
            info_field(&server, "blocked_clients") == 1
        })
    };
    for mode in ["ERROR", "TIMEOUT"] {
        // Served by a push: Redis unblocks it at the end of the turn, where CLIENT UNBLOCK
        // ERROR would add a second reply (and TIMEOUT answer 1 for a client already served).
        send(&mut blocked, &["BPOP.BLPOP", "bk", "0"]);
        wait_blocked();
        other.send_together(&[
            &[b"RPUSH", b"bk", b"a"],
            &[b"CLIENT", b"UNBLOCK", id.as_bytes(), mode.as_bytes()],
        ]);
        assert_eq!(other.read(), Reply::Int(1));
        assert_eq!(other.read(), Reply::Int(0), "{mode}");
        assert_eq!(
            blocked.read().array(),
            [Reply::Bulk(b"bk".to_vec()), Reply::Bulk(b"a".to_vec())]
        );
        assert_eq!(
            blocked.cmd(&["ECHO", "next"]),
            Reply::Bulk(b"next".to_vec())
        );
        // Released by an unload: the client gets the unload's error, once.
        send(&mut blocked, &["BPOP.BLPOP", "bk", "0"]);
        wait_blocked();
        other.send_together(&[
            &[b"WASM.UNLOAD", b"bpop"],
            &[b"CLIENT", b"UNBLOCK", id.as_bytes(), mode.as_bytes()],
        ]);
        assert_eq!(other.read(), Reply::Status("OK".into()));
        assert_eq!(other.read(), Reply::Int(0), "{mode}");
        assert!(blocked.read().error().contains("unloaded or replaced"));
        assert_eq!(
            blocked.cmd(&["ECHO", "next"]),
            Reply::Bulk(b"next".to_vec())
        );
        other.cmd(&["WASM.LOAD", guests::BPOP]);
        // Blocked, then aborted and answered by the command itself, on keys or not: while the
        // server sleeps, the command and CLIENT UNBLOCK arrive, to run in one turn.
        for (wait, answer) in [("abort", "aborted"), ("keysreply", "anyway")] {
            send(&mut sleeper, &["DEBUG", "SLEEP", "0.3"]);
            std::thread::sleep(Duration::from_millis(100));
            blocked.send_together(&[&[b"API.WAIT", wait.as_bytes(), b"0"], &[b"ECHO", b"after"]]);
            std::thread::sleep(Duration::from_millis(50));
            send(&mut other, &["CLIENT", "UNBLOCK", &id, mode]);
            assert_eq!(sleeper.read(), Reply::Status("OK".into()));
            assert_eq!(other.read(), Reply::Int(0), "{wait} {mode}");
            assert_eq!(
                blocked.read(),
                Reply::Status(answer.into()),
                "{wait} {mode}"
            );
            assert_eq!(
                blocked.read(),
                Reply::Bulk(b"after".to_vec()),
                "{wait} {mode}"
            );
        }
    }
    // CLIENT UNBLOCK ... ERROR is Redis's own unblocking: the client's next block (BLPOP here),
    // even in the same turn, is open to CLIENT UNBLOCK.
    let mut third = server.client();
    send(&mut blocked, &["API.WAIT", "plain", "0"]);
    wait_blocked();
    send(&mut sleeper, &["DEBUG", "SLEEP", "0.3"]);
    std::thread::sleep(Duration::from_millis(100));
    send(&mut other, &["CLIENT", "UNBLOCK", &id, "ERROR"]);
    std::thread::sleep(Duration::from_millis(30));
    send(&mut blocked, &["BLPOP", "nokey", "0"]);
    std::thread::sleep(Duration::from_millis(30));
    send(&mut third, &["CLIENT", "UNBLOCK", &id]);
    assert_eq!(sleeper.read(), Reply::Status("OK".into()));
    assert_eq!(other.read(), Reply::Int(1));
    assert_eq!(third.read(), Reply::Int(1));
    assert!(blocked.read().error().starts_with("UNBLOCKED"));
    assert_eq!(blocked.read(), Reply::Nil);
}

#[test]
fn a_timeout_racing_an_unblock_gets_exactly_one_reply() {
    // Timeouts and wake-ups land in the same event-loop turns: each client must get exactly one
    // answer (the data or "timed out"), and nothing else, or its next reply would be shifted.
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let mut waker = server.client();
    let mut clients: Vec<Client> = (0..8).map(|_| server.client()).collect();
    for round in 0..40 {
        for c in &mut clients {
            send(c, &["API.WAIT", "plain", "20"]);
        }
        std::thread::sleep(Duration::from_millis(15 + round % 10));
        waker.cmd(&["API.WAKE", "woken"]);
        for c in &mut clients {
            let reply = c.read();
            assert!(
                reply == Reply::Bulk(b"woken".to_vec())
                    || reply == Reply::Status("timed out".into()),
                "{reply:?}"
            );
            assert_eq!(c.cmd(&["ECHO", "next"]), Reply::Bulk(b"next".to_vec()));
        }
    }
    assert_eq!(info_field(&server, "blocked_clients"), 0);
}

#[test]
fn a_timeout_callback_cannot_start_a_job() {
    // CLIENT UNBLOCK ... TIMEOUT runs the timeout phase before the host releases the client: a
    // job started there would work for a client already answered.
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let mut a = server.client();
    let id = a.cmd(&["CLIENT", "ID"]).int().to_string();
    send(&mut a, &["API.WAIT", "bgtimeout"]);
    wait_until("blocked", || info_field(&server, "blocked_clients") == 1);
    assert_eq!(
        server.client().cmd(&["CLIENT", "UNBLOCK", &id, "TIMEOUT"]),
        Reply::Int(1)
    );
    assert_eq!(
        a.read().text(),
        "ERR run-in-background cannot work for the client this callback answers"
    );
    assert_eq!(info_field(&server, "background_jobs"), 0);

    // Nor through a guest command the timeout phase calls (whose own phase is a command's): a
    // job is only for a client the same guest blocked, and a guest cannot re-enter itself.
    send(&mut a, &["API.WAIT", "bgfortimeout"]);
    wait_until("blocked", || info_field(&server, "blocked_clients") == 1);
    assert_eq!(
        server.client().cmd(&["CLIENT", "UNBLOCK", &id, "TIMEOUT"]),
        Reply::Int(1)
    );
    assert_eq!(
        a.read(),
        Reply::Array(vec![
            Reply::Bulk(b"error".to_vec()),
            Reply::Bulk(
                b"ERR guest 'api' is already running: command 'api.bgfor' cannot re-enter it"
                    .to_vec()
            ),
        ])
    );
    assert_eq!(info_field(&server, "background_jobs"), 0);
    assert_eq!(a.cmd(&["PING"]).text(), "PONG");
}

#[test]
fn background_jobs_are_limited_and_can_be_turned_off() {
    let server = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    let mut c = server.client();
    c.cmd(&["CONFIG", "SET", "wasm.max-background-jobs", "0"]);
    assert_eq!(
        c.cmd(&["API.WAIT", "bgwrite"]).error(),
        "ERR background jobs are turned off (wasm.max-background-jobs is 0)"
    );
    c.cmd(&["CONFIG", "SET", "wasm.max-background-jobs", "1"]);
    let mut spinner = server.client();
    let spinner_id = spinner.cmd(&["CLIENT", "ID"]).int().to_string();
    send(&mut spinner, &["API.WAIT", "spin"]);
    wait_until("the job runs", || {
        info_field(&server, "background_jobs") == 1
    });
    assert_eq!(
        c.cmd(&["API.WAIT", "bgwrite"]).error(),
        "ERR too many background jobs are running (wasm.max-background-jobs)"
    );
    assert_eq!(
        c.cmd(&["CLIENT", "UNBLOCK", &spinner_id, "ERROR"]),
        Reply::Int(1)
    );
    assert!(spinner.read().error().starts_with("UNBLOCKED"));
    wait_until("the job ends", || {
        info_field(&server, "background_jobs") == 0
    });
    // Room again: the job runs.
    assert!(!c.cmd(&["API.WAIT", "bgwrite"]).is_error());
}
