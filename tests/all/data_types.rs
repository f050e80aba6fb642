//! Guest data types, proven by the hellotype port (Redis's `src/modules/hellotype.c`): values in
//! keys, `TYPE`, `MEMORY USAGE`, `DEBUG DIGEST`, RDB, `DEBUG RELOAD`, AOF and its rewrite,
//! replication, and values that outlive their guest.

use std::time::{Duration, Instant};

use redis_wasm_tests::{Reply, Server, ServerOptions, guests, native_library};

fn ints(values: &[i64]) -> Reply {
    Reply::Array(values.iter().map(|v| Reply::Int(*v)).collect())
}

fn hellotype_server(config: Vec<(String, String)>) -> Server {
    Server::start_with(ServerOptions {
        module_args: vec!["LOAD".into(), guests::HELLOTYPE.into()],
        config,
        ..Default::default()
    })
}

/// Fills `k` with 10, 5, 7 and `other` with 1..=20.
fn fill(server: &Server) {
    let mut c = server.client();
    for v in ["10", "5", "7"] {
        c.cmd(&["HELLOTYPE.INSERT", "k", v]);
    }
    for v in 1..=20 {
        c.cmd(&["HELLOTYPE.INSERT", "other", &v.to_string()]);
    }
}

fn check_filled(server: &Server) {
    let mut c = server.client();
    assert_eq!(c.cmd(&["TYPE", "k"]), Reply::Status("hellotype".into()));
    assert_eq!(
        c.cmd(&["HELLOTYPE.RANGE", "k", "0", "10"]),
        ints(&[5, 7, 10])
    );
    assert_eq!(c.cmd(&["HELLOTYPE.LEN", "other"]), Reply::Int(20));
}

fn wait_aof_rewrite(server: &Server) {
    let mut c = server.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .cmd(&["INFO", "persistence"])
        .text()
        .contains("aof_rewrite_in_progress:1")
    {
        assert!(Instant::now() < deadline, "the AOF rewrite did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn hellotype_replies_as_the_c_module_does() {
    let server = hellotype_server(vec![]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["HELLOTYPE.INSERT", "k", "10"]), Reply::Int(1));
    assert_eq!(c.cmd(&["HELLOTYPE.INSERT", "k", "-5"]), Reply::Int(2));
    assert_eq!(c.cmd(&["HELLOTYPE.INSERT", "k", "7"]), Reply::Int(3));
    assert_eq!(c.cmd(&["HELLOTYPE.INSERT", "k", "7"]), Reply::Int(4));
    assert_eq!(c.cmd(&["TYPE", "k"]), Reply::Status("hellotype".into()));
    assert_eq!(
        c.cmd(&["HELLOTYPE.RANGE", "k", "0", "10"]),
        ints(&[-5, 7, 7, 10])
    );
    // Like the C module, `first` is parsed but the range starts at the first element.
    assert_eq!(c.cmd(&["HELLOTYPE.RANGE", "k", "2", "2"]), ints(&[-5, 7]));
    assert_eq!(c.cmd(&["HELLOTYPE.RANGE", "missing", "0", "3"]), ints(&[]));
    assert_eq!(c.cmd(&["HELLOTYPE.LEN", "k"]), Reply::Int(4));
    assert_eq!(c.cmd(&["HELLOTYPE.LEN", "missing"]), Reply::Int(0));
    // The C module's errors.
    assert_eq!(
        c.cmd(&["HELLOTYPE.INSERT", "k", "x"]).error(),
        "ERR invalid value: must be a signed 64 bit integer"
    );
    assert_eq!(
        c.cmd(&["HELLOTYPE.RANGE", "k", "0", "-1"]).error(),
        "ERR invalid first or count parameters"
    );
    assert_eq!(
        c.cmd(&["HELLOTYPE.RANGE", "k", "a", "1"]).error(),
        "ERR invalid first or count parameters"
    );
    assert_eq!(
        c.cmd(&["HELLOTYPE.LEN"]).error(),
        "ERR wrong number of arguments for 'hellotype.len' command"
    );
    // Types do not mix, both ways.
    c.cmd(&["SET", "s", "x"]);
    assert!(
        c.cmd(&["HELLOTYPE.INSERT", "s", "1"])
            .error()
            .starts_with("WRONGTYPE")
    );
    assert!(
        c.cmd(&["HELLOTYPE.LEN", "s"])
            .error()
            .starts_with("WRONGTYPE")
    );
    assert!(c.cmd(&["GET", "k"]).error().starts_with("WRONGTYPE"));
    assert!(c.cmd(&["LPUSH", "k", "x"]).error().starts_with("WRONGTYPE"));
    // Bytes the guest did not write (a client's WASM.SETVALUE) are decoded as untrusted.
    c.cmd(&["WASM.SETVALUE", "bad", "hellotype", "0", "abc"]);
    assert_eq!(
        c.cmd(&["HELLOTYPE.RANGE", "bad", "0", "10"]).error(),
        "ERR corrupt hellotype value"
    );
    c.cmd(&["DEL", "bad"]);
    // MEMORY USAGE, DEBUG DIGEST-VALUE, COPY, DEL work on the values.
    assert!(c.cmd(&["MEMORY", "USAGE", "k"]).int() > 32);
    let digest = c.cmd(&["DEBUG", "DIGEST-VALUE", "k"]);
    assert_eq!(c.cmd(&["COPY", "k", "k2"]), Reply::Int(1));
    assert_eq!(c.cmd(&["DEBUG", "DIGEST-VALUE", "k2"]), digest);
    c.cmd(&["HELLOTYPE.INSERT", "k2", "100"]);
    assert_ne!(c.cmd(&["DEBUG", "DIGEST-VALUE", "k2"]), digest);
    assert_eq!(c.cmd(&["HELLOTYPE.LEN", "k"]), Reply::Int(4));
    assert_eq!(c.cmd(&["DEL", "k2"]), Reply::Int(1));
    // Changing a value keeps the key's expire (as changing a C module's value in place does).
    c.cmd(&["EXPIRE", "k", "1000"]);
    c.cmd(&["HELLOTYPE.INSERT", "k", "1"]);
    assert!(c.cmd(&["TTL", "k"]).int() > 900);
    // WASM.LIST shows the type.
    let list = c.cmd(&["WASM.LIST", "hellotype"]);
    let types = list.array()[0].field("data-types").array();
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].field("name").text(), "hellotype");
    assert_eq!(types[0].field("encoding-version").int(), 0);
}

#[test]
fn values_survive_rdb_debug_reload_and_a_restart() {
    let mut server = hellotype_server(vec![]);
    fill(&server);
    let digest = server.digest();
    let mut c = server.client();
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), Reply::Status("OK".into()));
    assert_eq!(server.digest(), digest);
    check_filled(&server);
    assert_eq!(c.cmd(&["SAVE"]), Reply::Status("OK".into()));
    server.restart().expect("restart from the RDB");
    assert_eq!(server.digest(), digest);
    check_filled(&server);
}

#[test]
fn values_survive_the_aof_and_its_rewrite() {
    let mut server = hellotype_server(vec![("appendonly".into(), "yes".into())]);
    fill(&server);
    let digest = server.digest();
    server.restart().expect("restart from the AOF");
    assert_eq!(server.digest(), digest);
    check_filled(&server);
    // A rewrite emits each value as WASM.SETVALUE; with and without the RDB preamble.
    for preamble in ["yes", "no"] {
        let mut c = server.client();
        c.cmd(&["CONFIG", "SET", "aof-use-rdb-preamble", preamble]);
        if preamble == "no" {
            // Turning it off warns at once: the next rewrite will not keep the guests.
            assert!(
                server
                    .log()
                    .contains("aof-use-rdb-preamble is no: guests are not kept"),
                "{}",
                server.log()
            );
        }
        assert_eq!(
            c.cmd(&["BGREWRITEAOF"]).text(),
            "Background append only file rewriting started"
        );
        wait_aof_rewrite(&server);
        let restarted = ServerOptions {
            module_args: vec!["LOAD".into(), guests::HELLOTYPE.into()],
            config: vec![
                ("appendonly".into(), "yes".into()),
                ("aof-use-rdb-preamble".into(), preamble.into()),
            ],
            ..Default::default()
        };
        server
            .restart_with(restarted)
            .unwrap_or_else(|log| panic!("restart after a rewrite (preamble {preamble}): {log}"));
        assert_eq!(
            server.digest(),
            digest,
            "after a rewrite, preamble {preamble}"
        );
        check_filled(&server);
    }
    // The AOF (no preamble now) replayed with no guest loaded: WASM.SETVALUE registers the type.
    let without_guest = ServerOptions {
        config: vec![
            ("appendonly".into(), "yes".into()),
            ("aof-use-rdb-preamble".into(), "no".into()),
        ],
        ..Default::default()
    };
    server
        .restart_with(without_guest)
        .unwrap_or_else(|log| panic!("restart without the guest: {log}"));
    assert_eq!(server.digest(), digest, "replayed with no guest loaded");
}

#[test]
fn values_reach_a_replica_by_full_sync_and_by_replication() {
    let master = hellotype_server(vec![]);
    fill(&master);
    let replica = Server::start();
    replica.replicate_from(&master);
    master.assert_same_dataset(&replica);
    check_filled(&replica);
    let mut c = master.client();
    for v in [3, 1, 2] {
        c.cmd(&["HELLOTYPE.INSERT", "later", &v.to_string()]);
    }
    c.cmd(&["EXPIRE", "later", "500"]);
    master.assert_same_dataset(&replica);
    assert_eq!(
        replica
            .client()
            .cmd(&["HELLOTYPE.RANGE", "later", "0", "9"]),
        ints(&[1, 2, 3])
    );
    assert_eq!(
        replica.client().cmd(&["DEBUG", "DIGEST-VALUE", "later"]),
        c.cmd(&["DEBUG", "DIGEST-VALUE", "later"])
    );
}

#[test]
fn values_outlive_their_guest() {
    let mut server = hellotype_server(vec![]);
    fill(&server);
    let digest = server.digest();
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", "hellotype"]),
        Reply::Status("OK".into())
    );
    // The keys stay, with their type; Redis still saves, digests and measures them.
    assert_eq!(c.cmd(&["TYPE", "k"]), Reply::Status("hellotype".into()));
    assert_eq!(server.digest(), digest);
    assert!(c.cmd(&["MEMORY", "USAGE", "k"]).int() > 0);
    assert_eq!(c.cmd(&["SAVE"]), Reply::Status("OK".into()));
    // Restarted without the guest: the RDB's guest record re-registers the type before the keys.
    server
        .restart_with(ServerOptions::default())
        .expect("an RDB with values of a type no guest owns loads");
    assert_eq!(server.digest(), digest);
    let mut c = server.client();
    assert_eq!(c.cmd(&["TYPE", "other"]), Reply::Status("hellotype".into()));
    // Loading the guest again gives it its values back.
    assert!(!c.cmd(&["WASM.LOAD", guests::HELLOTYPE]).is_error());
    check_filled(&server);
}

#[test]
fn a_type_belongs_to_one_guest_and_names_are_checked() {
    let server = hellotype_server(vec![]);
    let mut c = server.client();
    let clash = c.cmd(&["WASM.LOAD", guests::RAW_GUEST, "ARGS", "type-clash"]);
    assert!(
        clash
            .error()
            .contains("data type 'hellotype' belongs to guest 'hellotype'"),
        "{clash:?}"
    );
    let bad = c.cmd(&["WASM.LOAD", guests::RAW_GUEST, "ARGS", "bad-type"]);
    assert!(bad.error().contains("exactly 9 characters"), "{bad:?}");
    // The host's own type (its guest record) is no guest's.
    let taken = c.cmd(&["WASM.LOAD", guests::RAW_GUEST, "ARGS", "host-type"]);
    assert!(
        taken
            .error()
            .contains("data type name 'wasmguest' is taken"),
        "{taken:?}"
    );
    // Once the owner is unloaded, another guest may take the type over.
    c.cmd(&["WASM.UNLOAD", "hellotype"]);
    assert!(
        !c.cmd(&["WASM.LOAD", guests::RAW_GUEST, "ARGS", "type-clash"])
            .is_error()
    );
}

/// A `DUMP` of a value of data type `name`, made on a server where the type is reserved.
fn dump_of_a_value_of(name: &str) -> Vec<u8> {
    let source = Server::with_module_args(&["TYPE", name]);
    let mut s = source.client();
    s.cmd(&["WASM.SETVALUE", "v", name, "0", "payload"]);
    match s.cmd(&["DUMP", "v"]) {
        Reply::Bulk(dump) => dump,
        other => panic!("DUMP of a guest type value: {other:?}"),
    }
}

/// A server with the AOF on and a replica of it, both with the modules of `module_load` loaded
/// (`MODULE LOAD`) before the replica follows.
fn aof_master_and_replica(module_load: &[&str]) -> (Server, Server) {
    let master = Server::start_with(ServerOptions {
        config: vec![("appendonly".into(), "yes".into())],
        ..Default::default()
    });
    let replica = Server::start();
    for server in [&master, &replica] {
        for module in module_load {
            assert_eq!(
                server.client().cmd(&["MODULE", "LOAD", module]),
                Reply::Status("OK".into())
            );
        }
    }
    replica.replicate_from(&master);
    (master, replica)
}

#[test]
fn a_load_that_fails_registers_no_data_type() {
    let dump = dump_of_a_value_of("evil-blob");
    let (mut master, replica) = aof_master_and_replica(&[]);
    let mut c = master.client();
    let restore = |c: &mut redis_wasm_tests::Client| c.cmd_bytes(&[b"RESTORE", b"k", b"0", &dump]);
    // A guest already named 'evil': the evil guest's load fails after its init declared the
    // type. (Registered then, the type would have let the master alone take the RESTORE, which
    // its replica refused and its AOF could not replay at the next start.)
    assert!(
        !c.cmd(&["WASM.LOAD", guests::RAW_GUEST, "ARGS", "relay", "evil"])
            .is_error()
    );
    let failed = c.cmd(&["WASM.LOAD", guests::EVIL]);
    assert!(failed.error().contains("already loaded"), "{failed:?}");
    let refused = restore(&mut c);
    assert!(refused.error().contains("Bad data format"), "{refused:?}");
    // A load that succeeds registers it, on the replica too (which replays the load).
    c.cmd(&["WASM.UNLOAD", "evil"]);
    assert!(!c.cmd(&["WASM.LOAD", guests::EVIL]).is_error());
    assert_eq!(restore(&mut c), Reply::Status("OK".into()));
    assert_eq!(c.cmd(&["TYPE", "k"]), Reply::Status("evil-blob".into()));
    let digest = master.assert_same_dataset(&replica);
    master.restart().expect("restart from the AOF");
    assert_eq!(master.digest(), digest);
}

#[test]
fn types_registered_for_a_load_that_failed_later_are_withdrawn() {
    let dump = dump_of_a_value_of("aleftover");
    let native = native_library();
    let (mut master, replica) = aof_master_and_replica(&[native.to_str().unwrap()]);
    let mut c = master.client();
    // The guest declares 'aleftover' and the native module's 'nativetyp': Redis registers the
    // first, refuses the second, and cannot take the first back.
    let failed = c.cmd(&["WASM.LOAD", guests::RAW_GUEST, "ARGS", "native-clash"]);
    assert!(
        failed
            .error()
            .contains("refused to register data type 'nativetyp'"),
        "{failed:?}"
    );
    let refused = c.cmd_bytes(&[b"RESTORE", b"k", b"0", &dump]);
    assert!(refused.error().contains("Bad data format"), "{refused:?}");
    assert!(master.log().contains(
        "refused a value of data type 'aleftover': the type was registered for a load that failed"
    ));
    let unknown = c.cmd(&["WASM.SETVALUE", "k", "aleftover", "0", "x"]);
    assert!(unknown.error().contains("unknown data type"), "{unknown:?}");
    let digest = master.assert_same_dataset(&replica);
    master.restart().expect("restart from the AOF");
    assert_eq!(master.digest(), digest);
}

#[test]
fn reserved_types_and_wasm_setvalue() {
    let mut server = Server::with_module_args(&["TYPE", "mytype123", "TYPE", "mytype456"]);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["WASM.SETVALUE", "v", "mytype123", "3", "payload"]),
        Reply::Status("OK".into())
    );
    // Values of two types digest apart, whatever their bytes.
    c.cmd(&["WASM.SETVALUE", "other", "mytype456", "3", "payload"]);
    assert_ne!(
        c.cmd(&["DEBUG", "DIGEST-VALUE", "v"]),
        c.cmd(&["DEBUG", "DIGEST-VALUE", "other"])
    );
    c.cmd(&["DEL", "other"]);
    assert_eq!(c.cmd(&["TYPE", "v"]), Reply::Status("mytype123".into()));
    assert!(
        c.cmd(&["WASM.SETVALUE", "v", "bad", "0", "x"])
            .error()
            .contains("exactly 9 characters")
    );
    assert!(
        c.cmd(&["WASM.SETVALUE", "v", "mytype123", "-1", "x"])
            .error()
            .contains("encoding version")
    );
    for unusual in ["01", "+1", " 1"] {
        assert!(
            c.cmd(&["WASM.SETVALUE", "v", "mytype123", unusual, "x"])
                .error()
                .contains("encoding version"),
            "{unusual}"
        );
    }
    assert!(
        c.cmd(&["WASM.SETVALUE", "v", "mytype123"])
            .error()
            .contains("wrong number of arguments")
    );
    // The key is overwritten, not read, as by RESTORE: a user who may only write keys may set
    // it (the key spec says so, and the exact arity).
    c.cmd(&["ACL", "SETUSER", "writer", "on", "nopass", "%W~*", "+@all"]);
    let mut writer = server.client();
    writer.cmd(&["AUTH", "writer", "x"]);
    assert_eq!(
        writer.cmd(&["WASM.SETVALUE", "written", "mytype123", "0", "x"]),
        Reply::Status("OK".into())
    );
    assert!(
        writer
            .cmd(&["GET", "written"])
            .error()
            .starts_with("NOPERM")
    );
    let info = c.cmd(&["COMMAND", "INFO", "wasm.setvalue"]);
    let info = &info.array()[0];
    assert_eq!(info.array()[1], Reply::Int(5));
    let specs = format!("{:?}", info.array()[8]);
    assert!(specs.contains("[+OW, +update]"), "{specs}");
    // Only a replay (AOF, master) may register a new type: registrations are for good, and a
    // client could otherwise use up the server's 1024.
    let unknown = c.cmd(&["WASM.SETVALUE", "w", "unknown12", "0", "x"]);
    assert!(
        unknown
            .error()
            .starts_with("ERR unknown data type 'unknown12'"),
        "{unknown:?}"
    );
    assert_eq!(c.cmd(&["EXISTS", "w"]), Reply::Int(0));
    let digest = server.digest();
    c.cmd(&["SAVE"]);
    server
        .restart_with(ServerOptions::default())
        .expect("restart without the TYPE argument");
    assert_eq!(server.digest(), digest);
    assert!(
        server
            .client()
            .cmd(&["WASM.SETVALUE", "v", "wasmguest", "0", "x"])
            .error()
            .contains("is taken")
    );
    // A bad reservation stops the host from loading, with the reason in the log.
    let log = redis_wasm_tests::start_expecting_failure(&["TYPE", "toolong1234"]);
    assert!(log.contains("exactly 9 characters"), "{log}");
    // Reserving the host's own type would have Redis read keys and the guest record with each
    // other's loaders (the dataset lost on DEBUG RELOAD, a server that could not restart).
    let log = redis_wasm_tests::start_expecting_failure(&["TYPE", "wasmguest"]);
    assert!(log.contains("data type name 'wasmguest' is taken"), "{log}");
}

/// Redis's CRC-64 (Jones polynomial, reflected, no final xor), which ends every `DUMP` payload.
fn crc64_jones(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |mut crc, &byte| {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x95ac_9329_ac4b_c9b5
            } else {
                crc >> 1
            };
        }
        crc
    })
}

/// `payload` with `from` replaced by `to` (same length) and its checksum recomputed.
fn edit_dump(payload: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = payload
        .windows(from.len())
        .position(|w| w == from)
        .expect("the text is in the payload");
    let mut edited = payload[..payload.len() - 8].to_vec();
    edited[at..at + to.len()].copy_from_slice(to);
    let crc = crc64_jones(&edited);
    edited.extend_from_slice(&crc.to_le_bytes());
    edited
}

#[test]
fn restore_refuses_a_value_that_names_another_type() {
    let server = Server::with_module_args(&["TYPE", "mytype123", "TYPE", "othertyp1"]);
    let mut c = server.client();
    c.cmd(&["WASM.SETVALUE", "v", "mytype123", "0", "payload"]);
    let Reply::Bulk(dump) = c.cmd(&["DUMP", "v"]) else {
        panic!("DUMP of a guest type value")
    };
    assert_eq!(crc64_jones(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    // A changed value with a correct checksum restores: the checksum is right...
    let changed = edit_dump(&dump, b"payload", b"PAYLOAD");
    assert_eq!(
        c.cmd_bytes(&[b"RESTORE", b"changed", b"0", &changed]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["TYPE", "changed"]),
        Reply::Status("mytype123".into())
    );
    let Reply::Bulk(again) = c.cmd(&["DUMP", "changed"]) else {
        panic!("DUMP of the restored value")
    };
    assert!(again.windows(7).any(|w| w == b"PAYLOAD"));
    // ...and a value whose envelope names another type than its Redis type is refused (it
    // used to be stored, answering WRONGTYPE to its own type's guest and rewritten to the AOF
    // under the other name).
    let renamed = edit_dump(&dump, b"mytype123", b"othertyp1");
    let refused = c.cmd_bytes(&[b"RESTORE", b"renamed", b"0", &renamed]);
    assert!(refused.error().contains("Bad data format"), "{refused:?}");
    // The log says why (Redis's messages point there).
    let log = server.log();
    assert!(
        log.contains(
            "refused a value of data type 'mytype123' whose envelope names the type 'othertyp1'"
        ),
        "{log}"
    );
    assert_eq!(c.cmd(&["EXISTS", "renamed"]), Reply::Int(0));
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn wasm_setvalue_wakes_clients_blocked_on_the_key() {
    // Replacing a value of the same type in place is no change Redis notices: WASM.SETVALUE
    // signals the key itself (on a replica it stands for the master guest's write, which woke
    // the master's clients).
    let server = Server::with_module_args(&["LOAD", guests::HELLOTYPE, "LOAD", guests::API_GUEST]);
    let mut c = server.client();
    let value = |v: i64| v.to_le_bytes().to_vec();
    let set = |c: &mut redis_wasm_tests::Client, v: i64| {
        c.cmd_bytes(&[
            b"WASM.SETVALUE",
            b"api:never",
            b"hellotype",
            b"0",
            &value(v),
        ])
    };
    assert_eq!(set(&mut c, 1), Reply::Status("OK".into()));
    // Blocks on the key `api:never` until it is signalled, for 5 s at most.
    let mut waiter = server.client();
    waiter.send(&[b"API.WAIT", b"keyswait", b"5000"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .cmd(&["INFO", "wasm"])
        .text()
        .contains("wasm_blocked_clients:1")
    {
        assert!(Instant::now() < deadline, "never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    assert_eq!(set(&mut c, 2), Reply::Status("OK".into()));
    assert_eq!(waiter.read(), Reply::Bulk(Vec::new()));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        c.cmd(&["HELLOTYPE.RANGE", "api:never", "0", "9"]),
        ints(&[2])
    );
}
