//! The walking skeleton: loading, listing, unloading, routing guest commands by name, and the
//! load errors a user can make.

use redis_wasm_tests::{Reply, Server, ServerOptions, guests, start_expecting_failure};

fn load(server: &Server, path: &str, args: &[&str]) -> Reply {
    let mut command = vec!["WASM.LOAD", path];
    if !args.is_empty() {
        command.push("ARGS");
        command.extend_from_slice(args);
    }
    server.client().cmd(&command)
}

fn assert_alive(server: &Server) {
    assert_eq!(server.client().cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn helloworld_rand_answers_an_integer() {
    let server = Server::start();
    assert_eq!(
        load(&server, guests::HELLOWORLD, &[]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    let mut c = server.client();
    let a = c.cmd(&["HELLOWORLD.RAND"]).int();
    let b = c.cmd(&["helloworld.rand"]).int();
    assert!(a >= 0 && b >= 0 && a != b, "{a} {b}");
}

#[test]
fn guests_load_from_module_arguments_with_their_arguments() {
    let server = Server::with_module_args(&[
        "LOAD",
        guests::BASICS,
        "ARGS",
        "foo",
        "bar",
        "1234",
        "LOAD",
        guests::HELLOWORLD,
    ]);
    let mut c = server.client();
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
    let args = c.cmd(&["BASICS.LOADARGS"]);
    assert_eq!(
        args,
        Reply::Array(vec![
            Reply::Bulk(b"foo".to_vec()),
            Reply::Bulk(b"bar".to_vec()),
            Reply::Bulk(b"1234".to_vec())
        ])
    );
}

#[test]
fn guest_text_cannot_forge_log_lines() {
    // Guest text reaches the log with its control characters escaped: a newline cannot start
    // a line of the guest's making.
    let forged = "1:M 01 Jan 2026 00:00:00.000 * forged by a guest";
    let is_forged = |log: &str| log.lines().any(|line| line.starts_with(forged));
    let log = start_expecting_failure(&["LOAD", guests::RAW_GUEST, "ARGS", "init-error-forged"]);
    assert!(log.contains(&format!("ERR refused\\x0a{forged}")), "{log}");
    assert!(!is_forged(&log), "{log}");
    let server = Server::with_module_args(&["LOAD", guests::RAW_GUEST, "ARGS", "log-forged"]);
    let log = server.log();
    assert!(log.contains(&format!("hello\\x0a{forged}")), "{log}");
    assert!(!is_forged(&log), "{log}");
}

#[test]
fn bad_module_arguments_refuse_to_start() {
    let log = start_expecting_failure(&["FROB"]);
    assert!(log.contains("expected TYPE or LOAD, got 'FROB'"), "{log}");
    let log = start_expecting_failure(&["LOAD", "/no/such/guest.wasm"]);
    assert!(log.contains("cannot read '/no/such/guest.wasm'"), "{log}");
    let log = start_expecting_failure(&["LOAD", guests::HELLOWORLD, "TYPE", "abcdefghi"]);
    assert!(
        log.contains("TYPE must come before the first LOAD"),
        "{log}"
    );
}

#[test]
fn host_loads_into_a_running_server_with_module_load() {
    let server = Server::start_with(ServerOptions {
        without_host: true,
        ..Default::default()
    });
    let mut c = server.client();
    let host = redis_wasm_tests::host_library();
    assert_eq!(
        c.cmd(&["MODULE", "LOAD", host.to_str().unwrap()]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        load(&server, guests::HELLOWORLD, &[]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
    // The host holds compiled code and a thread: it refuses to be unloaded.
    assert!(c.cmd(&["MODULE", "UNLOAD", "wasm"]).is_error());
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
}

#[test]
fn a_failed_module_load_leaves_nothing_running_and_says_to_restart() {
    let server = Server::start_with(ServerOptions {
        without_host: true,
        ..Default::default()
    });
    let mut c = server.client();
    let host = redis_wasm_tests::host_library();
    let host = host.to_str().unwrap();
    let failed = c.cmd(&[
        "MODULE",
        "LOAD",
        host,
        "LOAD",
        guests::HELLOWORLD,
        "LOAD",
        "/no/such/guest.wasm",
    ]);
    assert!(failed.is_error(), "{failed:?}");
    // The command filter is gone: the first guest's command is unknown under its own name
    // (a filter left behind would rename it to a dispatcher that no longer exists).
    let unknown = c.cmd(&["HELLOWORLD.RAND"]);
    assert!(
        unknown
            .error()
            .contains("unknown command 'HELLOWORLD.RAND'"),
        "{unknown:?}"
    );
    // The config listener is gone (it would run against the freed module).
    for _ in 0..20 {
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "maxmemory-samples", "6"]),
            Reply::Status("OK".into())
        );
    }
    assert!(c.cmd(&["MODULE", "LIST"]).array().is_empty());
    assert!(c.cmd(&["MODULE", "LOAD", host]).is_error());
    assert!(server.log().contains("restart redis-server to load it"));
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn wasm_list_describes_guests_and_commands() {
    let server = Server::start();
    load(&server, guests::BASICS, &["a", "b c"]);
    load(&server, guests::HELLOWORLD, &[]);
    for resp3 in [false, true] {
        let mut c = server.client();
        if resp3 {
            c.hello3();
        }
        let list = c.cmd(&["WASM.LIST"]);
        let all = list.array();
        assert_eq!(all.len(), 2);
        let basics = &all[0];
        assert_eq!(basics.field("name").text(), "basics");
        assert_eq!(basics.field("version").int(), 3);
        assert_eq!(basics.field("api-version").int(), 1);
        assert_eq!(basics.field("source").text(), guests::BASICS);
        // Built with the SDK: it takes short arguments packed.
        assert_eq!(basics.field("world").text(), "module-words");
        assert_eq!(
            basics
                .field("args")
                .array()
                .iter()
                .map(Reply::text)
                .collect::<Vec<_>>(),
            ["a", "b c"]
        );
        let keys = basics
            .field("commands")
            .array()
            .iter()
            .find(|c| c.field("name").text() == "basics.keys")
            .unwrap();
        assert_eq!(
            keys.field("flags")
                .array()
                .iter()
                .map(Reply::text)
                .collect::<Vec<_>>(),
            ["readonly"]
        );
        assert_eq!(
            (
                keys.field("first-key").int(),
                keys.field("last-key").int(),
                keys.field("key-step").int()
            ),
            (1, -1, 2)
        );
        assert_eq!(keys.field("arity").int(), -2);
        let hello = &all[1];
        assert_eq!(hello.field("name").text(), "helloworld");
        let rand = &hello.field("commands").array()[0];
        assert_eq!(rand.field("name").text(), "helloworld.rand");
        assert_eq!(
            rand.field("flags")
                .array()
                .iter()
                .map(Reply::text)
                .collect::<Vec<_>>(),
            ["readonly", "fast", "random"]
        );
    }
    let one = server.client().cmd(&["WASM.LIST", "helloworld"]);
    assert_eq!(one.array().len(), 1);
    assert_eq!(
        server.client().cmd(&["WASM.LIST", "nope"]),
        Reply::Array(vec![])
    );
}

#[test]
fn unload_removes_the_guest_and_its_commands() {
    let server = Server::start();
    load(&server, guests::HELLOWORLD, &[]);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", "helloworld"]),
        Reply::Status("OK".into())
    );
    let err = c.cmd(&["HELLOWORLD.RAND"]);
    assert!(
        err.error()
            .starts_with("ERR unknown command 'HELLOWORLD.RAND'"),
        "{err:?}"
    );
    assert_eq!(c.cmd(&["WASM.LIST"]), Reply::Array(vec![]));
    assert_eq!(
        c.cmd(&["WASM.UNLOAD", "helloworld"]).error(),
        "ERR no guest named 'helloworld' is loaded"
    );
    // It can be loaded again.
    assert_eq!(
        load(&server, guests::HELLOWORLD, &[]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
}

#[test]
fn a_command_queued_in_multi_before_unload_gets_a_clear_error() {
    let server = Server::start();
    load(&server, guests::HELLOWORLD, &[]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["MULTI"]), Reply::Status("OK".into()));
    assert_eq!(c.cmd(&["HELLOWORLD.RAND"]), Reply::Status("QUEUED".into()));
    server.client().cmd(&["WASM.UNLOAD", "helloworld"]);
    let exec = c.cmd(&["EXEC"]);
    assert!(
        exec.array()[0]
            .error()
            .contains("no loaded guest provides it"),
        "{exec:?}"
    );
}

#[test]
fn guest_commands_answer_in_multi_and_from_lua() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    assert_eq!(c.cmd(&["MULTI"]), Reply::Status("OK".into()));
    assert_eq!(c.cmd(&["basics.echo", "x"]), Reply::Status("QUEUED".into()));
    assert_eq!(
        c.cmd(&["BASICS.ECHO", "y", "z"]),
        Reply::Status("QUEUED".into())
    );
    let exec = c.cmd(&["EXEC"]);
    assert_eq!(
        exec.array()[0],
        Reply::Array(vec![Reply::Bulk(b"x".to_vec())])
    );
    assert_eq!(exec.array()[1].array().len(), 2);
    let lua = c.cmd(&[
        "EVAL",
        "return redis.call('basics.echo', 'from', 'lua')",
        "0",
    ]);
    assert_eq!(
        lua,
        Reply::Array(vec![
            Reply::Bulk(b"from".to_vec()),
            Reply::Bulk(b"lua".to_vec())
        ])
    );
    // Lua's error handling sees the guest's error as a Redis error.
    let lua = c.cmd(&["EVAL", "return redis.pcall('basics.fail')", "0"]);
    assert_eq!(lua.error(), "ERR my failure");
}

#[test]
fn guest_commands_answer_another_modules_rm_call() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let native = redis_wasm_tests::native_library();
    assert_eq!(
        c.cmd(&["MODULE", "LOAD", native.to_str().unwrap()]),
        Reply::Status("OK".into())
    );
    // (the redis-module crate turns bulk strings from RM_Call into status replies)
    let reply = c.cmd(&["NATIVE.CALL", "basics.echo", "via", "rm_call"]);
    assert_eq!(
        reply.array().iter().map(Reply::text).collect::<Vec<_>>(),
        ["via", "rm_call"]
    );
    let err = c.cmd(&["NATIVE.CALL", "BASICS.FAIL"]);
    assert_eq!(err.error(), "ERR my failure");
}

#[test]
fn errors_speak_in_the_guest_commands_name() {
    let server = Server::start();
    load(&server, guests::HELLOWORLD, &[]);
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["HELLOWORLD.RAND", "extra"]).error(),
        "ERR wrong number of arguments for 'helloworld.rand' command"
    );
    // Declared arity, checked by the host before the guest runs.
    assert_eq!(
        c.cmd(&["BASICS.ARITY"]).error(),
        "ERR wrong number of arguments for 'basics.arity' command"
    );
    assert_eq!(
        c.cmd(&["BASICS.ARITY", "a", "b"]).error(),
        "ERR wrong number of arguments for 'basics.arity' command"
    );
    assert_eq!(c.cmd(&["BASICS.ARITY", "a"]), Reply::Status("OK".into()));
    assert_eq!(
        c.cmd(&["BASICS.KEYS"]).error(),
        "ERR wrong number of arguments for 'basics.keys' command"
    );
    // Guest errors are sent as given, like RedisModule_ReplyWithError: the leading word is the code.
    assert_eq!(c.cmd(&["BASICS.FAIL"]).error(), "ERR my failure");
    assert_eq!(
        c.cmd(&["BASICS.FAIL", "MYCODE something broke"]).error(),
        "MYCODE something broke"
    );
    assert_eq!(
        c.cmd(&["BASICS.FAIL", "no code here"]).error(),
        "no code here"
    );
    // A huge error reaches its client whole, but WASM.LIST keeps only its start.
    let huge = format!("ERR {}", "x".repeat(100_000));
    assert_eq!(c.cmd(&["BASICS.FAIL", &huge]).error(), huge);
    let kept = c.cmd(&["WASM.LIST", "basics"]).array()[0]
        .field("stats")
        .field("last-error")
        .text();
    assert_eq!(kept, format!("{}... (100004 bytes)", &huge[..512]));
}

#[test]
fn a_panicking_guest_answers_an_error_with_the_message_and_recovers() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let err = c.cmd(&["BASICS.PANIC", "now"]);
    let text = err.error();
    assert!(
        text.starts_with("ERR guest 'basics' command 'basics.panic' panicked: boom now (at "),
        "{text}"
    );
    assert_alive(&server);
    // The poisoned instance was replaced: the guest still answers, and its init ran again.
    assert_eq!(
        c.cmd(&["BASICS.ECHO", "again"]),
        Reply::Array(vec![Reply::Bulk(b"again".to_vec())])
    );
    let stats = c.cmd(&["WASM.LIST", "basics"]).array()[0]
        .field("stats")
        .clone();
    assert_eq!(
        (stats.field("traps").int(), stats.field("restarts").int()),
        (1, 1)
    );
    assert_eq!(stats.field("calls").int(), 2);
}

#[test]
fn malformed_replies_become_errors_and_the_connection_stays_usable() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let cases = [
        (
            "BASICS.BAD-ARRAY",
            "an array still expects 1 more element(s)",
        ),
        // Found by the SDK, which says what the guest did.
        (
            "BASICS.HOLLOW-ARRAY",
            "RedisValue::NoReply inside an array, map or set (NoReply stands only for a whole reply already sent)",
        ),
        ("BASICS.TWICE", "the command replied more than once"),
        ("BASICS.SILENT", "the command did not reply"),
        (
            "BASICS.CRLF",
            "a simple string reply cannot contain CR, LF or NUL",
        ),
    ];
    for (command, why) in cases {
        let raw = c.cmd_raw(&[command]);
        let expected = format!(
            "-ERR guest 'basics' command '{}' sent a bad reply: {why}\r\n",
            command.to_lowercase()
        );
        let expected = expected.replace(
            "reply: an array",
            "reply: the reply is incomplete: an array",
        );
        assert_eq!(String::from_utf8_lossy(&raw), expected);
        assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    }
    // An error returned after a partial reply discards the partial reply.
    assert_eq!(
        c.cmd_raw(&["BASICS.PARTIAL-THEN-ERROR"]),
        b"-ERR gave up half-way\r\n"
    );
    assert_eq!(
        c.cmd_raw(&["BASICS.PARTIAL-THEN-ERROR", "arity"]),
        b"-ERR wrong number of arguments for 'basics.partial-then-error' command\r\n"
    );
    let deep = c.cmd(&["BASICS.NESTED", "200"]);
    assert!(deep.error().contains("deeper than 128 levels"), "{deep:?}");
    assert_eq!(
        c.cmd(&["BASICS.NESTED", "2"]),
        Reply::Array(vec![Reply::Array(vec![Reply::Int(2)])])
    );
}

#[test]
fn replies_of_every_foundation_kind_are_encoded_exactly() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let raw = c.cmd_raw(&["BASICS.MIXED"]);
    assert_eq!(
        raw,
        b"*6\r\n:-7\r\n+fine\r\n$4\r\nbulk\r\n$4\r\n\x00\xff\r\n\r\n$-1\r\n*0\r\n"
    );
    c.hello3();
    let raw = c.cmd_raw(&["BASICS.MIXED"]);
    assert_eq!(
        raw,
        b"*6\r\n:-7\r\n+fine\r\n$4\r\nbulk\r\n$4\r\n\x00\xff\r\n\r\n_\r\n*0\r\n"
    );
}

#[test]
fn arguments_are_binary_safe() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let binary: &[u8] = b"\x00\xff\r\nnot utf8 \xc3\x28";
    let reply = c.cmd_bytes(&[b"BASICS.ECHO", binary, b""]);
    assert_eq!(
        reply,
        Reply::Array(vec![Reply::Bulk(binary.to_vec()), Reply::Bulk(vec![])])
    );
    // Short arguments cross packed, in fourteen words or in one list, long ones as a list each
    // (`word-arguments.invoke`, `packed-arguments.invoke`, `guest.invoke`): the guest
    // sees the same either way. The SDK's guests export all three (`raw-guest` shows which one
    // the host calls).
    let component = std::fs::read(guests::BASICS).expect("the basics guest");
    let packed_export = b"redis:module/packed-arguments@0.3.5";
    assert!(
        component
            .windows(packed_export.len())
            .any(|w| w == packed_export)
    );
    let long = vec![b'\0'; 70_000];
    // `BASICS.ECHO-BORROWED` borrows its arguments (`&[RedisString]`): the SDK fills the same
    // vector for every such command, so each must see only its own arguments, however many
    // the one before had (and a vector grown past 1,024 arguments is not kept).
    for echo in [&b"BASICS.ECHO"[..], b"BASICS.ECHO-BORROWED"] {
        for args in [
            vec![binary, b"", b"k"],
            vec![&long[..108]],
            vec![&long[..85], b"", binary],
            vec![binary, &long, b"", binary],
            vec![&long[..65_000], b"", binary],
            vec![b"" as &[u8]; 3_000],
            vec![binary; 9_000],
            vec![b"after" as &[u8]],
            vec![binary; 1_000],
            vec![],
            vec![&long[..30], b"x"],
        ] {
            let mut command = vec![echo];
            command.extend(&args);
            let echoed = args.iter().map(|a| Reply::Bulk(a.to_vec())).collect();
            assert_eq!(c.cmd_bytes(&command), Reply::Array(echoed));
        }
    }
}

#[test]
fn short_arguments_cross_packed_and_long_ones_as_separate_lists() {
    let server = Server::start();
    load(&server, guests::RAW_GUEST, &["fine"]);
    let mut c = server.client();
    let transport = |c: &mut redis_wasm_tests::Client, args: &[&[u8]]| {
        let mut command = vec![b"RAW.CMD" as &[u8], b"transport"];
        command.extend(args);
        let reply = c.cmd_bytes(&command);
        let items = reply.array();
        let lengths: Vec<usize> = args.iter().map(|a| a.len()).collect();
        let got: Vec<usize> = items[1..].iter().map(|i| i.int() as usize).collect();
        assert_eq!(got, lengths, "the lengths the guest saw");
        items[0].text()
    };
    assert_eq!(transport(&mut c, &[]), "words");
    assert_eq!(transport(&mut c, &[b"", b"a", b"\x00\xff\r\n"]), "words");
    // In words while they take up to 112 bytes packed ("transport" is 4 + 9 of them).
    assert_eq!(transport(&mut c, &[&[b'w'; 112 - 13 - 4]]), "words");
    assert_eq!(transport(&mut c, &[&[b'w'; 112 - 13 - 4 + 1]]), "packed");
    assert_eq!(
        transport(&mut c, &[b"a", b"b", &[b'w'; 112 - 13 - 3 * 4 - 2]]),
        "words"
    );
    // Packed while they average up to 1 KiB with their 4-byte lengths ("transport" is 4 + 9
    // bytes of them).
    let at_limit = vec![b'x'; 2 * 1024 - 13 - 4];
    assert_eq!(transport(&mut c, &[&at_limit]), "packed");
    let over = vec![b'x'; 2 * 1024 - 13 - 4 + 1];
    assert_eq!(transport(&mut c, &[&over]), "lists");
    let mut averaged = vec![b"x" as &[u8]; 20];
    averaged.push(&[b'y'; 10_000]);
    assert_eq!(transport(&mut c, &averaged), "packed");
    // And up to 1 MiB in all.
    let kilobyte = [b'z'; 1000];
    let most = vec![&kilobyte[..]; (1024 * 1024 - 13) / 1004];
    assert_eq!(transport(&mut c, &most), "packed");
    let more = vec![&kilobyte[..]; (1024 * 1024 - 13) / 1004 + 1];
    assert_eq!(transport(&mut c, &more), "lists");
    // And back: the buffer kept for the next call starts empty.
    assert_eq!(transport(&mut c, &[&[b'x'; 100]]), "packed");
}

#[test]
fn key_positions_reach_command_getkeys_and_acl() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let keys = c.cmd(&[
        "COMMAND",
        "GETKEYS",
        "BASICS.KEYS",
        "k1",
        "v1",
        "k2",
        "v2",
        "k3",
    ]);
    assert_eq!(
        keys.array().iter().map(Reply::text).collect::<Vec<_>>(),
        ["k1", "k2", "k3"]
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "basics.write", "mykey"])
            .array()[0]
            .text(),
        "mykey"
    );
    // A command without keys gets Redis's answer for one (as `COMMAND GETKEYS PING`).
    for getkeys in ["GETKEYS", "GETKEYSANDFLAGS"] {
        assert_eq!(
            c.cmd(&["COMMAND", getkeys, "BASICS.ECHO", "x"]).error(),
            "ERR The command has no key arguments"
        );
        // So it does named after its dispatcher, as cluster clients send it.
        assert_eq!(
            c.cmd(&[
                "COMMAND",
                getkeys,
                "wasm.invoke-readonly",
                "BASICS.ECHO",
                "x"
            ])
            .error(),
            "ERR The command has no key arguments"
        );
    }
    assert_eq!(
        c.cmd(&[
            "COMMAND",
            "GETKEYS",
            "WASM.INVOKE-WRITE-DENYOOM",
            "basics.write",
            "mykey"
        ])
        .array()[0]
            .text(),
        "mykey"
    );
    // A user limited to keys a* can use a* keys only.
    assert_eq!(
        c.cmd(&["ACL", "SETUSER", "alice", "on", "nopass", "~a*", "+@all"]),
        Reply::Status("OK".into())
    );
    let mut alice = server.client();
    assert_eq!(
        alice.cmd(&["AUTH", "alice", "x"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        alice.cmd(&["BASICS.KEYS", "a1", "x", "a2"]),
        Reply::Status("OK".into())
    );
    let denied = alice.cmd(&["BASICS.KEYS", "a1", "x", "b2"]);
    assert!(denied.error().starts_with("NOPERM"), "{denied:?}");
    // ACL DRYRUN answers for guest commands as it does for Redis's own.
    assert_eq!(
        c.cmd(&["ACL", "DRYRUN", "alice", "basics.keys", "a1", "x"]),
        Reply::Status("OK".into())
    );
    let dry = c.cmd(&["ACL", "DRYRUN", "alice", "BASICS.KEYS", "a1", "x", "b2"]);
    assert!(dry.text().contains("'b2' key"), "{dry:?}");
    // Permissions for guest commands are granted per dispatcher: this user may run read-only guest
    // commands but not write ones.
    c.cmd(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        "nopass",
        "~*",
        "+@read",
        "+wasm.invoke-readonly",
    ]);
    let mut reader = server.client();
    reader.cmd(&["AUTH", "reader", "x"]);
    assert_eq!(reader.cmd(&["BASICS.ECHO", "hi"]).array().len(), 1);
    assert!(
        reader
            .cmd(&["BASICS.WRITE", "k"])
            .error()
            .starts_with("NOPERM")
    );
}

#[test]
fn declared_flags_are_enforced() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    load(&server, guests::API_GUEST, &[]);
    let mut c = server.client();
    // deny-script: not from Lua, not from another guest (guests call in script mode).
    let lua = c.cmd(&["EVAL", "return redis.pcall('basics.noscript')", "0"]);
    assert_eq!(
        lua.error(),
        "ERR This Redis command is not allowed from script"
    );
    // From a guest it is a call refusal, as for a Redis command scripts may not run.
    let from_guest = c.cmd(&["API.CALL", "2", "BASICS.NOSCRIPT"]);
    assert_eq!(
        from_guest.error(),
        "CALLERR not-allowed: ERR command 'basics.noscript' cannot be called from a guest: it is flagged deny-script"
    );
    assert_eq!(c.cmd(&["BASICS.NOSCRIPT"]), Reply::Status("OK".into()));
    // Like FUNCTION LIST and DUMP, WASM.LIST and WASM.DUMP (every guest's load arguments and
    // code) are not for scripts or guests.
    for command in ["wasm.list", "wasm.dump"] {
        let lua = c.cmd(&["EVAL", &format!("return redis.pcall('{command}')"), "0"]);
        assert_eq!(
            lua.error(),
            "ERR This Redis command is not allowed from script"
        );
        let from_guest = c.cmd(&["API.CALL", "2", command]);
        assert!(
            from_guest.error().starts_with("CALLERR not-allowed"),
            "{from_guest:?}"
        );
    }
    // Other guest commands are fine from a guest.
    assert!(
        !format!("{:?}", c.cmd(&["API.CALL", "2", "BASICS.ECHO", "x"])).contains("not allowed")
    );
    // A read-only Lua script cannot run a write guest command.
    let ro = c.cmd(&[
        "EVAL_RO",
        "return redis.pcall('basics.write', KEYS[1])",
        "1",
        "k",
    ]);
    assert!(
        ro.error()
            .contains("Write commands are not allowed from read-only scripts"),
        "{ro:?}"
    );
    // Calling a dispatcher by hand with a command of another access class is refused, unless
    // that dispatcher's checks are stricter.
    let wrong = c.cmd(&["WASM.INVOKE-READONLY", "basics.write", "k"]);
    assert_eq!(
        wrong.error(),
        "ERR guest command 'basics.write' runs through 'wasm.invoke-write-denyoom', not 'wasm.invoke-readonly' (its flags changed since it was queued, or the dispatcher was called by hand)"
    );
    let no_oom_check = c.cmd(&["WASM.INVOKE-WRITE", "basics.write", "k"]);
    assert!(
        no_oom_check.error().contains("runs through"),
        "{no_oom_check:?}"
    );
    assert_eq!(
        c.cmd(&["WASM.INVOKE-WRITE-DENYOOM", "basics.echo", "a"])
            .array()
            .len(),
        1
    );
    // On a read-only replica, write guest commands are refused; read-only ones run.
    assert_eq!(
        c.cmd(&["REPLICAOF", "127.0.0.1", "1"]),
        Reply::Status("OK".into())
    );
    assert!(
        c.cmd(&["BASICS.WRITE", "k"])
            .error()
            .starts_with("READONLY")
    );
    assert_eq!(c.cmd(&["BASICS.ECHO", "r"]).array().len(), 1);
    // deny-oom: with maxmemory exhausted the write command is refused before the guest runs.
    c.cmd(&["REPLICAOF", "NO", "ONE"]);
    c.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    assert!(c.cmd(&["BASICS.WRITE", "k"]).error().starts_with("OOM"));
    assert_eq!(c.cmd(&["BASICS.ECHO", "still"]).array().len(), 1);
}

#[test]
fn printing_goes_to_the_redis_log() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    assert_eq!(
        server.client().cmd(&["BASICS.PRINT", "hi"]),
        Reply::Status("OK".into())
    );
    let log = server.log();
    for line in [
        "<wasm:basics> stdout says hi",
        "<wasm:basics> stderr says hi",
        "<wasm:basics> log says hi",
    ] {
        assert!(log.contains(line), "missing {line:?} in log:\n{log}");
    }
    // A long line is logged whole, in pieces Redis does not cut (it keeps 1024 bytes of a
    // message); control bytes are escaped, so a guest cannot forge lines or send terminal codes.
    let long = format!("{}END", "x".repeat(3000));
    server.client().cmd(&["BASICS.PRINT", &long]);
    server.client().cmd(&["BASICS.PRINT", "a\rFAKE\x1b[31m"]);
    let log = server.log();
    let stdout_x: usize = log
        .lines()
        .filter(|l| {
            l.contains("<wasm:basics> ") && !l.contains("stderr") && !l.contains("log says")
        })
        .map(|l| l.matches('x').count())
        .sum();
    assert!(stdout_x >= 3000, "{stdout_x} of 3000 printed bytes logged");
    assert!(
        log.contains("xxxEND"),
        "the end of the long line is missing"
    );
    assert!(log.contains("stdout says a\\x0dFAKE\\x1b[31m"), "{log}");
    assert!(!log.contains('\x1b'));
}

#[test]
fn load_errors_name_the_cause_and_leave_nothing_behind() {
    let server = Server::start();
    let dir = &server.dir;
    let not_wasm = dir.join("text.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let truncated = dir.join("truncated.wasm");
    let bytes = std::fs::read(guests::HELLOWORLD).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let elf = dir.join("precompiled.cwasm");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0").unwrap();
    // A FIFO with no writer would block a plain open forever.
    let fifo = dir.join("fifo.wasm");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut c = server.client();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            "/no/such/file.wasm".into(),
            vec![],
            "cannot read '/no/such/file.wasm': No such file or directory",
        ),
        // `WASM.LOAD ARGS a`: the module was forgotten.
        ("ARGS".into(), vec!["a".into()], "comes before ARGS"),
        // Endless: read no further than wasm.max-module-size allows.
        (
            "/dev/zero".into(),
            vec![],
            "cannot read '/dev/zero': not a regular file",
        ),
        (path(&fifo), vec![], "not a regular file"),
        (
            path(&not_wasm),
            vec![],
            "not a WebAssembly binary (bad magic number)",
        ),
        (
            path(&core),
            vec![],
            "this is a core WebAssembly module, not a component",
        ),
        (path(&truncated), vec![], "invalid component"),
        (
            path(&elf),
            vec![],
            "precompiled artifacts (ELF, .cwasm) are refused",
        ),
        (
            guests::RAW_GUEST.into(),
            vec!["api-version-2".into()],
            "guest 'raw' asks for module API version 2, but this host implements version 1",
        ),
        (
            guests::RAW_GUEST.into(),
            vec!["no-init-module".into()],
            "init did not call init-module",
        ),
        (
            guests::RAW_GUEST.into(),
            vec!["init-error".into()],
            "init failed: ERR the guest refuses to start",
        ),
        (
            guests::RAW_GUEST.into(),
            vec!["init-panic".into()],
            "init trapped: unreachable instruction executed (an abort or panic)",
        ),
        (
            guests::RAW_GUEST.into(),
            vec!["create-before-init".into()],
            "call init-module before create-command",
        ),
        (
            guests::FUTURE_WORLD.into(),
            vec![],
            "the guest was built for redis:module@0.4.0, but this host implements redis:module@0.3.5",
        ),
        (
            guests::CONFIGURABLE.into(),
            vec![
                "cfg.a".into(),
                "readonly".into(),
                "cfg.b".into(),
                "admin".into(),
            ],
            "command 'cfg.b': flag 'admin' is not supported",
        ),
        (
            guests::CONFIGURABLE.into(),
            vec![
                "cfg.a".into(),
                "readonly".into(),
                "get".into(),
                "readonly".into(),
            ],
            "cannot load guest 'configurable': command 'get' collides with a Redis command",
        ),
        (
            guests::CONFIGURABLE.into(),
            vec!["wasm.load".into(), "write".into()],
            "command 'wasm.load' collides with a Redis command",
        ),
        // Names of commands whose keys come after a count (the check once crashed on them).
        (
            guests::CONFIGURABLE.into(),
            vec!["zunion".into(), "readonly".into()],
            "command 'zunion' collides with a Redis command",
        ),
        (
            guests::CONFIGURABLE.into(),
            vec!["eval".into(), "write".into()],
            "command 'eval' collides with a Redis command",
        ),
        (
            guests::CONFIGURABLE.into(),
            vec!["cfg.x".into(), "write readonly".into()],
            "cannot be both 'write' and 'readonly'",
        ),
    ];
    for (module, args, expected) in cases {
        let mut command = vec!["WASM.LOAD".to_owned(), module.clone()];
        if !args.is_empty() {
            command.push("ARGS".into());
            command.extend(args.iter().cloned());
        }
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        let reply = c.cmd(&command);
        assert!(
            reply.error().contains(expected),
            "loading {module} {args:?}: expected {expected:?}, got {reply:?}"
        );
        assert_eq!(
            c.cmd(&["WASM.LIST"]),
            Reply::Array(vec![]),
            "a failed load left a guest behind"
        );
    }
    // Every load argument is saved in the RDB and WASM.DUMP, whose readers take at most 2^20.
    let mut many = vec!["WASM.LOAD", guests::HELLOWORLD, "ARGS"];
    many.extend(std::iter::repeat_n("x", (1 << 20) + 1));
    let refused = c.cmd(&many);
    assert!(
        refused
            .error()
            .contains("1048577 load arguments given, more than the 1048576"),
        "{refused:?}"
    );
    // A path that is not a regular file is refused before it is opened (opening a device can
    // do something of its own): a writer waiting on the FIFO is not let through.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).is_ok())
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        load(&server, &path(&fifo), &[])
            .error()
            .contains("not a regular file")
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!writer.is_finished(), "the server opened the FIFO");
    drop(std::fs::File::open(&fifo).unwrap());
    assert!(writer.join().unwrap());
    // Nothing of a failed guest stays registered.
    assert!(c.cmd(&["CFG.A"]).error().starts_with("ERR unknown command"));
    assert_eq!(c.cmd(&["GET", "x"]), Reply::Nil);
    // Bytes that are not a component (redis-cli -x sending the wrong file) are told what they
    // are, in either place, not read as a path; their control bytes are escaped in messages.
    for (bytes, expected) in [
        (
            &b"\x7fELF\x02\x01\x01\0rest"[..],
            "precompiled artifacts (ELF, .cwasm) are refused",
        ),
        (b"hello\n", "not a WebAssembly binary (bad magic number)"),
        (
            b"\xff\xfe\x01binary",
            "not a WebAssembly binary (bad magic number)",
        ),
    ] {
        for line in [
            vec![&b"WASM.LOAD"[..], bytes],
            vec![b"WASM.LOAD", b"ARGS", b"a", b"b", bytes],
        ] {
            let reply = c.cmd_bytes(&line);
            let error = reply.error();
            assert!(
                error.starts_with(&format!(
                    "ERR cannot load a module of {} bytes: ",
                    bytes.len()
                )) && error.contains(expected),
                "{line:?}: {reply:?}"
            );
        }
    }
    let shown = c.cmd_bytes(&[b"WASM.LOAD", b"/no/such\x01file"]);
    assert!(
        shown.error().contains("a module of 13 bytes"),
        "a control byte makes bytes, not a path: {shown:?}"
    );
    let unexpected = c.cmd_bytes(&[b"WASM.LOAD", guests::HELLOWORLD.as_bytes(), b"x\x01y"]);
    assert!(
        unexpected
            .error()
            .contains("unexpected argument 'x\\u{1}y'"),
        "{unexpected:?}"
    );
    // The module forgotten before ARGS.
    assert_eq!(
        c.cmd(&["WASM.LOAD", "ARGS", "a", "b"]).error(),
        "ERR missing the module: it (a path or its bytes) comes before ARGS; with redis-cli -x \
         its bytes come last (a module's bytes start with \\0asm)"
    );
    // Bad syntax.
    assert!(c.cmd(&["WASM.LOAD"]).error().contains("missing the module"));
    assert!(
        c.cmd(&["WASM.LOAD", guests::HELLOWORLD, "BOGUS"])
            .error()
            .contains("unexpected argument 'BOGUS'")
    );
    assert_alive(&server);
}

#[test]
fn a_guest_built_for_an_older_patch_of_the_world_runs() {
    // Built for redis:module@0.3.0, against a host of a later 0.3 patch: the host's interfaces
    // satisfy the older imports (wasmtime matches 0.3.x versions), and it runs.
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(load(&server, guests::OLDER_PATCH, &[]).text(), "oldpatch");
    c.cmd(&["RPUSH", "l", "a", "b", "c"]);
    assert_eq!(c.cmd(&["OLDPATCH.LEN", "l"]), Reply::Int(3));
    assert_eq!(c.cmd(&["OLDPATCH.LEN", "missing"]), Reply::Int(0));
    // 0.3.0 had no packed arguments: it gets a list each.
    let listed = c.cmd(&["WASM.LIST", "oldpatch"]);
    assert_eq!(listed.array()[0].field("world").text(), "module");
}

#[test]
fn duplicate_guest_and_command_names_are_refused() {
    let server = Server::start();
    let mut c = server.client();
    load(&server, guests::HELLOWORLD, &[]);
    let again = load(&server, guests::HELLOWORLD, &[]);
    assert_eq!(
        again.error(),
        "ERR cannot load guest 'helloworld': guest 'helloworld' is already loaded (use REPLACE to upgrade it)"
    );
    let clash = load(
        &server,
        guests::CONFIGURABLE,
        &["cfg.mine", "readonly", "HELLOWORLD.RAND", "readonly"],
    );
    assert_eq!(
        clash.error(),
        "ERR cannot load guest 'configurable': command 'helloworld.rand' is already registered by guest 'helloworld'"
    );
    assert!(
        c.cmd(&["CFG.MINE"])
            .error()
            .starts_with("ERR unknown command")
    );
    let dup = load(
        &server,
        guests::CONFIGURABLE,
        &["cfg.one", "readonly", "CFG.ONE", "readonly"],
    );
    assert!(
        dup.error()
            .contains("command 'cfg.one' is registered twice"),
        "{dup:?}"
    );
    // The original guest is untouched.
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
    assert_eq!(c.cmd(&["WASM.LIST"]).array().len(), 1);
}

#[test]
fn commands_registered_in_init_take_either_form() {
    let server = Server::start();
    let mut c = server.client();
    load(
        &server,
        guests::CONFIGURABLE,
        &["cfg.owned", "readonly", "cfg.it.borrowed", "readonly"],
    );
    assert_eq!(
        c.cmd(&["CFG.OWNED", "x"]),
        Reply::Bulk(b"cfg.owned".to_vec())
    );
    let bulks = |items: &[&str]| {
        Reply::Array(
            items
                .iter()
                .map(|i| Reply::Bulk(i.as_bytes().to_vec()))
                .collect(),
        )
    };
    assert_eq!(
        c.cmd(&["CFG.IT.BORROWED", "x", "y"]),
        bulks(&["cfg.it.borrowed", "x", "y"])
    );
    assert_eq!(
        c.cmd(&["CFG.IT.BORROWED", "z"]),
        bulks(&["cfg.it.borrowed", "z"])
    );
}

#[test]
fn module_bytes_can_be_sent_inline() {
    let server = Server::start();
    let bytes = std::fs::read(guests::HELLOWORLD).unwrap();
    let mut c = server.client();
    assert_eq!(
        c.cmd_bytes(&[b"WASM.LOAD", &bytes]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
    assert_eq!(
        c.cmd(&["WASM.LIST"]).array()[0].field("source").text(),
        "bytes"
    );
    // With arguments and the bytes last, as `redis-cli -x WASM.LOAD REPLACE ARGS ...` sends them.
    let basics = std::fs::read(guests::BASICS).unwrap();
    for _ in 0..2 {
        assert_eq!(
            c.cmd_bytes(&[b"WASM.LOAD", b"REPLACE", b"ARGS", b"a", b"b c", &basics]),
            Reply::Bulk(b"basics".to_vec())
        );
    }
    assert_eq!(
        c.cmd(&["BASICS.LOADARGS"]),
        Reply::Array(vec![
            Reply::Bulk(b"a".to_vec()),
            Reply::Bulk(b"b c".to_vec())
        ])
    );
}

#[test]
fn reply_functions_outside_a_command_fail_the_load() {
    let server = Server::start();
    let reply = load(&server, guests::RAW_GUEST, &["reply-in-init"]);
    assert!(
        reply
            .error()
            .ends_with("init failed: reply functions can only be called while a command runs"),
        "{reply:?}"
    );
    assert_eq!(
        load(&server, guests::RAW_GUEST, &["fine"]),
        Reply::Bulk(b"raw".to_vec())
    );
    let mut client = server.client();
    assert_eq!(client.cmd(&["RAW.CMD"]), Reply::Status("OK".into()));
    // `invoke` may return an integer reply instead of sending it; it still counts as the reply.
    assert_eq!(client.cmd(&["RAW.CMD", "returned"]), Reply::Int(7));
    let twice = client.cmd(&["RAW.CMD", "both"]);
    assert_eq!(
        twice.error(),
        "ERR guest 'raw' command 'raw.cmd' sent a bad reply: the command replied more than once"
    );
    assert_eq!(client.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn help_lists_the_commands() {
    let server = Server::start();
    let help = server.client().cmd(&["WASM.HELP"]);
    let text: Vec<String> = help.array().iter().map(Reply::text).collect();
    for command in [
        "WASM.LOAD",
        "WASM.UNLOAD",
        "WASM.LIST",
        "WASM.DUMP",
        "WASM.RESTORE",
        "WASM.KILL",
        "WASM.SETVALUE",
        "WASM.DEBUG",
        "WASM.HELP",
    ] {
        assert!(
            text.iter().any(|l| l.starts_with(command)),
            "{command} missing from help"
        );
    }
    assert_eq!(
        server.client().cmd(&["WASM.HELP", "x"]).error(),
        "ERR wrong number of arguments for 'wasm.help' command"
    );
}

#[test]
fn each_guest_command_is_timed_when_asked() {
    let server = Server::start();
    load(&server, guests::BASICS, &[]);
    let mut c = server.client();
    let echo = |c: &mut redis_wasm_tests::Client| {
        let list = c.cmd(&["WASM.LIST", "basics"]);
        let commands = list.array()[0].field("commands").array().to_vec();
        let echo = commands
            .into_iter()
            .find(|command| command.field("name").text() == "basics.echo")
            .expect("basics.echo is listed");
        let per_call: f64 = echo.field("usec-per-call").text().parse().unwrap();
        (
            echo.field("calls").int(),
            echo.field("usec").int(),
            per_call,
        )
    };
    let info_line = |c: &mut redis_wasm_tests::Client| {
        c.cmd(&["INFO", "wasm_commandstats"])
            .text()
            .lines()
            .find_map(|line| line.strip_prefix("wasm_cmdstat_basics.echo:"))
            .expect("a commandstats line for basics.echo")
            .to_owned()
    };
    // As in Redis's commandstats, a command appears once called.
    let stats = c.cmd(&["INFO", "wasm_commandstats"]).text();
    assert!(!stats.contains("wasm_cmdstat_basics.echo:"), "{stats}");
    // Off by default: counted, not timed.
    for _ in 0..2 {
        c.cmd(&["BASICS.ECHO", "x"]);
    }
    assert_eq!(echo(&mut c), (2, 0, 0.0));
    assert_eq!(
        info_line(&mut c),
        "calls=2,usec=0,usec_per_call=0.00,errors=0"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "wasm.time-commands", "1"]),
        Reply::Status("OK".into())
    );
    for _ in 0..3 {
        c.cmd(&["BASICS.ECHO", "x"]);
    }
    let (calls, usec, per_call) = echo(&mut c);
    assert_eq!(calls, 5);
    // Only the three timed calls count towards the time per call.
    assert!(per_call > 0.0 && per_call < 100_000.0, "{per_call}");
    assert!(usec as f64 <= per_call * 3.0 + 1.0, "{usec} {per_call}");
    let line = info_line(&mut c);
    assert!(line.starts_with("calls=5,usec="), "{line}");
    assert!(line.ends_with(",errors=0"), "{line}");
    assert!(
        c.cmd(&["CONFIG", "SET", "wasm.time-commands", "2"])
            .error()
            .contains("argument must be between 0 and 1")
    );
}

#[test]
fn perf_map_names_the_guests_functions_when_asked() {
    // Off by default: a server started plainly writes no map.
    let plain = Server::with_module_args(&["LOAD", guests::HELLOWORLD]);
    let plain_map = format!("/tmp/perf-{}.map", plain.pid());
    assert!(
        !std::path::Path::new(&plain_map).exists(),
        "{plain_map} written without wasm.perf-map"
    );
    let server = Server::start_with(ServerOptions {
        config: vec![("wasm.perf-map".into(), "1".into())],
        ..Default::default()
    });
    let map = format!("/tmp/perf-{}.map", server.pid());
    assert_eq!(
        load(&server, guests::HELLOWORLD, &[]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    let text = std::fs::read_to_string(&map);
    let _ = std::fs::remove_file(&map);
    let text = text.unwrap_or_else(|e| panic!("{map}: {e}"));
    // perf's format: start address, size (both hex), name; the guest's command function among
    // the names, by its (mangled) Rust path.
    let command_function = text
        .lines()
        .find(|line| line.contains("helloworld_rand"))
        .unwrap_or_else(|| panic!("no helloworld_rand in {map}:\n{text}"));
    let fields: Vec<&str> = command_function.splitn(3, ' ').collect();
    assert!(
        fields[0].starts_with("0x") && u64::from_str_radix(&fields[0][2..], 16).is_ok(),
        "{command_function}"
    );
    assert!(
        u64::from_str_radix(fields[1], 16).is_ok_and(|size| size > 0),
        "{command_function}"
    );
    let mut c = server.client();
    assert!(c.cmd(&["HELLOWORLD.RAND"]).int() >= 0);
    assert!(
        c.cmd(&["CONFIG", "SET", "wasm.perf-map", "0"])
            .error()
            .contains("immutable"),
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "wasm.perf-map"]),
        Reply::Array(vec![
            Reply::Bulk(b"wasm.perf-map".to_vec()),
            Reply::Bulk(b"1".to_vec())
        ])
    );
}

#[test]
fn host_commands_that_change_guests_need_the_permissions_of_their_categories() {
    // Redis 7.0 gives module commands no ACL categories: the host stands in for them with the
    // FUNCTION subcommand of the same categories, so `-@scripting` denies WASM.LOAD too.
    let server = Server::with_module_args(&["LOAD", guests::HELLOWORLD]);
    let mut admin = server.client();
    let mut as_user = |rules: &[&str]| {
        let mut setuser = vec!["ACL", "SETUSER", "u", "reset", "on", "nopass", "~*"];
        setuser.extend_from_slice(rules);
        admin.cmd(&setuser);
        let mut c = server.client();
        c.cmd(&["AUTH", "u", "x"]);
        c
    };
    let mut no_scripting = as_user(&["+@all", "-@scripting"]);
    let dump = server.client().cmd(&["WASM.DUMP"]);
    let Reply::Bulk(payload) = dump else {
        panic!("{dump:?}")
    };
    for (command, refused) in [
        (
            no_scripting.cmd(&["WASM.LOAD", guests::HELLOWORLD, "REPLACE"]),
            "'wasm.load'",
        ),
        (
            no_scripting.cmd(&["WASM.UNLOAD", "helloworld"]),
            "'wasm.unload'",
        ),
        (
            no_scripting.cmd_bytes(&[b"WASM.RESTORE", b"REPLACE", &payload]),
            "'wasm.restore'",
        ),
    ] {
        assert!(
            command.error().starts_with("NOPERM") && command.error().contains(refused),
            "{command:?}"
        );
    }
    // WASM.LIST and WASM.DUMP show every guest's load arguments: FUNCTION LIST's and DUMP's.
    for command in ["WASM.LIST", "WASM.DUMP"] {
        let refused = no_scripting.cmd(&[command]);
        assert!(
            refused.error().starts_with("NOPERM")
                && refused
                    .error()
                    .contains(&format!("'{}'", command.to_lowercase())),
            "{refused:?}"
        );
    }
    assert!(!no_scripting.cmd(&["HELLOWORLD.RAND"]).is_error());
    // Cluster clients that follow tips send WASM.KILL to every shard, as FUNCTION KILL.
    let info = format!(
        "{:?}",
        server.client().cmd(&["COMMAND", "INFO", "wasm.kill"])
    );
    assert!(
        info.contains("request_policy:all_shards")
            && info.contains("response_policy:one_succeeded"),
        "{info}"
    );
    let killed = no_scripting.cmd(&["WASM.KILL"]);
    assert!(killed.error().contains("'wasm.kill'"), "{killed:?}");
    let mut no_writes = as_user(&["+@all", "-@write"]);
    let set = no_writes.cmd(&["WASM.SETVALUE", "k", "sometype1", "0", "x"]);
    assert!(
        set.error().starts_with("NOPERM") && set.error().contains("'wasm.setvalue'"),
        "{set:?}"
    );
    // Through a script too, as the script's caller (Lua lets module commands through on 7.0).
    let script = "return redis.pcall('wasm.setvalue', KEYS[1], 'sometype1', '0', 'x')";
    let set = no_writes.cmd(&["EVAL", script, "1", "k"]);
    assert!(format!("{set:?}").contains("NOPERM"), "{set:?}");
    // It stores serialized bytes as they are, as RESTORE does: @dangerous.
    let mut not_dangerous = as_user(&["+@all", "-@dangerous"]);
    let set = not_dangerous.cmd(&["WASM.SETVALUE", "k", "sometype1", "0", "x"]);
    assert!(
        set.error().starts_with("NOPERM") && set.error().contains("'restore'"),
        "{set:?}"
    );
    // Granted by name, with the FUNCTION subcommand it needs.
    let mut granted = as_user(&[
        "-@all",
        "+wasm.load",
        "+function|load",
        "+wasm.unload",
        "+function|delete",
    ]);
    let bytes = std::fs::read(guests::HELLOWORLD).unwrap();
    assert_eq!(
        granted.cmd_bytes(&[b"WASM.LOAD", &bytes, b"REPLACE"]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    assert_eq!(
        granted.cmd(&["WASM.UNLOAD", "helloworld"]),
        Reply::Status("OK".into())
    );
    // A path reads a file on the server, as MODULE LOAD does: that needs its permissions too
    // (whatever Redis's version), unless wasm.load-dir confines paths to a directory.
    for path in [guests::HELLOWORLD, "/etc/passwd", "/no/such/file"] {
        let refused = granted.cmd(&["WASM.LOAD", path]);
        assert!(
            refused.error().starts_with(
                "NOPERM this user has no permissions to load a guest by path: reading a file \
                 on the server needs the permissions of 'module load' too"
            ),
            "{refused:?}"
        );
    }
    let mut with_module_load = as_user(&["-@all", "+wasm.load", "+function|load", "+module|load"]);
    assert_eq!(
        with_module_load.cmd(&["WASM.LOAD", guests::HELLOWORLD]),
        Reply::Bulk(b"helloworld".to_vec())
    );
    server.client().cmd(&["WASM.UNLOAD", "helloworld"]);
    let dir = std::path::Path::new(guests::HELLOWORLD).parent().unwrap();
    server
        .client()
        .cmd(&["CONFIG", "SET", "wasm.load-dir", dir.to_str().unwrap()]);
    // (The same user name: its rules are those of `granted` again.)
    let mut in_load_dir = as_user(&["-@all", "+wasm.load", "+function|load"]);
    assert_eq!(
        in_load_dir.cmd(&["WASM.LOAD", guests::HELLOWORLD]),
        Reply::Bulk(b"helloworld".to_vec())
    );
}
