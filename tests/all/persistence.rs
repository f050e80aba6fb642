//! Guests as data: kept in the RDB and the AOF, replicated, dumped and restored, replaced
//! atomically.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis_wasm_tests::{Client, ReplicationTap, Reply, Server, ServerOptions, guests};

fn names(server: &Server) -> Vec<String> {
    server
        .client()
        .cmd(&["WASM.LIST"])
        .array()
        .iter()
        .map(|g| g.field("name").text())
        .collect()
}

/// Waits (up to 10 s) for asynchronous replication to show something.
fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "replication did not arrive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn load_two(server: &Server) {
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["WASM.LOAD", guests::BASICS, "ARGS", "a", "b c"]),
        Reply::Bulk(b"basics".to_vec())
    );
    assert_eq!(
        c.cmd(&["WASM.LOAD", guests::HELLO]),
        Reply::Bulk(b"hello".to_vec())
    );
}

fn check_two(server: &Server) {
    let mut c = server.client();
    assert_eq!(names(server), ["basics", "hello"]);
    assert_eq!(
        c.cmd(&["BASICS.LOADARGS"]),
        Reply::Array(vec![
            Reply::Bulk(b"a".to_vec()),
            Reply::Bulk(b"b c".to_vec())
        ])
    );
    assert_eq!(c.cmd(&["HELLO.PUSH.NATIVE", "after", "x"]).int(), 1);
}

#[test]
fn guests_survive_debug_reload_and_restart_from_rdb() {
    let mut server = Server::start();
    load_two(&server);
    let mut c = server.client();
    c.cmd(&["HELLO.PUSH.NATIVE", "list", "v"]);
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), Reply::Status("OK".into()));
    check_two(&server);
    // FLUSHALL removes keys, not guests.
    c.cmd(&["FLUSHALL"]);
    assert_eq!(names(&server), ["basics", "hello"]);
    c.cmd(&["HELLO.PUSH.NATIVE", "list", "v"]);
    assert_eq!(c.cmd(&["SAVE"]), Reply::Status("OK".into()));
    let digest = server.digest();
    server.restart().expect("restart from the RDB");
    check_two(&server);
    server.client().cmd(&["DEL", "after"]);
    assert_eq!(server.digest(), digest);
    // The guest's source is now its bytes.
    assert_eq!(
        server.client().cmd(&["WASM.LIST", "hello"]).array()[0]
            .field("source")
            .text(),
        "bytes"
    );
}

#[test]
fn an_rdb_without_guests_loads_and_unloading_persists() {
    let mut server = Server::start();
    load_two(&server);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", "basics"]),
        Reply::Status("OK".into())
    );
    c.cmd(&["WASM.UNLOAD", "hello"]);
    c.cmd(&["SAVE"]);
    server.restart().expect("restart");
    assert_eq!(names(&server), Vec::<String>::new());
}

#[test]
fn the_aof_restores_guests_and_data() {
    let aof = ServerOptions {
        config: vec![("appendonly".into(), "yes".into())],
        ..Default::default()
    };
    let mut server = Server::start_with(aof.clone());
    load_two(&server);
    let mut c = server.client();
    for i in 0..20 {
        c.cmd(&["HELLO.PUSH.NATIVE", "list", &i.to_string()]);
        c.cmd(&["HELLO.REPL2", "list"]);
    }
    let digest = server.digest();
    // Replaying the AOF (WASM.LOAD with the module bytes, then the effects) reproduces the data.
    server.restart().expect("restart from the AOF");
    assert_eq!(server.digest(), digest);
    check_two(&server);
    // After a rewrite (with the RDB preamble, the default), the guests are in the preamble.
    let mut c = server.client();
    c.cmd(&["DEL", "after"]);
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]).text(),
        "Background append only file rewriting started"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c
        .cmd(&["INFO", "persistence"])
        .text()
        .contains("aof_rewrite_in_progress:1")
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    server.restart().expect("restart after the rewrite");
    assert_eq!(server.digest(), digest);
    check_two(&server);
}

#[test]
fn loads_and_unloads_replicate_as_bytes() {
    let master = Server::start();
    let mut tap = ReplicationTap::attach(&master);
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut c = master.client();
    c.cmd(&["WASM.LOAD", guests::BASICS, "ARGS", "x"]);
    let stream = tap.commands(&master);
    let load = stream
        .iter()
        .find(|cmd| cmd[0] == "WASM.LOAD")
        .expect("WASM.LOAD replicated");
    assert_eq!(load[1], "REPLACE");
    assert!(
        load[2].starts_with("\0asm"),
        "replicated as bytes, not a path"
    );
    assert_eq!(&load[3..], ["ARGS", "x"]);
    wait_for(|| names(&replica) == ["basics"]);
    assert_eq!(
        replica.client().cmd(&["BASICS.LOADARGS"]),
        Reply::Array(vec![Reply::Bulk(b"x".to_vec())])
    );
    // A replica refuses loads from its clients (like any write).
    assert!(
        replica
            .client()
            .cmd(&["WASM.LOAD", guests::HELLOWORLD])
            .error()
            .starts_with("READONLY")
    );
    c.cmd(&["WASM.UNLOAD", "basics"]);
    assert!(
        tap.commands(&master)
            .contains(&vec!["WASM.UNLOAD".to_owned(), "basics".to_owned()])
    );
    wait_for(|| names(&replica).is_empty());
}

#[test]
fn a_mixed_workload_leaves_replica_and_replayed_aof_identical() {
    // Guests arrive by WASM.LOAD, so the AOF is the only place a restarted server finds them.
    let mut master = Server::start_with(ServerOptions {
        config: vec![("appendonly".into(), "yes".into())],
        ..Default::default()
    });
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut c = master.client();
    for guest in [guests::API_GUEST, guests::HELLO, guests::EVIL] {
        assert!(!c.cmd(&["WASM.LOAD", guest]).is_error());
    }
    let workload: &[&[&str]] = &[
        &["RPUSH", "src", "1", "2", "3", "4"],
        &["HELLO.PUSH.NATIVE", "a", "x"],
        &["HELLO.PUSH.CALL", "a", "y"],
        &["HELLO.LIST.SPLICE", "src", "dst", "2"],
        &["API.KEY", "hash-set", "h", "", "f1", "v1", "f2", "v2"],
        &["API.KEY", "set-abs-expire", "h", "4102444800000"],
        &["API.ORDER", "k"],
        &["SET", "s", "MiXeD"],
        &["HELLO.TOGGLE.CASE", "s"],
    ];
    for command in workload {
        let reply = c.cmd(command);
        assert!(!reply.is_error(), "{command:?}: {reply:?}");
    }
    // Errors half-way, after writing: what was written stays written everywhere.
    assert_eq!(
        c.cmd(&["API.FAILAFTERWRITE", "w"]).error(),
        "ERR failed after writing"
    );
    assert!(c.cmd(&["EVIL.OOB"]).is_error());
    assert_eq!(c.cmd(&["LRANGE", "w", "0", "-1"]).array().len(), 1);
    // (The fuzzer flushes and swaps databases too.)
    for seed in 1..=40 {
        c.cmd(&["EVIL.FUZZ", &seed.to_string(), "200"]);
    }
    // The fuzzer leaves keys whose expire has passed, which Redis deletes when its expiry
    // cycle gets to them: before the digest, or the AOF may hold deletions the digest lacks.
    master.reap_expired_keys();
    let digest = master.assert_same_dataset(&replica);
    // Replaying the AOF into a fresh process (host only, no guests) reproduces the dataset.
    master.restart().expect("restart from the AOF");
    assert_eq!(master.digest(), digest);
    assert_eq!(names(&master).len(), 3);
}

#[test]
fn a_new_replica_gets_the_guests_in_its_full_sync() {
    let master = Server::start();
    load_two(&master);
    master.client().cmd(&["HELLO.PUSH.NATIVE", "k", "v"]);
    let replica = Server::start();
    replica.replicate_from(&master);
    assert_eq!(names(&replica), ["basics", "hello"]);
    master.assert_same_dataset(&replica);
    assert_eq!(replica.client().cmd(&["BASICS.LOADARGS"]).array().len(), 2);
}

#[test]
fn a_replica_mirrors_its_masters_guests() {
    // The replica starts with a guest its master does not have: the full sync leaves it with
    // exactly the master's guests.
    let master = Server::start();
    master.client().cmd(&["WASM.LOAD", guests::BASICS]);
    let replica = Server::with_module_args(&["LOAD", guests::HELLOWORLD]);
    assert_eq!(names(&replica), ["helloworld"]);
    replica.replicate_from(&master);
    wait_for(|| names(&replica) == ["basics"]);
}

#[test]
fn a_corrupted_guest_in_the_rdb_is_a_load_error() {
    // Uncompressed, so the damage reaches the module bytes rather than Redis's LZF decoder.
    let mut server = Server::start_with(ServerOptions {
        config: vec![("rdbcompression".into(), "no".into())],
        ..Default::default()
    });
    server.client().cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    server.client().cmd(&["SAVE"]);
    let rdb = server.dir.join("dump.rdb");
    let mut bytes = std::fs::read(&rdb).unwrap();
    // Damage the module inside the aux record (after its magic number).
    let at = bytes
        .windows(4)
        .position(|w| w == b"\0asm")
        .expect("module bytes in the RDB")
        + 100;
    for b in &mut bytes[at..at + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&rdb, &bytes).unwrap();
    let options = ServerOptions {
        config: vec![("rdbchecksum".into(), "no".into())],
        ..Default::default()
    };
    let log = server
        .restart_with(options)
        .expect_err("the server must refuse the damaged RDB");
    assert!(
        log.contains("<wasm> cannot restore the guests saved in the RDB"),
        "{log}"
    );
    assert!(!log.contains("crashed by signal"), "{log}");
}

#[test]
fn dump_and_restore_move_guests_between_servers() {
    let a = Server::start();
    load_two(&a);
    let payload = match a.client().cmd(&["WASM.DUMP"]) {
        Reply::Bulk(payload) => payload,
        other => panic!("{other:?}"),
    };
    let b = Server::start();
    let mut c = b.client();
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload]),
        Reply::Status("OK".into())
    );
    check_two(&b);
    let clash = c.cmd_bytes(&[b"WASM.RESTORE", &payload, b"APPEND"]);
    assert_eq!(
        clash.error(),
        "ERR guest 'basics' is already loaded (use REPLACE or FLUSH)"
    );
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload, b"REPLACE"]),
        Reply::Status("OK".into())
    );
    c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload, b"FLUSH"]),
        Reply::Status("OK".into())
    );
    assert_eq!(names(&b), ["basics", "hello"]);
    let mut damaged = payload.clone();
    damaged[payload.len() / 2] ^= 1;
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &damaged]).error(),
        "ERR the payload is not a WASM.DUMP payload, or it is damaged"
    );
    // The mistyped word is named, before or after the payload, and the payload is not echoed.
    for line in [
        [&b"WASM.RESTORE"[..], &payload[..], &b"SIDEWAYS"[..]],
        [&b"WASM.RESTORE"[..], &b"SIDEWAYS"[..], &payload[..]],
    ] {
        assert_eq!(
            c.cmd_bytes(&line).error(),
            "ERR unknown policy 'SIDEWAYS' (expected APPEND, REPLACE or FLUSH)"
        );
    }
    // A long argument is quoted shortened, with its length.
    let long_name = "x".repeat(100);
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", &long_name]).error(),
        format!(
            "ERR no guest named '{}... (100 bytes)' is loaded",
            "x".repeat(64)
        )
    );
    assert_eq!(names(&b), ["basics", "hello"]);
}

/// A `WASM.DUMP` payload made by hand: magic, count, then name, module and no arguments per
/// guest (lengths as u64 LE), then the FNV-1a checksum of all that.
fn dump_payload(guests: &[(&str, &[u8])]) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    let mut out = b"RWASMDUMP\x01".to_vec();
    out.extend_from_slice(&(guests.len() as u64).to_le_bytes());
    for (name, wasm) in guests {
        put(&mut out, name.as_bytes());
        put(&mut out, wasm);
        out.extend_from_slice(&0u64.to_le_bytes());
    }
    let sum = out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

#[test]
fn guests_replaced_together_may_hand_a_command_to_an_earlier_name() {
    // `configurable` gives up `big.run`, which `big` (sorted first) takes: restoring or syncing
    // the two at once must not find `big.run` taken by the `configurable` being replaced.
    let old_args = ["LOAD", guests::CONFIGURABLE, "ARGS", "big.run", "readonly"];
    let target = Server::with_module_args(&old_args);
    let source = Server::start();
    let mut s = source.client();
    s.cmd(&["WASM.LOAD", guests::CONFIGURABLE, "ARGS", "x.y", "readonly"]);
    s.cmd(&["WASM.LOAD", guests::BIG]);
    let payload = s.cmd(&["WASM.DUMP"]);
    let Reply::Bulk(payload) = payload else {
        panic!("a payload: {payload:?}")
    };
    let restored = target
        .client()
        .cmd_bytes(&[b"WASM.RESTORE", b"REPLACE", &payload]);
    assert_eq!(restored, Reply::Status("OK".into()));
    assert_eq!(names(&target), ["big", "configurable"]);
    // A replica of the source that had the old guest mirrors it too (it exited before).
    let replica = Server::with_module_args(&old_args);
    replica.replicate_from(&source);
    source.assert_same_dataset(&replica);
    assert_eq!(names(&replica), ["big", "configurable"]);
}

#[test]
fn a_restored_guest_must_declare_the_name_it_was_saved_under() {
    let server = Server::start();
    let wasm = std::fs::read(guests::HELLOWORLD).unwrap();
    let mut c = server.client();
    // The payload format is what the test thinks it is: the right name restores.
    let payload = dump_payload(&[("helloworld", &wasm)]);
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload]),
        Reply::Status("OK".into())
    );
    c.cmd(&["WASM.UNLOAD", "helloworld"]);
    let payload = dump_payload(&[("impostor", &wasm)]);
    for policy in [&b"APPEND"[..], b"REPLACE", b"FLUSH"] {
        let refused = c.cmd_bytes(&[b"WASM.RESTORE", &payload, policy]);
        assert!(
            refused.error().contains(
                "the module saved as guest 'impostor' now declares the name 'helloworld'"
            ),
            "{refused:?}"
        );
        assert!(names(&server).is_empty(), "{:?}", names(&server));
    }
}

#[test]
fn a_restore_that_fails_changes_nothing_and_replicates_nothing() {
    let server = Server::start();
    let mut c = server.client();
    c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    let mut tap = ReplicationTap::attach(&server);
    // The second guest fails (it declares another name) after the first one started.
    let basics = std::fs::read(guests::BASICS).unwrap();
    let helloworld = std::fs::read(guests::HELLOWORLD).unwrap();
    let payload = dump_payload(&[("basics", &basics), ("impostor", &helloworld)]);
    for policy in [&b"APPEND"[..], b"REPLACE", b"FLUSH"] {
        let refused = c.cmd_bytes(&[b"WASM.RESTORE", &payload, policy]);
        assert!(
            refused.error().contains("saved as guest 'impostor'"),
            "{refused:?}"
        );
        // As FUNCTION RESTORE: not half of it, and FLUSH unloaded nothing.
        assert_eq!(names(&server), ["helloworld"]);
        assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
        assert!(c.cmd(&["BASICS.ECHO", "x"]).is_error());
    }
    // A bad module is named by the guest it was saved as.
    let junk = dump_payload(&[("basics", &basics), ("zzz", b"\0asmjunk")]);
    let refused = c.cmd_bytes(&[b"WASM.RESTORE", &junk]);
    assert!(
        refused.error().starts_with("ERR guest 'zzz': "),
        "{refused:?}"
    );
    assert_eq!(names(&server), ["helloworld"]);
    let twice = dump_payload(&[("helloworld", &helloworld), ("helloworld", &helloworld)]);
    let refused = c.cmd_bytes(&[b"WASM.RESTORE", &twice, b"REPLACE"]);
    assert_eq!(
        refused.error(),
        "ERR the payload holds guest 'helloworld' twice"
    );
    // Nothing changed, so nothing went to replicas or the AOF (a replica replaying a restore
    // could fail elsewhere: its limits and timing are its own).
    let propagated = tap.commands(&server);
    assert!(
        propagated.iter().all(|command| command[0] == "SELECT"),
        "{propagated:?}"
    );
}

#[test]
fn dump_and_restore_work_with_redis_cli_as_documented() {
    let (a, b) = (Server::start(), Server::start());
    load_two(&a);
    let file = b.dir.join("guests.dump");
    let shell = format!(
        "redis-cli -p {} --raw WASM.DUMP | head -c -1 > {f} && redis-cli -p {} -x WASM.RESTORE REPLACE < {f}",
        a.port,
        b.port,
        f = file.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&shell)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_two(&b);
}

/// `WASM.LOAD REPLACE configurable.wasm ARGS <args>`: the guest registers the commands named
/// in `args` (`name flags` pairs).
fn load_configurable(c: &mut redis_wasm_tests::Client, args: &[&str]) -> Reply {
    let mut command = vec!["WASM.LOAD", "REPLACE", guests::CONFIGURABLE, "ARGS"];
    command.extend_from_slice(args);
    c.cmd(&command)
}

#[test]
fn replace_is_atomic_under_traffic_and_a_failed_replace_keeps_the_old_version() {
    let server = Server::start();
    let mut c = server.client();
    let load = load_configurable;
    assert_eq!(
        load(&mut c, &["cfg.a", "readonly", "cfg.shared", "readonly"]),
        Reply::Bulk(b"configurable".to_vec())
    );
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let port = server.port;
    let hammer = {
        let (stop, failures, calls) = (stop.clone(), failures.clone(), calls.clone());
        std::thread::spawn(move || {
            let mut h = redis_wasm_tests::Client::connect(port).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if h.cmd(&["CFG.SHARED"]) != Reply::Bulk(b"cfg.shared".to_vec()) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for round in 0..20 {
        let (old, new) = if round % 2 == 0 {
            ("cfg.a", "cfg.b")
        } else {
            ("cfg.b", "cfg.a")
        };
        assert_eq!(
            load(&mut c, &[new, "readonly", "cfg.shared", "readonly"]),
            Reply::Bulk(b"configurable".to_vec())
        );
        assert!(
            c.cmd(&[old]).error().starts_with("ERR unknown command"),
            "{old} must stop answering"
        );
        assert_eq!(c.cmd(&[new]), Reply::Bulk(new.as_bytes().to_vec()));
    }
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    assert!(calls.load(Ordering::Relaxed) > 20);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a call saw a half-loaded guest"
    );
    // A failed replace keeps the old version.
    let failed = load(&mut c, &["cfg.new", "admin"]);
    assert!(failed.error().contains("flag 'admin' is not supported"));
    assert_eq!(c.cmd(&["CFG.SHARED"]), Reply::Bulk(b"cfg.shared".to_vec()));
    assert!(
        c.cmd(&["CFG.NEW"])
            .error()
            .starts_with("ERR unknown command")
    );
}

/// The main thread keeps its last route (name → guest) between calls: a command called again
/// after a replace or an unload must reach what provides it now, never the old version.
#[test]
fn a_command_called_again_after_replace_or_unload_reaches_what_provides_it_now() {
    let server = Server::start();
    let mut c = server.client();
    let load = |c: &mut redis_wasm_tests::Client, args: &[&str]| {
        assert_eq!(
            load_configurable(c, args),
            Reply::Bulk(b"configurable".to_vec())
        );
    };
    let calls = |c: &mut redis_wasm_tests::Client| {
        c.cmd(&["WASM.LIST", "configurable"]).array()[0]
            .field("commands")
            .array()[0]
            .field("calls")
            .int()
    };
    let dispatcher_calls = |c: &mut redis_wasm_tests::Client, dispatcher: &str| {
        let prefix = format!("cmdstat_{dispatcher}:calls=");
        c.cmd(&["INFO", "commandstats"])
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map_or(0, |rest| {
                rest.split(',').next().unwrap().parse::<u64>().unwrap()
            })
    };
    load(&mut c, &["cfg.x", "readonly"]);
    for name in ["CFG.X", "cfg.x", "CFG.X", "CFG.X"] {
        assert_eq!(c.cmd(&[name]), Reply::Bulk(b"cfg.x".to_vec()));
    }
    assert_eq!(calls(&mut c), 4);
    // The same name, now a write command of a new version: it counts there, and runs through
    // the write dispatcher (the old route would run it as read-only).
    load(&mut c, &["cfg.x", "write"]);
    let writes = dispatcher_calls(&mut c, "wasm.invoke-write");
    assert_eq!(c.cmd(&["CFG.X"]), Reply::Bulk(b"cfg.x".to_vec()));
    assert_eq!(calls(&mut c), 1, "the call must reach the new version");
    assert_eq!(dispatcher_calls(&mut c, "wasm.invoke-write"), writes + 1);
    // Queued in MULTI as a write, replaced by a read-only version before EXEC: it runs (the
    // write dispatcher's stricter checks were made); the other way round it is refused.
    let mut other = server.client();
    c.cmd(&["MULTI"]);
    c.cmd(&["CFG.X"]);
    load(&mut other, &["cfg.x", "readonly"]);
    assert_eq!(c.cmd(&["EXEC"]).array(), [Reply::Bulk(b"cfg.x".to_vec())]);
    c.cmd(&["MULTI"]);
    c.cmd(&["CFG.X"]);
    load(&mut other, &["cfg.x", "write"]);
    let exec = c.cmd(&["EXEC"]);
    assert!(exec.array()[0].error().contains("runs through"), "{exec:?}");
    // Unloaded: the name is unknown, and the guest's memory is gone with it.
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", "configurable"]),
        Reply::Status("OK".into())
    );
    assert!(c.cmd(&["CFG.X"]).error().starts_with("ERR unknown command"));
    assert_eq!(
        c.info_u64("wasm", "wasm_memory_bytes"),
        0,
        "an unloaded guest's instance must be freed"
    );
    // A command that unloads its own guest while it runs (through another module's command:
    // guests may not call WASM.UNLOAD themselves): its route must not outlive it. (A command
    // name of the same length stays loaded, so the name still gets looked up.)
    load(&mut c, &["cfg.wcall", "readonly"]);
    let native = redis_wasm_tests::native_library();
    assert_eq!(
        c.cmd(&["MODULE", "LOAD", native.to_str().unwrap()]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["WASM.LOAD", guests::API_GUEST]),
        Reply::Bulk(b"api".to_vec())
    );
    let unloaded = c.cmd(&["API.WCALL", "2", "NATIVE.CALL", "WASM.UNLOAD", "api"]);
    assert!(!unloaded.is_error(), "{unloaded:?}");
    assert!(
        c.cmd(&["API.WCALL", "2", "PING"])
            .error()
            .starts_with("ERR unknown command"),
        "the unloaded guest must not answer"
    );
}

#[test]
fn loads_compile_in_the_background_or_inline_where_blocking_is_impossible() {
    let server = Server::start();
    let mut c = server.client();
    // Pipelined behind a load, other commands of other clients are served meanwhile, and the
    // loading client gets its reply in order.
    c.send(&[b"WASM.LOAD", guests::HELLO.as_bytes()]);
    c.send(&[b"PING"]);
    assert_eq!(server.client().cmd(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(c.read(), Reply::Bulk(b"hello".to_vec()));
    assert_eq!(c.read(), Reply::Status("PONG".into()));
    // Inside MULTI the client cannot block: the load compiles inline.
    c.cmd(&["MULTI"]);
    c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    c.cmd(&["PING"]);
    let exec = c.cmd(&["EXEC"]);
    assert_eq!(
        exec.array(),
        [
            Reply::Bulk(b"helloworld".to_vec()),
            Reply::Status("PONG".into())
        ]
    );
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
    // A load that fails in the background answers its error.
    assert!(
        c.cmd(&["WASM.LOAD", "/no/such.wasm"])
            .error()
            .contains("No such file")
    );
    // A client that leaves while its load compiles does not cancel it: Redis received a write
    // command, which is carried out and replicated (it was dropped, without a trace).
    let mut tap = ReplicationTap::attach(&server);
    let mut leaving = server.client();
    leaving.cmd(&["CLIENT", "SETNAME", "leaving"]);
    leaving.send(&[b"WASM.LOAD", guests::BIG.as_bytes()]);
    drop(leaving);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.cmd(&["CLIENT", "LIST"]).text().contains("name=leaving") {
        assert!(
            std::time::Instant::now() < deadline,
            "the client never left"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // (The big guest takes a good part of a second to compile: it is still compiling.)
    assert!(!names(&server).contains(&"big".to_owned()));
    while !names(&server).contains(&"big".to_owned()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the load of a client that left never happened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tap.commands(&server)
            .iter()
            .any(|command| command[0] == "WASM.LOAD")
    );
}

#[test]
fn restores_compile_in_the_background_too() {
    let server = Server::with_module_args(&["LOAD", guests::BIG, "LOAD", guests::HELLO]);
    let mut c = server.client();
    let Reply::Bulk(payload) = c.cmd(&["WASM.DUMP"]) else {
        panic!("no dump")
    };
    let mut tap = ReplicationTap::attach(&server);
    // FLUSH starts every guest again: the big one takes a good part of a second to compile,
    // while other clients are served (and see it compiling).
    c.send(&[b"WASM.RESTORE", b"FLUSH", &payload]);
    let mut other = server.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while other.info_u64("wasm", "wasm_compiles") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never compiled in the background"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.read(), Reply::Status("OK".into()));
    assert_eq!(names(&server), ["big", "hello"]);
    // Replicated with its policy (after the payload).
    assert!(tap.commands(&server).iter().any(|command| {
        command[0].eq_ignore_ascii_case("WASM.RESTORE") && command[2] == "FLUSH"
    }));
    // An APPEND goes out as REPLACE, as loads do: replayed where a namesake is loaded (a guest
    // of the module's arguments, a writable replica's own), it must not fail as a whole.
    c.cmd(&["WASM.UNLOAD", "big"]);
    c.cmd(&["WASM.UNLOAD", "hello"]);
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload]),
        Reply::Status("OK".into())
    );
    let restores: Vec<Vec<String>> = tap
        .commands(&server)
        .into_iter()
        .filter(|command| command[0].eq_ignore_ascii_case("WASM.RESTORE"))
        .collect();
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0].len(), 3);
    assert_eq!(restores[0][2], "REPLACE");
    // Errors found once compiled, and those found before, answer alike.
    let unloaded = c.cmd_bytes(&[b"WASM.RESTORE", &payload]);
    assert!(
        unloaded
            .error()
            .contains("is already loaded (use REPLACE or FLUSH)"),
        "{unloaded:?}"
    );
    // Inside MULTI it compiles inline.
    c.cmd(&["MULTI"]);
    c.cmd_bytes(&[b"WASM.RESTORE", b"REPLACE", &payload]);
    assert_eq!(c.cmd(&["EXEC"]).array(), [Reply::Status("OK".into())]);
}

#[test]
fn at_most_max_compiles_loads_compile_at_once_and_the_others_wait() {
    let server = Server::start_with(ServerOptions {
        config: vec![("wasm.max-compiles".into(), "1".into())],
        ..Default::default()
    });
    let mut c = server.client();
    // Three loads of the big guest (a good part of a second to compile each), from three
    // clients that leave at once: they compile one after another.
    for _ in 0..3 {
        server
            .client()
            .send(&[b"WASM.LOAD", b"REPLACE", guests::BIG.as_bytes()]);
    }
    let (mut most_running, mut most_waiting) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running = c.info_u64("wasm", "wasm_compiles");
        let waiting = c.info_u64("wasm", "wasm_compiles_waiting");
        most_running = most_running.max(running);
        most_waiting = most_waiting.max(waiting);
        if running == 0 && waiting == 0 && names(&server).contains(&"big".to_owned()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loads never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(most_running, 1);
    assert!(most_waiting >= 1, "{most_waiting}");
    assert!(
        server
            .client()
            .cmd(&["CONFIG", "SET", "wasm.max-compiles", "0"])
            .is_error()
    );
    // At most 64 wait (each holds a thread and its module): the next is refused at once.
    let mut waiting_clients = Vec::new();
    for _ in 0..65 {
        let mut client = server.client();
        client.send(&[b"WASM.LOAD", b"REPLACE", guests::BIG.as_bytes()]);
        waiting_clients.push(client);
    }
    let queued_by = std::time::Instant::now() + Duration::from_secs(60);
    while c.info_u64("wasm", "wasm_compiles_waiting") < 64 {
        assert!(
            std::time::Instant::now() < queued_by,
            "never queued: {} waiting, {} compiling",
            c.info_u64("wasm", "wasm_compiles_waiting"),
            c.info_u64("wasm", "wasm_compiles")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let refused = server.client().cmd(&["WASM.LOAD", "REPLACE", guests::BIG]);
    assert!(
        refused
            .error()
            .contains("64 loads or restores are already waiting to compile"),
        "{refused:?}"
    );
    assert_eq!(c.info_u64("wasm", "wasm_compiles_waiting"), 64);
}

#[test]
fn replicas_and_the_aof_carry_out_loads_their_own_limits_would_refuse() {
    // Limits below what the guests need: a module larger than `wasm.max-module-size` (hellotype
    // is ~85 KB) and instances larger than `wasm.max-memory` (a Rust guest starts at 1.1 MB).
    let low_limits = || {
        vec![
            ("wasm.max-module-size".to_owned(), "65536".to_owned()),
            ("wasm.max-memory".to_owned(), "1048576".to_owned()),
        ]
    };
    let master = Server::start_with(ServerOptions {
        config: vec![("appendonly".into(), "yes".into())],
        ..Default::default()
    });
    let mut m = master.client();
    m.cmd(&["WASM.LOAD", guests::HELLOTYPE]);
    m.cmd(&["HELLOTYPE.INSERT", "before", "1"]);
    // Full sync: the guests come in the RDB.
    let replica = Server::start_with(ServerOptions {
        config: low_limits(),
        ..Default::default()
    });
    replica.replicate_from(&master);
    // The replication stream: loads, a command that replicates itself verbatim, and one that
    // calls another guest's command, which grows its memory past the replica's limit: what a
    // replayed command calls is replayed too (Redis flags only the master's own client).
    for guest in [guests::BASICS, guests::API_GUEST, guests::EVIL] {
        m.cmd(&["WASM.LOAD", guest]);
    }
    m.cmd(&["HELLOTYPE.INSERT", "after", "2"]);
    let grown = m.cmd(&["API.VERBATIMCALL", "EVIL.GROW", "3"]);
    assert_eq!(grown, Reply::Int(3 << 20));
    master.assert_same_dataset(&replica);
    assert_eq!(names(&replica), ["api", "basics", "evil", "hellotype"]);
    let log = replica.log();
    assert!(!log.contains("sending an error to its master"), "{log}");
    // The replica's clients still meet its limits.
    let refused = replica.client().cmd(&["EVIL.GROW", "8"]);
    assert!(refused.error().contains("wasm.max-memory"), "{refused:?}");
    // The AOF replayed under the same low limits.
    let digest = master.digest();
    let mut master = master;
    let mut config = low_limits();
    config.push(("appendonly".into(), "yes".into()));
    master
        .restart_with(ServerOptions {
            config,
            ..Default::default()
        })
        .expect("restart from the AOF");
    assert_eq!(master.digest(), digest);
    assert_eq!(names(&master), ["api", "basics", "evil", "hellotype"]);
    // A client's load still meets the limits.
    let refused = master
        .client()
        .cmd(&["WASM.LOAD", "REPLACE", guests::HELLOTYPE]);
    assert!(
        refused.error().contains("more than wasm.max-module-size"),
        "{refused:?}"
    );
    // Replayed work is not refused for memory the replaying server lacks (Redis replays its own
    // commands so): a verbatim command's calls reloaded from the AOF over maxmemory still run.
    let mut c = master.client();
    assert!(
        !c.cmd(&["API.VERBATIMCALL", "SET", "vk", "hello"])
            .is_error()
    );
    c.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    assert_eq!(c.cmd(&["DEBUG", "LOADAOF"]), Reply::Status("OK".into()));
    c.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(c.cmd(&["GET", "vk"]), Reply::Bulk(b"hello".to_vec()));
}

#[test]
fn a_restore_payload_must_carry_module_bytes_not_a_path() {
    let server = Server::start();
    let payload = dump_payload(&[("helloworld", guests::HELLOWORLD.as_bytes())]);
    assert_eq!(
        server
            .client()
            .cmd_bytes(&[b"WASM.RESTORE", &payload])
            .error(),
        "ERR guest 'helloworld' is saved without its module's bytes"
    );
    assert!(names(&server).is_empty());
}

#[test]
fn a_fork_while_another_thread_holds_the_registry_still_saves_the_guests() {
    // A background job looking a command up holds the registry's lock for an instant; a fork
    // then would leave it locked for ever in the child, which saves the guests from it.
    let server = Server::start_with(ServerOptions {
        config: vec![("wasm.enable-debug".into(), "1".into())],
        ..Default::default()
    });
    let mut c = server.client();
    c.cmd(&["WASM.LOAD", guests::HELLOWORLD]);
    let bgsave_running = |c: &mut Client| {
        c.cmd(&["INFO", "persistence"])
            .text()
            .contains("rdb_bgsave_in_progress:1")
    };
    for _ in 0..3 {
        assert_eq!(
            c.cmd(&["WASM.DEBUG", "HOLD-REGISTRY", "200"]),
            Reply::Status("OK".into())
        );
        assert_eq!(c.cmd(&["BGSAVE"]).text(), "Background saving started");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while bgsave_running(&mut c) {
            assert!(
                std::time::Instant::now() < deadline,
                "the BGSAVE child is stuck"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            c.cmd(&["INFO", "persistence"])
                .text()
                .contains("rdb_last_bgsave_status:ok")
        );
    }
    let bad = c.cmd(&["WASM.DEBUG", "HOLD-REGISTRY", "10001"]);
    assert!(bad.error().contains("from 0 to 10000"), "{bad:?}");
}

#[test]
fn a_replica_keeps_its_guests_when_its_masters_guests_could_not_be_saved() {
    let master = Server::start_with(ServerOptions {
        config: vec![("wasm.enable-debug".into(), "1".into())],
        ..Default::default()
    });
    let mut m = master.client();
    m.cmd(&["WASM.LOAD", guests::HELLOTYPE]);
    m.cmd(&["HELLOTYPE.INSERT", "k", "5"]);
    let replica = Server::start();
    replica.replicate_from(&master);
    master.assert_same_dataset(&replica);
    assert_eq!(names(&replica), ["hellotype"]);
    let resync = || {
        let mut r = replica.client();
        r.cmd(&["REPLICAOF", "NO", "ONE"]);
        replica.replicate_from(&master);
        master.assert_same_dataset(&replica);
    };
    // A host fault while the master's fork writes the full sync's RDB: its record has the data
    // types but not the guests, and the replica keeps the guests it has rather than mirroring
    // "none".
    m.cmd(&["WASM.DEBUG", "PANIC", "saving guests to the RDB"]);
    resync();
    assert_eq!(names(&replica), ["hellotype"]);
    assert!(replica.log().contains("the RDB holds no guests"));
    // The fault was armed for one save (in the fork's child): the next full sync carries the
    // guests again.
    let second = Server::start();
    second.replicate_from(&master);
    master.assert_same_dataset(&second);
    assert_eq!(names(&second), ["hellotype"]);
    assert_eq!(
        master
            .log()
            .matches("the guests could not be saved in this RDB")
            .count(),
        1
    );
}

#[test]
fn a_verbatim_command_whose_nested_guest_command_failed_replicates_its_effects() {
    // Stopped by the master's limit, the nested loop must not reach a replica or the AOF,
    // where it would replay without limits, for ever.
    let mut master = Server::start_with(ServerOptions {
        config: vec![
            ("appendonly".into(), "yes".into()),
            ("wasm.max-call-ms".into(), "200".into()),
        ],
        module_args: [
            "LOAD",
            guests::API_GUEST,
            "LOAD",
            guests::EVIL,
            "LOAD",
            guests::BENCH_GUEST,
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    let replica = Server::with_module_args(&[
        "LOAD",
        guests::API_GUEST,
        "LOAD",
        guests::EVIL,
        "LOAD",
        guests::BENCH_GUEST,
    ]);
    replica.replicate_from(&master);
    let mut m = master.client();
    let stopped = m.cmd(&["API.VERBATIMCALL", "EVIL.LOOP"]);
    assert!(stopped.error().contains("wasm.max-call-ms"), "{stopped:?}");
    // A nested guest command's own calls replay on the replica too (they ran without a user
    // to check, and failed).
    assert_eq!(m.cmd(&["API.VERBATIMCALL", "BG.INCR", "nk"]), Reply::Int(1));
    master.assert_same_dataset(&replica);
    assert_eq!(
        replica.client().cmd(&["GET", "nk"]),
        Reply::Bulk(b"1".to_vec())
    );
    let log = replica.log();
    assert!(!log.contains("sending an error to its master"), "{log}");
    // A guest may not replicate a guest command line either.
    let refused = m.cmd(&["API.REPLICATE", "wasm.invoke-readonly", "EVIL.LOOP"]);
    assert!(refused.error().contains("cannot replicate"), "{refused:?}");
    let digest = master.digest();
    master.restart().expect("restart from the AOF");
    assert_eq!(master.digest(), digest);
}

#[test]
fn a_verbatim_command_whose_nested_guest_command_was_refused_or_could_not_start_replicates_its_effects()
 {
    // Replicas and the AOF replay a verbatim command without a user and without this server's
    // limits: a nested guest command refused a key by the ACL, or unable to start under a
    // limit, would do there what it did not do here.
    let guests = [
        "LOAD",
        guests::API_GUEST,
        "LOAD",
        guests::BASICS,
        "LOAD",
        guests::EVIL,
    ];
    let mut master = Server::start_with(ServerOptions {
        config: vec![("appendonly".into(), "yes".into())],
        module_args: guests.map(String::from).to_vec(),
        ..Default::default()
    });
    let replica = Server::with_module_args(&guests);
    replica.replicate_from(&master);
    let mut m = master.client();
    m.cmd(&["ACL", "SETUSER", "u", "on", "nopass", "+@all", "~a*"]);
    let mut u = master.client();
    u.cmd(&["AUTH", "u", "x"]);
    let refused = u.cmd(&["API.VERBATIMCALL", "BASICS.TRYWRITE", "a1", "b1"]);
    assert!(refused.text().contains("NOPERM"), "{refused:?}");
    // The nested guest could not restart (its instance trapped; the memory budget is full).
    assert!(m.cmd(&["EVIL.OOB"]).is_error());
    m.cmd(&["CONFIG", "SET", "wasm.max-total-memory", "1mb"]);
    let not_started = m.cmd(&["API.VERBATIMCALL", "EVIL.BIGARG", "bk", "1"]);
    assert!(
        not_started.error().contains("could not restart"),
        "{not_started:?}"
    );
    m.cmd(&["CONFIG", "SET", "wasm.max-total-memory", "1gb"]);
    // A guest cannot re-enter itself; refused alike everywhere, but the replica must not be
    // sent a command that answers an error.
    let reentered = m.cmd(&[
        "API.VERBATIMCALL",
        "API.KEY",
        "list-push",
        "al",
        "tail",
        "x",
    ]);
    assert!(
        reentered.error().contains("cannot re-enter"),
        "{reentered:?}"
    );
    master.assert_same_dataset(&replica);
    assert_eq!(m.cmd(&["EXISTS", "b1", "bk", "al"]), Reply::Int(0));
    assert_eq!(
        replica.client().cmd(&["GET", "a1"]),
        Reply::Bulk(b"done".to_vec())
    );
    let log = replica.log();
    assert!(!log.contains("sending an error to its master"), "{log}");
    // WASM.SETVALUE registers a type only replayed from the master or the AOF, never when a
    // guest calls it (though Redis flags the whole AOF load as replaying).
    let unknown = m.cmd(&[
        "API.VERBATIMCALL",
        "WASM.SETVALUE",
        "z",
        "newtype01",
        "0",
        "abc",
    ]);
    assert!(unknown.error().contains("unknown data type"), "{unknown:?}");
    let digest = master.digest();
    master.restart().expect("restart from the AOF");
    let mut m = master.client();
    assert_eq!(master.digest(), digest);
    assert_eq!(m.cmd(&["EXISTS", "z"]), Reply::Int(0));
    let still_unknown = m.cmd(&["WASM.SETVALUE", "z2", "newtype01", "0", "abc"]);
    assert!(
        still_unknown.error().contains("unknown data type"),
        "{still_unknown:?}"
    );
}

#[test]
fn error_messages_quote_long_arguments_shortened() {
    let server = Server::start();
    let mut c = server.client();
    let long_path = format!("/tmp/{}", "p".repeat(5000));
    let error = c.cmd(&["WASM.LOAD", &long_path]).error().to_owned();
    assert!(
        error.len() < 400 && error.contains("(5005 bytes)"),
        "{error}"
    );
    let error = c
        .cmd(&["wasm.invoke-readonly", &"n".repeat(5000)])
        .error()
        .to_owned();
    assert!(
        error.len() < 200 && error.contains("(5000 bytes)"),
        "{error}"
    );
    // A hand-made payload naming a guest as no guest could be named.
    let payload = dump_payload(&[(&"g".repeat(300), b"\0asm".as_slice())]);
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload]).error(),
        "ERR the payload names a guest wrongly: a guest name must have 1 to 128 characters"
    );
}
