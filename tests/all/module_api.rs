//! The module API as guests see it: strings, calls and call replies, replies, low-level keys and
//! their safety rules, replication of effects, context.

use redis_wasm_tests::{Client, ReplicationTap, Reply, Server, guests};

fn api_server() -> Server {
    Server::with_module_args(&["LOAD", guests::API_GUEST, "LOAD", guests::BASICS])
}

/// A client authenticated as a new ACL user `name` with `rules` (on, no password).
fn client_as(server: &Server, name: &str, rules: &[&str]) -> Client {
    let mut setuser = vec!["ACL", "SETUSER", name, "on", "nopass"];
    setuser.extend_from_slice(rules);
    assert_eq!(server.client().cmd(&setuser), Reply::Status("OK".into()));
    let mut client = server.client();
    assert_eq!(client.cmd(&["AUTH", name, "x"]), Reply::Status("OK".into()));
    client
}

fn texts(reply: &Reply) -> Vec<String> {
    reply.array().iter().map(Reply::text).collect()
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

#[test]
fn numbers_parse_exactly_as_redis_parses_them() {
    let server = api_server();
    let mut c = server.client();
    let not_int = Reply::Error("ERR value is not an integer or out of range".into());
    let not_float = Reply::Error("ERR value is not a valid float".into());
    let cases: Vec<(&str, Reply, Reply)> = vec![
        ("123", Reply::Int(123), bulk("123")),
        (
            "-9223372036854775808",
            Reply::Int(i64::MIN),
            bulk("-9.2233720368547758e+18"),
        ),
        (
            "9223372036854775808",
            not_int.clone(),
            bulk("9.2233720368547758e+18"),
        ),
        ("01", not_int.clone(), bulk("1")),
        ("-0", not_int.clone(), bulk("-0")),
        ("+1", not_int.clone(), bulk("1")),
        (" 1", not_int.clone(), not_float.clone()),
        ("1e3", not_int.clone(), bulk("1000")),
        ("0x10", not_int.clone(), bulk("16")),
        ("inf", not_int.clone(), bulk("inf")),
        ("nan", not_int.clone(), not_float.clone()),
        ("", not_int.clone(), not_float.clone()),
    ];
    for (input, integer, double) in cases {
        let reply = c.cmd(&["API.PARSE", input]);
        let parts = reply.array();
        assert_eq!(parts[0], integer, "SDK integer parse of {input:?}");
        assert_eq!(parts[1], integer, "host integer parse of {input:?}");
        assert_eq!(parts[2], double, "double parse of {input:?}");
    }
}

#[test]
fn calls_return_every_reply_type() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["SADD", "s", "m"]);
    c.cmd(&["ZADD", "z", "1.5", "a"]);
    c.cmd(&["SET", "str", "x"]);
    let call = |c: &mut redis_wasm_tests::Client, args: &[&str]| {
        let mut command = vec!["API.CALL"];
        command.extend_from_slice(args);
        c.cmd(&command)
    };
    assert_eq!(
        call(&mut c, &["2", "PING"]),
        Reply::Array(vec![bulk("string"), bulk("PONG")])
    );
    assert_eq!(
        call(&mut c, &["2", "GET", "nokey"]),
        Reply::Array(vec![bulk("null")])
    );
    assert_eq!(
        call(&mut c, &["2", "STRLEN", "str"]),
        Reply::Array(vec![bulk("integer"), Reply::Int(1)])
    );
    assert_eq!(
        call(&mut c, &["2", "ZSCORE", "z", "a"]),
        Reply::Array(vec![bulk("string"), bulk("1.5")])
    );
    assert_eq!(
        call(&mut c, &["3", "ZSCORE", "z", "a"]),
        Reply::Array(vec![bulk("double"), bulk("1.5")])
    );
    let map = call(&mut c, &["3", "HGETALL", "h"]);
    assert_eq!(
        map,
        Reply::Array(vec![
            bulk("map"),
            Reply::Array(vec![
                Reply::Array(vec![bulk("string"), bulk("f")]),
                Reply::Array(vec![bulk("string"), bulk("v")]),
            ])
        ])
    );
    assert_eq!(
        call(&mut c, &["3", "SMEMBERS", "s"]).array()[0],
        bulk("set")
    );
    assert_eq!(
        call(&mut c, &["2", "SMEMBERS", "s"]).array()[0],
        bulk("array")
    );
    let info = call(&mut c, &["3", "INFO", "server"]);
    assert_eq!(info.array()[0..2], [bulk("verbatimstring"), bulk("txt")]);
    // Errors returned by the command itself are replies of type error.
    let wrongtype = call(&mut c, &["2", "LLEN", "str"]);
    assert_eq!(
        wrongtype,
        Reply::Array(vec![
            bulk("error"),
            bulk("WRONGTYPE Operation against a key holding the wrong kind of value")
        ])
    );
    // Calling another guest's command returns its RESP3 types, bools and big numbers included.
    let types = call(&mut c, &["3", "BASICS.TYPES"]);
    let kinds: Vec<String> = types.array()[1]
        .array()
        .iter()
        .map(|e| e.array()[0].text())
        .collect();
    assert_eq!(
        kinds,
        [
            "map",
            "set",
            "double",
            "bool",
            "bool",
            "bignumber",
            "verbatimstring",
            "null",
            "null",
            "error"
        ]
    );
    assert_eq!(
        types.array()[1].array()[5].array()[1],
        bulk("-12345678901234567890123")
    );
    // Blocking commands cannot run in a guest (as in scripts): they are refused, never block.
    assert!(
        call(&mut c, &["2", "BLPOP", "nolist", "0"])
            .error()
            .starts_with("CALLERR not-allowed")
    );
}

#[test]
fn call_replies_convert_into_reply_values() {
    let server = api_server();
    let mut c = server.client();
    c.hello3();
    c.cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]);
    c.cmd(&["ZADD", "z", "1.5", "a", "2", "b"]);
    // Every RESP3 type, nested, comes back as the command itself answers.
    for command in [
        &["BASICS.TYPES"][..],
        &["HGETALL", "h"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["MGET", "h", "missing"],
        &["INFO", "keyspace"],
    ] {
        let direct = c.cmd(command);
        let mut convert = vec!["API.CONVERT", "3"];
        convert.extend_from_slice(command);
        let converted = c.cmd(&convert);
        assert_eq!(converted.array()[0], direct, "{command:?}");
        assert_eq!(converted.array()[1], Reply::Bool(false), "{command:?}");
    }
    // Status replies stay status replies, and say so; errors are error values.
    assert_eq!(
        c.cmd(&["API.CONVERT", "2", "PING"]),
        Reply::Array(vec![Reply::Status("PONG".into()), Reply::Bool(true)])
    );
    let error = c.cmd(&["API.CONVERT", "2", "GET", "h"]);
    assert!(
        error.array()[0].error().starts_with("WRONGTYPE"),
        "{error:?}"
    );
}

#[test]
fn call_reply_elements_are_read_in_batches() {
    let server = api_server();
    let mut c = server.client();
    let elements = |c: &mut redis_wasm_tests::Client, args: &[&str]| {
        let mut command = vec!["API.ELEMENTS"];
        command.extend_from_slice(args);
        c.cmd(&command)
    };
    let ints = |sizes: &[i64]| Reply::Array(sizes.iter().copied().map(Reply::Int).collect());
    let tagged = |tag: &str, text: &str| Reply::Array(vec![bulk(tag), bulk(text)]);
    c.cmd(&["SET", "a", "1"]);
    c.cmd(&["SET", "b", "2"]);
    // Bulk strings and nulls, over two batches; iter() gives the same elements.
    assert_eq!(
        elements(&mut c, &["2", "2", "MGET", "a", "missing", "b"]),
        Reply::Array(vec![
            ints(&[2, 1]),
            Reply::Array(vec![tagged("bulk", "1"), bulk("null"), tagged("bulk", "2")]),
            Reply::Array(vec![
                tagged("string", "1"),
                Reply::Array(vec![bulk("null")]),
                tagged("string", "2"),
            ]),
        ])
    );
    // Integers.
    c.cmd(&["SADD", "s", "m"]);
    assert_eq!(
        elements(&mut c, &["2", "10", "SMISMEMBER", "s", "m", "x"]).array()[1],
        ints(&[1, 0])
    );
    // A RESP3 map gives its keys and values alternately, a set its members.
    c.cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]);
    let map = elements(&mut c, &["3", "3", "HGETALL", "h"]);
    assert_eq!(map.array()[0], ints(&[3, 1]));
    let fields = ["f1", "v1", "f2", "v2"];
    assert_eq!(
        map.array()[1],
        Reply::Array(fields.into_iter().map(|t| tagged("bulk", t)).collect())
    );
    assert_eq!(
        map.array()[2],
        Reply::Array(fields.into_iter().map(|t| tagged("string", t)).collect())
    );
    assert_eq!(
        elements(&mut c, &["3", "10", "SMEMBERS", "s"]).array()[1],
        Reply::Array(vec![tagged("bulk", "m")])
    );
    // Aggregates and RESP3 types other than strings, integers, errors and nulls are `other`.
    assert_eq!(
        elements(&mut c, &["3", "100", "BASICS.TYPES"]).array()[1],
        Reply::Array(vec![
            bulk("other"),
            bulk("other"),
            bulk("other"),
            bulk("other"),
            bulk("other"),
            bulk("other"),
            bulk("other"),
            bulk("null"),
            bulk("null"),
            tagged("error", "ERR inner"),
        ])
    );
    assert_eq!(
        elements(&mut c, &["2", "10", "BASICS.NESTED", "2"]).array()[1],
        Reply::Array(vec![bulk("other")])
    );
    // Nothing for a reply that is not an aggregate, past the end, or for a batch size of 0.
    let nothing = |iterated: Reply| Reply::Array(vec![ints(&[]), Reply::Array(vec![]), iterated]);
    assert_eq!(
        elements(&mut c, &["2", "10", "GET", "a"]),
        nothing(Reply::Array(vec![]))
    );
    assert_eq!(
        elements(&mut c, &["2", "0", "MGET", "a"]),
        nothing(Reply::Array(vec![tagged("string", "1")]))
    );
    // A long string comes as a handle, not inline: the host gives it no elements either.
    c.cmd(&["SET", "long", &"y".repeat(10_000)]);
    assert_eq!(
        elements(&mut c, &["2", "10", "GET", "long"]),
        nothing(Reply::Array(vec![]))
    );
    // iter() goes on past its first batch of 128.
    let many: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut rpush = vec!["RPUSH", "many"];
    rpush.extend(many.iter().map(String::as_str));
    c.cmd(&rpush);
    let read = elements(&mut c, &["2", "1000", "LRANGE", "many", "0", "-1"]);
    assert_eq!(read.array()[0], ints(&[300]));
    assert_eq!(
        read.array()[2],
        Reply::Array(many.iter().map(|t| tagged("string", t)).collect())
    );
    // In a RESP3 map with aggregate values, iter() reads those values by their index.
    c.cmd(&["XADD", "stream", "1-1", "f", "v"]);
    let info = elements(&mut c, &["3", "100", "XINFO", "STREAM", "stream"]);
    let (batch, iterated) = (info.array()[1].array(), info.array()[2].array());
    let at = batch
        .iter()
        .position(|e| *e == tagged("bulk", "first-entry"))
        .expect("XINFO STREAM has first-entry");
    assert_eq!(batch[at + 1], bulk("other"));
    assert_eq!(iterated[at], tagged("string", "first-entry"));
    assert_eq!(iterated[at + 1].array()[0], bulk("array"));
    assert_eq!(iterated.len(), batch.len());
    // A batch stops after 1 MiB.
    let big = "x".repeat(600 * 1024);
    c.cmd(&["RPUSH", "big", &big, &big, &big]);
    let batches = elements(&mut c, &["2", "100", "LRANGE", "big", "0", "-1"]);
    assert_eq!(batches.array()[0], ints(&[2, 1]));
    assert_eq!(batches.array()[1].array()[2], tagged("bulk", &big));
    assert_eq!(batches.array()[2].array()[2], tagged("string", &big));
}

#[test]
fn call_and_replicate_pass_any_number_of_binary_arguments_exactly() {
    // Up to six arguments go to Redis as pointer-and-length pairs, more as an array of strings:
    // both must carry every byte, to the command called and to a replica.
    let server = api_server();
    let replica = api_server();
    replica.replicate_from(&server);
    let mut c = server.client();
    let values: [&[u8]; 9] = [
        b"",
        b"\0",
        b"\xff\xfe",
        b"a\r\nb",
        b"plain",
        b"",
        b"\0\0x",
        b"last",
        b"9",
    ];
    let expected = |count: usize| {
        Reply::Array(
            values[..count]
                .iter()
                .map(|v| Reply::Bulk(v.to_vec()))
                .collect(),
        )
    };
    for count in 1..=values.len() {
        let (called, replicated) = (format!("called:{count}"), format!("replicated:{count}"));
        let mut line: Vec<&[u8]> = vec![b"API.WCALL", b"2", b"RPUSH", called.as_bytes()];
        line.extend(&values[..count]);
        assert_eq!(
            c.cmd_bytes(&line),
            Reply::Array(vec![bulk("integer"), Reply::Int(count as i64)]),
            "{count} values"
        );
        assert_eq!(c.cmd(&["LRANGE", &called, "0", "-1"]), expected(count));
        // Explicit replication: only the replica runs it.
        let mut line: Vec<&[u8]> = vec![b"API.REPLICATE", b"RPUSH", replicated.as_bytes()];
        line.extend(&values[..count]);
        assert_eq!(c.cmd_bytes(&line), Reply::Status("OK".into()));
    }
    assert_eq!(
        c.cmd(&["API.CALL", "2", "PING"]),
        Reply::Array(vec![bulk("string"), bulk("PONG")])
    );
    assert_eq!(c.cmd(&["WAIT", "1", "5000"]), Reply::Int(1));
    let mut r = replica.client();
    for count in 1..=values.len() {
        for key in [format!("called:{count}"), format!("replicated:{count}")] {
            assert_eq!(
                r.cmd(&["LRANGE", &key, "0", "-1"]),
                expected(count),
                "{key}"
            );
        }
    }
}

#[test]
fn commands_that_may_replicate_are_writes_to_commands_that_may_not_write() {
    let master = api_server();
    let replica = api_server();
    replica.replicate_from(&master);
    let mut c = master.client();
    c.cmd(&["PFADD", "hll", "a", "b", "c"]);
    let mut subscriber = replica.client();
    subscriber.send(&[b"SUBSCRIBE", b"ch"]);
    assert_eq!(subscriber.read().array()[0], bulk("subscribe"));
    // Read-only commands call with `W`, which Redis applies to `write` commands only: PFCOUNT
    // (which rewrites the key's cached count) and PUBLISH would run unreplicated.
    for (call, what) in [
        (&["API.CALL", "2", "PFCOUNT", "hll"][..], "pfcount"),
        (&["API.CALL", "2", "publish", "ch", "lost"], "publish"),
        (&["API.CALL", "2", "SPUBLISH", "ch", "lost"], "spublish"),
    ] {
        let reply = c.cmd(call);
        assert!(
            reply.error().starts_with("CALLERR write-not-allowed")
                && reply.error().contains(&format!(
                    "command '{what}', which may replicate like a write, called from a command \
                     not flagged 'write'"
                )),
            "{call:?}: {reply:?}"
        );
    }
    // Redis still judges the arity first.
    let arity = c.cmd(&["API.CALL", "2", "PUBLISH", "ch"]);
    assert!(
        arity.error().starts_with("CALLERR wrong-arity"),
        "{arity:?}"
    );
    // A command that may write runs them, replicated.
    assert_eq!(
        c.cmd(&["API.WCALL", "2", "PFCOUNT", "hll"]).array()[1],
        Reply::Int(3)
    );
    c.cmd(&["API.WCALL", "2", "PUBLISH", "ch", "delivered"]);
    assert_eq!(
        subscriber.read().array(),
        [bulk("message"), bulk("ch"), bulk("delivered")]
    );
    master.assert_same_dataset(&replica);
}

#[test]
fn calls_that_cannot_run_are_distinct_errors() {
    let server = api_server();
    let mut c = server.client();
    let cases: &[(&[&str], &str)] = &[
        (
            &["API.CALL", "2", "NOSUCHCOMMAND"],
            "CALLERR unknown-command",
        ),
        (&["API.CALL", "2", "GET"], "CALLERR wrong-arity"),
        (&["API.CALL", "2", "MULTI"], "CALLERR not-allowed"),
        (
            &["API.CALL", "2", "EVAL", "return 1", "0"],
            "CALLERR not-allowed",
        ),
        (&["API.CALL", "2", "FCALL", "f", "0"], "CALLERR not-allowed"),
        (
            &["API.CALL", "2", "CONFIG", "SET", "maxmemory", "1"],
            "CALLERR not-allowed",
        ),
        (&["API.CALL", "2", "SUBSCRIBE", "ch"], "CALLERR not-allowed"),
        (&["API.CALL", "2", "MONITOR"], "CALLERR not-allowed"),
        (&["API.CALL", "2", "SHUTDOWN"], "CALLERR not-allowed"),
        (&["API.CALL", "2", "WASM.LOAD", "/x"], "CALLERR not-allowed"),
        (
            &["API.CALL", "2", "SET", "k", "v"],
            "CALLERR write-not-allowed",
        ),
    ];
    for (command, expected) in cases {
        let reply = c.cmd(command);
        assert!(
            reply.error().starts_with(expected),
            "{command:?}: {reply:?}"
        );
    }
    // Messages name what Redis names to its clients: an unknown subcommand, a subcommand's
    // arity (RM_Call reports both as an unknown command or a wrong arity, naming neither).
    for (command, expected) in [
        (
            &["OBJECT", "NOSUCH"][..],
            "unknown-command: ERR unknown subcommand 'NOSUCH'. Try OBJECT HELP.",
        ),
        (
            &["nosuch", "a"],
            "unknown-command: ERR unknown command 'nosuch'",
        ),
        (
            &["object", "freq"],
            "wrong-arity: ERR wrong number of arguments for 'object|freq' command",
        ),
        (
            &["OBJECT"],
            "wrong-arity: ERR wrong number of arguments for 'object' command",
        ),
        (
            &["GET", "a", "b"],
            "wrong-arity: ERR wrong number of arguments for 'get' command",
        ),
    ] {
        let mut call = vec!["API.CALL", "2"];
        call.extend_from_slice(command);
        assert_eq!(c.cmd(&call).error(), format!("CALLERR {expected}"));
        // The same words Redis gives a client, after the call error's kind.
        let direct = c.cmd(command);
        let kind_end = expected.find(": ").expect("kind: message") + 2;
        if command[0] != "nosuch" {
            assert_eq!(direct.error(), &expected[kind_end..]);
        }
    }
    let config = c.cmd(&["API.CALL", "2", "CONFIG", "GET", "maxmemory"]);
    assert!(
        config
            .error()
            .contains("'config' cannot be called from a guest: Redis refuses it in scripts"),
        "{config:?}"
    );
    assert_eq!(c.cmd(&["GET", "k"]), Reply::Nil);
    // A guest calling itself gets an error reply; the server is fine.
    let nested = c.cmd(&["API.CALL", "2", "API.CALL", "2", "PING"]);
    assert_eq!(nested.array()[0], bulk("error"));
    assert!(
        nested.array()[1]
            .text()
            .contains("guest 'api' is already running: command 'api.call' cannot re-enter it")
    );
    // Out of memory: writes through call are refused, reads still work.
    c.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    assert!(
        c.cmd(&["API.WCALL", "2", "SET", "k", "v"])
            .error()
            .starts_with("CALLERR out-of-memory: OOM")
    );
    assert_eq!(
        c.cmd(&["API.WCALL", "2", "GET", "k"]).array()[0],
        bulk("null")
    );
    c.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    // Calls run as the calling user.
    let mut limited = client_as(&server, "limited", &["~*", "+@all", "-set"]);
    assert_eq!(
        limited.cmd(&["API.WCALL", "2", "SET", "k", "v"]).error(),
        "CALLERR no-permission: NOPERM this user has no permissions to run the 'set' command"
    );
    // A key the user may not touch is named as Redis names it.
    let mut keyed = client_as(&server, "keyed", &["~a*", "+@all"]);
    assert_eq!(
        keyed.cmd(&["API.WCALL", "2", "SET", "b", "v"]).error(),
        "CALLERR no-permission: NOPERM this user has no permissions to access one of the keys \
         used as arguments"
    );
    assert_eq!(
        limited.cmd(&["API.WCALL", "2", "INCR", "n"]).array()[1],
        Reply::Int(1)
    );
    assert_eq!(c.cmd(&["GET", "k"]), Reply::Nil);
}

#[test]
fn keys_a_command_did_not_declare_are_checked_against_the_users_acl() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["SET", "a1", "x"]);
    c.cmd(&["SET", "b1", "x"]);
    let mut alice = client_as(&server, "alice", &["~a*", "%R~r*", "+@all"]);
    let allowed = || Reply::Array(vec![Reply::Int(1), bulk("opened")]);
    assert_eq!(alice.cmd(&["BASICS.PEEK", "a1"]), allowed());
    // Denied: the key does not exist for this user, and opening it names the cause.
    let denied = alice.cmd(&["BASICS.PEEK", "b1"]);
    assert_eq!(denied.array()[0], Reply::Int(0));
    let opened = denied.array()[1].text();
    assert!(
        opened.contains("NOPERM this user has no permissions to access the 'b1' key"),
        "{opened}"
    );
    assert!(alice.cmd(&["BASICS.POKE", "b1"]).text().contains("NOPERM"));
    assert_eq!(alice.cmd(&["BASICS.POKE", "a2"]), bulk("opened"));
    // The host's refusals are in ACL LOG, as Redis's own are (context "module").
    let log = c.cmd(&["ACL", "LOG", "1"]);
    let entry = &log.array()[0];
    assert_eq!(entry.field("reason").text(), "key");
    assert_eq!(entry.field("object").text(), "b1");
    assert_eq!(entry.field("username").text(), "alice");
    assert_eq!(entry.field("context").text(), "module");
    // Read-only key patterns allow reading, not writing.
    assert_eq!(alice.cmd(&["BASICS.PEEK", "r1"]).array()[1], bulk("opened"));
    assert!(alice.cmd(&["BASICS.POKE", "r1"]).text().contains("NOPERM"));
    // A guest command called by another guest is checked as the outer command's user.
    let nested = alice.cmd(&["API.CALL", "2", "BASICS.PEEK", "b1"]);
    assert!(format!("{nested:?}").contains("NOPERM"), "{nested:?}");
    let nested = alice.cmd(&["API.CALL", "2", "BASICS.PEEK", "a1"]);
    assert!(format!("{nested:?}").contains("opened"), "{nested:?}");
    // From a script, as the script's caller (the script's client has no connection to look
    // up): Lua and functions alike.
    let peek_from_lua = |user: &mut Client, key: &str| {
        user.cmd(&[
            "EVAL",
            "return redis.call('basics.peek', ARGV[1])",
            "0",
            key,
        ])
    };
    let denied = peek_from_lua(&mut alice, "b1");
    assert!(format!("{denied:?}").contains("NOPERM"), "{denied:?}");
    assert_eq!(peek_from_lua(&mut alice, "a1"), allowed());
    assert_eq!(peek_from_lua(&mut c, "b1"), allowed());
    let library = "#!lua name=peeklib\nredis.register_function('peek', function(keys, args) \
                   return redis.call('basics.peek', args[1]) end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", library]).text(), "peeklib");
    let denied = alice.cmd(&["FCALL", "peek", "0", "b1"]);
    assert!(format!("{denied:?}").contains("NOPERM"), "{denied:?}");
    assert_eq!(alice.cmd(&["FCALL", "peek", "0", "a1"]), allowed());
    // As for Redis's own commands, a selector's key patterns count only with its commands: one
    // that lets the user delete `s*` keys does not let a guest read or write them, one that
    // allows everything on `t*` does.
    c.cmd(&["SET", "s1", "x"]);
    c.cmd(&["SET", "t1", "x"]);
    let mut sel = client_as(
        &server,
        "sel",
        &["~a*", "+@all", "(+del ~s*)", "(+@all ~t*)"],
    );
    let denied = sel.cmd(&["BASICS.PEEK", "s1"]);
    assert_eq!(denied.array()[0], Reply::Int(0), "{denied:?}");
    assert!(denied.array()[1].text().contains("NOPERM"), "{denied:?}");
    assert!(sel.cmd(&["BASICS.POKE", "s1"]).text().contains("NOPERM"));
    assert_eq!(sel.cmd(&["BASICS.PEEK", "t1"]), allowed());
    assert_eq!(sel.cmd(&["BASICS.POKE", "t1"]), bulk("opened"));
    assert_eq!(sel.cmd(&["BASICS.PEEK", "a1"]), allowed());
    assert_eq!(sel.cmd(&["DEL", "s1"]), Reply::Int(1));
    // A grant of one guest command by its dispatcher's first argument (Redis 7.0's only
    // per-guest-command grant) covers the keys it opens.
    let mut one = client_as(&server, "one", &["~*", "+wasm.invoke-readonly|basics.peek"]);
    assert_eq!(one.cmd(&["BASICS.PEEK", "b1"]), allowed());
    assert!(
        one.cmd(&["BASICS.POKE", "b1"])
            .error()
            .starts_with("NOPERM")
    );
    // Other users are not limited.
    assert_eq!(c.cmd(&["BASICS.PEEK", "b1"]), allowed());
    assert_eq!(c.cmd(&["BASICS.POKE", "b1"]), bulk("opened"));
    // A command not flagged `write` is told why it cannot open a key for writing.
    assert!(
        c.cmd(&["BASICS.RPOKE", "b1"])
            .text()
            .contains("command 'basics.rpoke' is not flagged 'write'")
    );
}

#[test]
fn declared_keys_need_read_access_to_read_and_full_access_to_write() {
    let server = api_server();
    let mut c = server.client();
    let mut bob = client_as(&server, "bob", &["%R~r*", "%W~w*", "~a*", "+@all"]);
    let ok = || Reply::Status("OK".into());
    // A read-only command's declared keys need only read access, as for Redis's own GET.
    assert_eq!(bob.cmd(&["BASICS.KEYS", "r1", "x", "a1", "y"]), ok());
    assert!(
        bob.cmd(&["BASICS.KEYS", "w1", "x"])
            .error()
            .starts_with("NOPERM")
    );
    // A write command may read its keys too: it needs both permissions.
    assert_eq!(bob.cmd(&["BASICS.WRITE", "a1"]), ok());
    for key in ["r1", "w1"] {
        let refused = bob.cmd(&["BASICS.WRITE", key]);
        assert!(refused.error().starts_with("NOPERM"), "{key}: {refused:?}");
    }
    // COMMAND GETKEYSANDFLAGS reports the same.
    let key_flags = |c: &mut Client, line: &[&str]| {
        let mut command = vec!["COMMAND", "GETKEYSANDFLAGS"];
        command.extend_from_slice(line);
        let reply = c.cmd(&command);
        let key = &reply.array()[0].array();
        (
            key[0].text(),
            key[1].array().iter().map(Reply::text).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        key_flags(&mut c, &["BASICS.KEYS", "r1", "x"]),
        ("r1".to_owned(), vec!["RO".to_owned(), "access".to_owned()])
    );
    assert_eq!(
        key_flags(&mut c, &["BASICS.WRITE", "w1"]),
        (
            "w1".to_owned(),
            vec!["RW".to_owned(), "access".to_owned(), "update".to_owned()]
        )
    );
}

#[test]
fn a_guest_publishes_keyspace_events() {
    let server = api_server();
    let mut c = server.client();
    // Keyspace and keyevent channels, for generic, string and module events (not hash ones).
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEg$d"]);
    let mut sub = server.client();
    sub.cmd(&["PSUBSCRIBE", "__key*@0__:*"]);
    let ok = Reply::Status("OK".into());
    let mut next_message = || {
        let message = sub.read();
        let parts: Vec<String> = message.array().iter().map(Reply::text).collect();
        (parts[2].clone(), parts[3].clone())
    };
    assert_eq!(c.cmd(&["API.NOTIFY", "string", "touched", "k1"]), ok);
    assert_eq!(
        next_message(),
        ("__keyspace@0__:k1".to_owned(), "touched".to_owned())
    );
    assert_eq!(
        next_message(),
        ("__keyevent@0__:touched".to_owned(), "k1".to_owned())
    );
    // A class the server does not publish sends nothing: the next message is the next event's.
    assert_eq!(c.cmd(&["API.NOTIFY", "hash", "hidden", "k2"]), ok);
    assert_eq!(c.cmd(&["API.NOTIFY", "module", "shown", "k3"]), ok);
    assert_eq!(
        next_message(),
        ("__keyspace@0__:k3".to_owned(), "shown".to_owned())
    );
    // Mistakes are errors.
    let empty = c.cmd(&["API.NOTIFY", "none", "x", "k4"]);
    assert!(empty.error().contains("needs an event class"), "{empty:?}");
    let nul = c.cmd(&["API.NOTIFY", "generic", "a\0b", "k4"]);
    assert!(nul.error().contains("cannot contain NUL"), "{nul:?}");
    assert_eq!(
        next_message(),
        ("__keyevent@0__:shown".to_owned(), "k3".to_owned())
    );
    // Only about keys the caller may use: no `del` of another user's key.
    let mut limited = client_as(&server, "limited", &["~mine:*", "+@all"]);
    assert_eq!(
        limited
            .cmd(&["API.NOTIFY", "generic", "del", "mine:0", "k5"])
            .error(),
        "NOPERM this user has no permissions to access the 'k5' key"
    );
    assert_eq!(
        limited.cmd(&["API.NOTIFY", "generic", "del", "mine:0", "mine:1"]),
        ok
    );
    assert_eq!(
        next_message(),
        ("__keyspace@0__:mine:1".to_owned(), "del".to_owned())
    );
}

#[test]
fn a_guest_replicates_only_what_its_user_may_run() {
    let server = api_server();
    let mut c = server.client();
    let mut alice = client_as(&server, "alice", &["~a*", "+@all", "-lpush"]);
    let mut tap = ReplicationTap::attach(&server);
    // Worded as Redis words its own refusals: the command, or a key.
    for (command, key, message) in [
        (
            "LPUSH",
            "a2",
            "NOPERM this user has no permissions to run the 'lpush' command",
        ),
        (
            "SET",
            "b1",
            "NOPERM this user has no permissions to access one of the keys used as arguments",
        ),
    ] {
        let refused = alice.cmd(&["API.REPLICATE", command, key, "x"]);
        assert_eq!(
            refused.error(),
            format!("{message} (replicas would run what a guest replicates without checking)")
        );
        // Through a script too, as the script's caller.
        let script = "return redis.call('api.replicate', ARGV[1], ARGV[2], 'x')";
        let refused = alice.cmd(&["EVAL", script, "0", command, key]);
        assert!(format!("{refused:?}").contains(message), "{refused:?}");
        // Logged as Redis logs its own: the command alice may not run, the key she may not touch.
        let logged = c.cmd(&["ACL", "LOG", "1"]);
        let (reason, object) = match command {
            "LPUSH" => ("command", "lpush"),
            _ => ("key", key),
        };
        assert_eq!(logged.array()[0].field("object").text(), object);
        assert_eq!(logged.array()[0].field("reason").text(), reason);
    }
    // A line too short for its command is refused before any ACL check: Redis's check reads
    // past the arguments of such a line for some commands (this crashed the server).
    for user in [&mut alice, &mut c] {
        for line in [&["EVAL", "x"][..], &["ZUNION"], &["LMPOP", "1"], &["FCALL"]] {
            let mut command = vec!["API.REPLICATE"];
            command.extend_from_slice(line);
            let refused = user.cmd(&command);
            assert!(
                refused.error().contains("wrong number of arguments"),
                "{line:?}: {refused:?}"
            );
        }
    }
    // So is a key count larger than the line (Redis's ACL key search sized a buffer by it:
    // 17 GB for this one).
    let huge = alice.cmd(&["API.REPLICATE", "EVAL", "return 1", "2147483000", "a1"]);
    assert!(
        huge.error().contains("wrong number of arguments"),
        "{huge:?}"
    );
    let huge = alice.cmd(&["API.CALL", "2", "ZUNION", "2147483000", "a1"]);
    assert!(
        huge.error().starts_with(
            "CALLERR wrong-arity: ERR Number of keys can't be greater than number of args"
        ),
        "{huge:?}"
    );
    // Only writes: replicas replay what they are sent as it comes, and these would stop, break
    // or desynchronise them (a replica replaying SHUTDOWN crashed and did again after each
    // restart; MULTI left it in a transaction for good; SELECT moved its link).
    for line in [
        &["SHUTDOWN", "NOSAVE"][..],
        &["MULTI"],
        &["EXEC"],
        &["SELECT", "5"],
        &["CONFIG", "SET", "maxmemory-samples", "7"],
        &["BLPOP", "empty", "0"],
        &["EVAL", "return 1", "0"],
        &["CLIENT", "KILL", "TYPE", "master"],
        &["MIGRATE", "127.0.0.1", "1", "k", "0", "10"],
        &["SUBSCRIBE", "ch"],
    ] {
        let mut command = vec!["API.REPLICATE"];
        command.extend_from_slice(line);
        let refused = c.cmd(&command);
        assert!(
            refused.error().contains("replicas only replay writes"),
            "{line:?}: {refused:?}"
        );
    }
    assert_eq!(
        alice.cmd(&["API.REPLICATE", "SET", "a1", "x"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["API.REPLICATE", "SET", "b1", "x"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["API.REPLICATE", "PUBLISH", "ch", "x"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        tap.commands(&server),
        vec![
            vec!["SELECT", "0"],
            vec!["SET", "a1", "x"],
            vec!["SET", "b1", "x"],
            vec!["PUBLISH", "ch", "x"]
        ]
    );
    // A command replicated verbatim records its calls, to replicate them instead if need be:
    // a blocking one could not be replayed, and is refused.
    let blocking = c.cmd(&["API.VERBATIMCALL", "BLPOP", "empty", "0"]);
    assert!(
        blocking
            .error()
            .contains("cannot be called by a command replicated verbatim"),
        "{blocking:?}"
    );
    // XREADGROUP, filed as blocking, never blocks without BLOCK: it is allowed.
    c.cmd(&["XADD", "s", "1-1", "f", "v"]);
    c.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    let read = c.cmd(&[
        "API.VERBATIMCALL",
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "STREAMS",
        "s",
        ">",
    ]);
    assert!(!read.is_error(), "{read:?}");
}

#[test]
fn big_values_a_guest_asks_for_again_and_again_are_bounded() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["CONFIG", "SET", "wasm.max-memory", "8mb"]);
    let one_mb = "x".repeat(1 << 20);
    c.cmd(&["HSET", "h", "f", &one_mb]);
    let mut ask = vec!["API.KEY", "hash-get", "h"];
    ask.extend(std::iter::repeat_n("f", 10));
    let refused = c.cmd(&ask);
    assert!(
        refused
            .error()
            .contains("hash-get values add up to more than wasm.max-memory (8388608 bytes)"),
        "{refused:?}"
    );
    assert_eq!(
        c.cmd(&["API.KEY", "hash-get", "h", "f", "f"]).array().len(),
        2
    );
    // A forwarded call reply counts for its size, not as one small item.
    c.cmd(&["CONFIG", "SET", "wasm.max-reply-bytes", "100000"]);
    c.cmd(&["SET", "s", &one_mb]);
    let forwarded = c.cmd(&["API.FORWARD", "2", "GET", "s"]);
    assert!(
        forwarded
            .error()
            .ends_with("the reply is larger than wasm.max-reply-bytes (100000 bytes)"),
        "{forwarded:?}"
    );
}

#[test]
fn call_replies_are_forwarded_as_they_are() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["HSET", "h", "f", "v"]);
    assert_eq!(
        c.cmd_raw(&["API.FORWARD", "2", "SET", "k", "v"]),
        b"+OK\r\n"
    );
    assert_eq!(
        c.cmd_raw(&["API.FORWARD", "2", "HGETALL", "h"]),
        b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    // A RESP3 reply to a RESP2 client is converted with Redis's RESP2 fallbacks.
    assert_eq!(
        c.cmd_raw(&["API.FORWARD", "3", "HGETALL", "h"]),
        b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let resp2 = c.cmd_raw(&["API.FORWARD", "3", "BASICS.TYPES"]);
    c.hello3();
    assert_eq!(
        c.cmd_raw(&["API.FORWARD", "3", "HGETALL", "h"]),
        b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        c.cmd_raw(&["API.FORWARD", "auto", "HGETALL", "h"]),
        b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let resp3 = c.cmd_raw(&["API.FORWARD", "3", "BASICS.TYPES"]);
    // Forwarding gives exactly what the other guest sends itself.
    assert_eq!(resp3, c.cmd_raw(&["BASICS.TYPES"]));
    // Converted to RESP2, it is what a RESP2 client gets from the guest directly, except that
    // RESP3 has a single null, so the null array arrives as a null bulk string.
    let mut c2 = server.client();
    let direct =
        String::from_utf8_lossy(&c2.cmd_raw(&["BASICS.TYPES"])).replace("*-1\r\n", "$-1\r\n");
    assert_eq!(String::from_utf8_lossy(&resp2), direct);
}

#[test]
fn every_reply_type_has_redis_encodings_in_resp2_and_resp3() {
    let server = api_server();
    let mut c = server.client();
    assert_eq!(
        String::from_utf8_lossy(&c.cmd_raw(&["API.TYPES"])),
        "*10\r\n*2\r\n$1\r\na\r\n:1\r\n*1\r\n$1\r\nx\r\n$3\r\n1.5\r\n:1\r\n:0\r\n$24\r\n-12345678901234567890123\r\n$9\r\nsome text\r\n*-1\r\n$-1\r\n-ERR inner\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&c.cmd_raw(&["API.POSTPONED"])),
        "*3\r\n:1\r\n*2\r\n+k\r\n*2\r\n:2\r\n:3\r\n*0\r\n"
    );
    c.hello3();
    assert_eq!(
        String::from_utf8_lossy(&c.cmd_raw(&["API.TYPES"])),
        "*10\r\n%1\r\n$1\r\na\r\n:1\r\n~1\r\n$1\r\nx\r\n,1.5\r\n#t\r\n#f\r\n(-12345678901234567890123\r\n=13\r\ntxt:some text\r\n_\r\n_\r\n-ERR inner\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&c.cmd_raw(&["API.POSTPONED"])),
        "*3\r\n:1\r\n%1\r\n+k\r\n~2\r\n:2\r\n:3\r\n*0\r\n"
    );
}

#[test]
fn postponed_length_mistakes_become_errors() {
    let server = api_server();
    let mut c = server.client();
    for (case, why) in [
        (
            "never-set",
            "an array with a postponed length was never given it",
        ),
        (
            "wrong-count",
            "a postponed array was given length 2 but has 1 element(s)",
        ),
        (
            "wrong-kind",
            "reply-set-array-length called, but the innermost postponed reply is a map",
        ),
        (
            "none-open",
            "reply-set-array-length called with no postponed reply open",
        ),
    ] {
        let reply = c.cmd(&["API.BADPOSTPONED", case]);
        assert!(reply.error().ends_with(why), "{case}: {reply:?}");
        assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    }
}

/// Runs `API.KEY op key args...`.
fn key(c: &mut redis_wasm_tests::Client, words: &[&str]) -> Reply {
    let mut command = vec!["API.KEY"];
    command.extend_from_slice(words);
    c.cmd(&command)
}

#[test]
fn a_write_through_a_key_ends_its_sorted_set_range() {
    let server = api_server();
    let mut c = server.client();
    let no_range = bulk("no-range");
    // A member longer than zset-max-listpack-value makes the set a skiplist: its range cursor
    // points at a node that the removal frees.
    let long = "m".repeat(100);
    c.cmd(&["ZADD", "zs", "1", "a", "2", "b", "3", &long]);
    assert_eq!(
        key(&mut c, &["write-in-range", "zs", "zset-rem", "a"]),
        Reply::Array(vec![Reply::Int(1), no_range.clone()])
    );
    // A small listpack set converted to a skiplist under the range by a long member.
    c.cmd(&["ZADD", "zl", "1", "a", "2", "b"]);
    assert_eq!(
        key(
            &mut c,
            &["write-in-range", "zl", "zset-add", "", "5", &long]
        ),
        Reply::Array(vec![bulk("ADDED"), no_range.clone()])
    );
    // Removing the last member deletes the set under the range; a new one starts clean.
    c.cmd(&["ZADD", "zone", "1", "a"]);
    assert_eq!(
        key(&mut c, &["write-in-range", "zone", "zset-rem", "a"]),
        Reply::Array(vec![Reply::Int(1), no_range.clone()])
    );
    assert_eq!(
        key(&mut c, &["write-in-range", "zl", "set-expire", "100000"]),
        Reply::Array(vec![Reply::Status("OK".into()), no_range])
    );
    assert_eq!(c.cmd(&["ZCARD", "zs"]), Reply::Int(2));
    assert_eq!(c.cmd(&["ZCARD", "zl"]), Reply::Int(3));
    assert_eq!(c.cmd(&["EXISTS", "zone"]), Reply::Int(0));
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn a_key_can_be_set_after_an_index_based_list_read() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["RPUSH", "l", "x", "y"]);
    assert_eq!(
        key(
            &mut c,
            &["list-get-then", "l", "0", "string-set", "now a string"]
        ),
        Reply::Array(vec![bulk("x"), Reply::Status("OK".into())])
    );
    assert_eq!(c.cmd(&["GET", "l"]), bulk("now a string"));
}

#[test]
fn a_list_is_read_in_batches() {
    let server = api_server();
    let mut c = server.client();
    let ints = |sizes: &[i64]| Reply::Array(sizes.iter().copied().map(Reply::Int).collect());
    let elements = ["a", "b", "", "c", "nul\0byte", "e"];
    let mut rpush = vec!["RPUSH", "l"];
    rpush.extend(elements);
    c.cmd(&rpush);
    let whole = Reply::Array(elements.into_iter().map(bulk).collect());
    assert_eq!(
        key(&mut c, &["list-batches", "l", "0", "2"]),
        Reply::Array(vec![ints(&[2, 2, 2]), whole.clone()])
    );
    assert_eq!(
        key(&mut c, &["list-batches", "l", "1", "100"]).array()[0],
        ints(&[5])
    );
    // Negative starts count from the tail; before the head starts at the head (as LRANGE).
    assert_eq!(
        texts(&key(&mut c, &["list-batches", "l", "-3", "100"]).array()[1]),
        ["c", "nul\0byte", "e"]
    );
    assert_eq!(
        key(&mut c, &["list-batches", "l", "-100", "4"]),
        Reply::Array(vec![ints(&[4, 2]), whole])
    );
    let nothing = Reply::Array(vec![ints(&[]), Reply::Array(vec![])]);
    for empty in [["l", "6", "10"], ["l", "0", "0"], ["nolist", "0", "10"]] {
        let mut words = vec!["list-batches"];
        words.extend(empty);
        assert_eq!(key(&mut c, &words), nothing, "{empty:?}");
    }
    c.cmd(&["SET", "s", "v"]);
    assert!(
        key(&mut c, &["list-batches", "s", "0", "10"])
            .error()
            .starts_with("WRONGTYPE")
    );
    // Reads around writes through the same key see the list as written. (Reads go on from Redis's
    // cached list iterator; the host resets it after any write, though Redis 7.0 itself frees it
    // on pushes, pops and index writes, so this checks the values, not the reset.)
    c.cmd(&["RPUSH", "mixed", "a", "b", "c", "d"]);
    assert_eq!(
        texts(&key(&mut c, &["list-mixed", "mixed"])),
        [
            "a", "b", "b", "c", "d", "Y", "c", "Z", "S", "S", "c", "d", "Z"
        ]
    );
    assert_eq!(
        texts(&c.cmd(&["LRANGE", "mixed", "0", "-1"])),
        ["S", "c", "d", "Z"]
    );
    // After an index-based read in the same command (Redis caches a list iterator in the key).
    assert_eq!(
        key(
            &mut c,
            &["list-get-then", "l", "4", "list-batches", "-100", "3"]
        )
        .array()[1],
        Reply::Array(vec![
            ints(&[3, 3]),
            Reply::Array(elements.into_iter().map(bulk).collect())
        ])
    );
    // A batch stops after 1 MiB, counting 4 bytes per element: big elements...
    let big = "x".repeat(600 * 1024);
    c.cmd(&["RPUSH", "big", &big, &big, &big]);
    assert_eq!(
        key(&mut c, &["list-batches", "big", "0", "100"]).array()[0],
        ints(&[2, 1])
    );
    // ... and empty ones, so that no batch runs unbounded.
    let empties = vec![""; 10_000];
    for _ in 0..30 {
        let mut rpush = vec!["RPUSH", "empties"];
        rpush.extend(&empties);
        c.cmd(&rpush);
    }
    assert_eq!(
        key(&mut c, &["list-batches", "empties", "0", "1000000"]).array()[0],
        ints(&[262_144, 37_856])
    );
}

/// `API.KEY scan-batches`: the batch sizes, and the entries as sorted (field, value) pairs.
fn scan(c: &mut Client, words: &[&str]) -> (Vec<i64>, Vec<(String, String)>) {
    let mut command = vec!["scan-batches"];
    command.extend_from_slice(words);
    let reply = key(c, &command);
    let sizes = reply.array()[0].array().iter().map(Reply::int).collect();
    let mut entries: Vec<(String, String)> = texts(&reply.array()[1])
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    entries.sort();
    (sizes, entries)
}

/// A reply of alternating fields and values (HGETALL, ZRANGE WITHSCORES) as sorted pairs.
fn sorted_pairs(reply: &Reply) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = texts(reply)
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn hashes_sets_and_sorted_sets_are_scanned_in_batches() {
    let server = api_server();
    let mut c = server.client();
    // A small hash (one listpack, which one Redis step gives whole) is split at the batch size.
    c.cmd(&[
        "HSET", "small", "f1", "v1", "f2", "", "nul\0f", "nul\0v", "f4", "v4",
    ]);
    let (sizes, entries) = scan(&mut c, &["small", "3"]);
    assert_eq!(sizes, [3, 1]);
    assert_eq!(entries, sorted_pairs(&c.cmd(&["HGETALL", "small"])));
    // A big one (a hash table, a bucket per step): every field exactly once, nothing resized it.
    let mut hset = vec!["HSET".to_string(), "big".into()];
    for i in 0..1000 {
        hset.extend([format!("field{i}"), format!("{}", i * 7)]);
    }
    c.cmd(&hset.iter().map(String::as_str).collect::<Vec<_>>());
    let (sizes, entries) = scan(&mut c, &["big", "100"]);
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), 1000);
    assert_eq!(entries, sorted_pairs(&c.cmd(&["HGETALL", "big"])));
    // Sets (an intset, then a hash table) give members with empty values.
    c.cmd(&["SADD", "ints", "3", "1", "2"]);
    let (_, entries) = scan(&mut c, &["ints", "10"]);
    let members = |entries: &[(String, String)]| {
        assert!(entries.iter().all(|(_, v)| v.is_empty()));
        entries.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>()
    };
    assert_eq!(members(&entries), ["1", "2", "3"]);
    let names: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let mut sadd = vec!["SADD", "names"];
    sadd.extend(names.iter().map(String::as_str));
    c.cmd(&sadd);
    let (_, entries) = scan(&mut c, &["names", "64"]);
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(members(&entries), expected);
    // Sorted sets give scores as text (a listpack, then a skiplist).
    c.cmd(&["ZADD", "z", "1", "a", "2.5", "b", "-inf", "c"]);
    let (_, entries) = scan(&mut c, &["z", "2"]);
    assert_eq!(
        entries,
        [("a", "1"), ("b", "2.5"), ("c", "-inf")].map(|(m, s)| (m.to_string(), s.to_string()))
    );
    let mut zadd = vec!["ZADD".to_string(), "zbig".into()];
    for i in 0..200 {
        zadd.extend([format!("{}", f64::from(i) / 4.0), format!("m{i}")]);
    }
    c.cmd(&zadd.iter().map(String::as_str).collect::<Vec<_>>());
    let (_, entries) = scan(&mut c, &["zbig", "50"]);
    let scores = sorted_pairs(&c.cmd(&["ZRANGE", "zbig", "0", "-1", "WITHSCORES"]));
    assert_eq!(entries.len(), 200);
    for ((member, score), (expected_member, expected_score)) in entries.iter().zip(&scores) {
        assert_eq!(member, expected_member);
        assert_eq!(
            score.parse::<f64>().unwrap(),
            expected_score.parse::<f64>().unwrap()
        );
    }
    // An empty key is a complete scan; the SDK asks for a batch of 0 as 1 (a scan reading
    // nothing would never end).
    assert_eq!(scan(&mut c, &["nothing", "10"]), (vec![0], vec![]));
    assert_eq!(scan(&mut c, &["big", "0"]).1.len(), 1);
    // Other types are refused.
    c.cmd(&["SET", "string", "v"]);
    c.cmd(&["RPUSH", "list", "v"]);
    for other in ["string", "list"] {
        let reply = key(&mut c, &["scan-batches", other, "10"]);
        assert!(reply.error().starts_with("WRONGTYPE"), "{other}: {reply:?}");
    }
    // Writes between batches: an added field may or may not come, the others all do.
    let (_, entries) = scan(&mut c, &["big", "100", "hash-set", "", "added", "x"]);
    let fields: std::collections::BTreeSet<&str> =
        entries.iter().map(|(f, _)| f.as_str()).collect();
    assert!((0..1000).all(|i| fields.contains(format!("field{i}").as_str())));
    assert_eq!(c.cmd(&["HGET", "big", "added"]), bulk("x"));
    // A key deleted during its scan ends it (after what the last step gave beyond the batch).
    let (sizes, _) = scan(&mut c, &["big", "100", "delete"]);
    assert!(
        sizes.len() == 2 && sizes[0] == 100 && sizes[1] < 100,
        "{sizes:?}"
    );
    assert_eq!(c.cmd(&["EXISTS", "big"]), Reply::Int(0));
    // Starting over gives everything again.
    assert_eq!(
        key(&mut c, &["scan-restart", "names", "10"]),
        Reply::Array(vec![Reply::Int(10), Reply::Int(300)])
    );
    // A batch stops after 1 MiB of fields and values.
    let value = "x".repeat(600 * 1024);
    c.cmd(&["HSET", "huge", "a", &value, "b", &value, "c", &value]);
    let (sizes, entries) = scan(&mut c, &["huge", "100"]);
    assert_eq!(sizes, [2, 1]);
    assert_eq!(entries.len(), 3);
}

#[test]
fn an_expire_that_overflows_is_refused() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["SET", "s", "v"]);
    let reply = key(&mut c, &["set-expire", "s", &i64::MAX.to_string()]);
    assert!(reply.error().contains("invalid expire time"), "{reply:?}");
    assert_eq!(c.cmd(&["PTTL", "s"]), Reply::Int(-1));
    assert_eq!(
        key(&mut c, &["set-expire", "s", "100000"]),
        Reply::Status("OK".into())
    );
    let Reply::Int(ttl) = c.cmd(&["PTTL", "s"]) else {
        panic!("PTTL is an integer")
    };
    assert!((1..=100_000).contains(&ttl), "{ttl}");
}

#[test]
fn growing_a_string_replicates_a_few_bytes_not_the_string() {
    let server = api_server();
    let mut c = server.client();
    let mut tap = ReplicationTap::attach(&server);
    let ok = Reply::Status("OK".into());
    assert_eq!(key(&mut c, &["string-truncate", "new", "10000000"]), ok);
    c.cmd(&["SET", "old", "abc"]);
    assert_eq!(key(&mut c, &["string-truncate", "old", "5"]), ok);
    assert_eq!(key(&mut c, &["string-truncate", "old", "2"]), ok);
    let seen = tap.commands(&server);
    let seen: Vec<&Vec<String>> = seen.iter().filter(|c| c[0] != "SELECT").collect();
    assert_eq!(
        seen,
        [
            &["SETRANGE", "new", "9999999", "\0"]
                .map(String::from)
                .to_vec(),
            &["SET", "old", "abc"].map(String::from).to_vec(),
            &["SETRANGE", "old", "4", "\0"].map(String::from).to_vec(),
            // Nothing shrinks a string but setting it again.
            &["SET", "old", "ab", "KEEPTTL"].map(String::from).to_vec(),
        ]
    );
    assert_eq!(c.cmd(&["STRLEN", "new"]), Reply::Int(10_000_000));
}

#[test]
fn a_hash_set_replicates_each_run_of_changed_fields_as_one_command() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["HSET", "h", "f3", "x", "kept", "k"]);
    c.cmd(&["HSET", "n", "old", "o"]);
    let replica = Server::with_module_args(&["LOAD", guests::API_GUEST, "LOAD", guests::BASICS]);
    replica.replicate_from(&server);
    let mut tap = ReplicationTap::attach(&server);
    // Sets, deletions (one of a missing field: no change), then sets again.
    assert_eq!(
        key(
            &mut c,
            &[
                "hash-set", "h", "", "f1", "v1", "f2", "v2", "f3", "-", "none", "-", "f4", "v4",
                "f1", "v1b"
            ]
        ),
        Reply::Int(2)
    );
    // NX leaves an existing field alone: it is not replicated (a replica would overwrite it).
    assert_eq!(
        key(
            &mut c,
            &["hash-set", "n", "nx", "a", "1", "old", "new", "b", "2"]
        ),
        Reply::Int(0)
    );
    let seen: Vec<Vec<String>> = tap
        .commands(&server)
        .into_iter()
        .filter(|c| c[0] != "SELECT")
        .collect();
    let expected: Vec<Vec<&str>> = vec![
        vec!["MULTI"],
        vec!["HSET", "h", "f1", "v1", "f2", "v2"],
        vec!["HDEL", "h", "f3"],
        vec!["HSET", "h", "f4", "v4", "f1", "v1b"],
        vec!["EXEC"],
        vec!["HSET", "n", "a", "1", "b", "2"],
    ];
    assert_eq!(seen, expected);
    server.assert_same_dataset(&replica);
    assert_eq!(c.cmd(&["HGET", "n", "old"]).text(), "o");
}

#[test]
fn a_big_write_leaves_no_big_buffer_behind() {
    let server = api_server();
    let mut c = server.client();
    let used = |c: &mut Client| c.info_u64("memory", "used_memory");
    assert_eq!(
        key(&mut c, &["string-set", "small", "v"]),
        Reply::Status("OK".into())
    );
    let before = used(&mut c);
    // From another connection, closed after: its query buffer held the value too.
    let big = vec![b'x'; 8 << 20];
    let reply = server
        .client()
        .cmd_bytes(&[b"API.KEY", b"string-set", b"big", &big]);
    assert_eq!(reply, Reply::Status("OK".into()));
    c.cmd(&["DEL", "big"]);
    // The effects log (what the write replicates as) keeps only small buffers between commands.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let after = used(&mut c);
        if after < before + (2 << 20) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "used_memory {before} before, {after} after"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn index_edits_replicate_exactly_even_into_lists_holding_an_earlier_marker() {
    let master = api_server();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut c = master.client();
    let mut tap = ReplicationTap::attach(&master);
    // An index edit replicates as LSET to a marker, then LREM/LINSERT of the first element
    // equal to it: anyone reading the stream (MONITOR, the AOF) sees the marker.
    c.cmd(&["RPUSH", "probe", "a", "b", "c"]);
    let ok = Reply::Status("OK".into());
    assert_eq!(key(&mut c, &["list-delete", "probe", "1"]), ok);
    let seen = tap.commands(&master);
    let marker = seen
        .iter()
        .find(|command| command[0].eq_ignore_ascii_case("lset"))
        .map(|lset| lset[3].clone())
        .expect("an LSET of a marker");
    // A list holding that marker as data: the next edits must not touch it on replicas.
    c.cmd(&["RPUSH", "l", &marker, "a", "b"]);
    assert_eq!(key(&mut c, &["list-delete", "l", "2"]), ok);
    c.cmd(&["RPUSH", "l2", &marker, "a", "b"]);
    assert_eq!(key(&mut c, &["list-insert", "l2", "2", "X"]), ok);
    assert_eq!(texts(&c.cmd(&["LRANGE", "l", "0", "-1"])), [&marker, "a"]);
    assert_eq!(
        texts(&c.cmd(&["LRANGE", "l2", "0", "-1"])),
        [&marker, "a", "X", "b"]
    );
    master.assert_same_dataset(&replica);
}

#[test]
fn low_level_keys_work_and_replicate_exactly() {
    let master = api_server();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut c = master.client();
    let ok = Reply::Status("OK".into());
    // Strings.
    assert_eq!(key(&mut c, &["type", "s"]), bulk("empty"));
    assert_eq!(key(&mut c, &["string-set", "s", "hello"]), ok);
    assert_eq!(key(&mut c, &["string-write", "s", "1", "EL"]), ok);
    assert_eq!(key(&mut c, &["string-read", "s", "0", "3"]), bulk("hEL"));
    assert!(
        key(&mut c, &["string-write", "s", "4", "xx"])
            .error()
            .contains("past the end")
    );
    assert_eq!(key(&mut c, &["string-truncate", "s", "8"]), ok);
    assert_eq!(c.cmd(&["GET", "s"]), Reply::Bulk(b"hELlo\0\0\0".to_vec()));
    assert_eq!(key(&mut c, &["string-truncate", "s", "2"]), ok);
    assert_eq!(key(&mut c, &["string-get", "s"]), bulk("hE"));
    assert_eq!(key(&mut c, &["string-truncate", "fresh", "3"]), ok);
    assert_eq!(key(&mut c, &["len", "fresh"]), Reply::Int(3));
    // Lists, including index edits that have no single Redis command.
    for (where_, value) in [("tail", "b"), ("tail", "c"), ("head", "a")] {
        assert_eq!(key(&mut c, &["list-push", "l", where_, value]), ok);
    }
    assert_eq!(key(&mut c, &["list-insert", "l", "1", "X"]), ok);
    assert_eq!(key(&mut c, &["list-insert", "l", "-2", "Y"]), ok);
    assert_eq!(key(&mut c, &["list-insert", "l", "0", "first"]), ok);
    assert_eq!(key(&mut c, &["list-insert", "l", "-1", "last"]), ok);
    assert_eq!(
        texts(&c.cmd(&["LRANGE", "l", "0", "-1"])),
        ["first", "a", "X", "b", "Y", "c", "last"]
    );
    assert_eq!(key(&mut c, &["list-delete", "l", "2"]), ok);
    assert_eq!(key(&mut c, &["list-delete", "l", "-1"]), ok);
    assert_eq!(key(&mut c, &["list-set", "l", "-1", "C"]), ok);
    assert_eq!(key(&mut c, &["list-get", "l", "1"]), bulk("a"));
    assert_eq!(key(&mut c, &["list-pop", "l", "head"]), bulk("first"));
    assert_eq!(
        texts(&c.cmd(&["LRANGE", "l", "0", "-1"])),
        ["a", "b", "Y", "C"]
    );
    assert_eq!(
        key(&mut c, &["list-get", "l", "10"]).error(),
        "KEYERR out-of-range"
    );
    assert_eq!(
        key(&mut c, &["list-set", "l", "-5", "v"]).error(),
        "KEYERR out-of-range"
    );
    assert_eq!(key(&mut c, &["list-pop", "nolist", "tail"]), Reply::Nil);
    assert_eq!(
        key(&mut c, &["list-push", "s", "tail", "x"]).error(),
        "KEYERR wrong-type"
    );
    // Sorted sets.
    assert_eq!(key(&mut c, &["zset-add", "z", "", "1", "a"]), bulk("ADDED"));
    assert_eq!(key(&mut c, &["zset-add", "z", "nx", "5", "a"]), bulk("NOP"));
    assert_eq!(
        key(&mut c, &["zset-add", "z", "xx", "2", "a"]),
        bulk("UPDATED")
    );
    assert_eq!(key(&mut c, &["zset-add", "z", "gt", "1", "a"]), bulk("NOP"));
    assert_eq!(
        key(&mut c, &["zset-add", "z", "", "0.1", "b"]),
        bulk("ADDED")
    );
    assert_eq!(key(&mut c, &["zset-add", "z", "", "3", "c"]), bulk("ADDED"));
    assert_eq!(
        key(&mut c, &["zset-incrby", "z", "", "0.2", "b"]),
        Reply::Array(vec![bulk("0.30000000000000004"), bulk("UPDATED")])
    );
    // Nothing happens: the member's score as it is (Redis leaves it unset).
    assert_eq!(
        key(&mut c, &["zset-incrby", "z", "nx", "5", "b"]),
        Reply::Array(vec![bulk("0.30000000000000004"), bulk("NOP")])
    );
    assert_eq!(
        key(&mut c, &["zset-incrby", "z", "xx", "5", "nobody"]),
        Reply::Array(vec![bulk("0"), bulk("NOP")])
    );
    assert_eq!(key(&mut c, &["zset-score", "z", "a"]), bulk("2"));
    assert_eq!(key(&mut c, &["zset-score", "z", "nobody"]), Reply::Nil);
    assert_eq!(
        key(
            &mut c,
            &["zset-range", "z", "score", "first", "0", "3", "1", "1"]
        ),
        Reply::Array(vec![
            bulk("b"),
            bulk("0.30000000000000004"),
            bulk("a"),
            bulk("2")
        ])
    );
    assert_eq!(
        texts(&key(
            &mut c,
            &["zset-range", "z", "score", "last", "-inf", "+inf"]
        )),
        ["c", "3", "a", "2", "b", "0.30000000000000004"]
    );
    assert_eq!(key(&mut c, &["zset-rem", "z", "c"]), Reply::Int(1));
    assert_eq!(key(&mut c, &["zset-rem", "z", "c"]), Reply::Int(0));
    c.cmd(&["ZADD", "lex", "0", "a", "0", "b", "0", "c", "0", "d"]);
    assert_eq!(
        texts(&key(
            &mut c,
            &["zset-range", "lex", "lex", "first", "(a", "[c"]
        )),
        ["b", "0", "c", "0"]
    );
    assert_eq!(
        texts(&key(
            &mut c,
            &["zset-range", "lex", "lex", "last", "-", "+"]
        )),
        ["d", "0", "c", "0", "b", "0", "a", "0"]
    );
    assert_eq!(
        key(&mut c, &["zset-range", "lex", "lex", "first", "bad", "+"]).error(),
        "KEYERR invalid: ERR invalid range"
    );
    // Batches give the same elements as one-by-one iteration, split at the batch size.
    c.cmd(&[
        "ZADD", "many", "1", "m1", "2", "m2", "2.5", "", "4", "m4", "5", "m5",
    ]);
    assert_eq!(
        key(&mut c, &["zset-batches", "many", "2"]),
        Reply::Array(vec![
            Reply::Array(vec![Reply::Int(2), Reply::Int(2), Reply::Int(1)]),
            Reply::Array(
                ["m1", "1", "m2", "2", "", "2.5", "m4", "4", "m5", "5"]
                    .into_iter()
                    .map(bulk)
                    .collect()
            ),
        ])
    );
    assert_eq!(
        key(&mut c, &["zset-batches", "many", "100"]).array()[0],
        Reply::Array(vec![Reply::Int(5)])
    );
    assert_eq!(
        key(&mut c, &["zset-batches", "many", "0"]),
        Reply::Array(vec![Reply::Array(vec![]), Reply::Array(vec![])])
    );
    assert_eq!(
        key(
            &mut c,
            &["zset-range", "nozset", "score", "first", "0", "1"]
        ),
        Reply::Array(vec![])
    );
    // Hashes.
    assert_eq!(
        key(&mut c, &["hash-set", "h", "", "f1", "v1", "f2", "v2"]),
        Reply::Int(0)
    );
    assert_eq!(
        key(
            &mut c,
            &["hash-set", "h", "count-all", "f3", "v3", "f1", "V1"]
        ),
        Reply::Int(2)
    );
    assert_eq!(
        key(&mut c, &["hash-set", "h", "nx", "f1", "no", "f4", "v4"]),
        Reply::Int(0)
    );
    assert_eq!(
        key(&mut c, &["hash-set", "h", "xx", "f5", "no", "f2", "V2"]),
        Reply::Int(1)
    );
    assert_eq!(
        key(&mut c, &["hash-set", "h", "", "f3", "-"]),
        Reply::Int(1)
    );
    assert_eq!(
        key(&mut c, &["hash-get", "h", "f1", "f2", "f3", "f4", "f5"]),
        Reply::Array(vec![
            bulk("V1"),
            bulk("V2"),
            Reply::Nil,
            bulk("v4"),
            Reply::Nil
        ])
    );
    assert_eq!(
        key(&mut c, &["hash-exists", "h", "f1", "f3"]),
        Reply::Array(vec![Reply::Int(1), Reply::Int(0)])
    );
    assert_eq!(
        key(&mut c, &["hash-set", "nohash", "", "f", "-"]),
        Reply::Int(0)
    );
    assert_eq!(c.cmd(&["EXISTS", "nohash"]), Reply::Int(0));
    // One hash-set emptying the hash and then filling it keeps its expire, as one
    // RedisModule_HashSet call does (it deletes an emptied hash only at the end).
    c.cmd(&["HSET", "hx", "f", "1"]);
    c.cmd(&["PEXPIRE", "hx", "100000"]);
    assert_eq!(
        key(&mut c, &["hash-set", "hx", "", "f", "-", "g", "2"]),
        Reply::Int(1)
    );
    assert_eq!(texts(&c.cmd(&["HKEYS", "hx"])), ["g"]);
    let ttl = c.cmd(&["PTTL", "hx"]).int();
    assert!((1..=100_000).contains(&ttl), "{ttl}");
    // Expires.
    assert_eq!(key(&mut c, &["get-expire", "h"]), Reply::Int(-1));
    assert_eq!(key(&mut c, &["set-expire", "h", "100000"]), ok);
    let left = key(&mut c, &["get-expire", "h"]).int();
    assert!((99_000..=100_000).contains(&left), "{left}");
    assert_eq!(key(&mut c, &["set-expire", "h", "-1"]), ok);
    assert_eq!(c.cmd(&["PTTL", "h"]).int(), -1);
    assert_eq!(key(&mut c, &["set-abs-expire", "l", "4102444800000"]), ok);
    assert_eq!(
        key(&mut c, &["get-abs-expire", "l"]),
        Reply::Int(4_102_444_800_000)
    );
    assert!(
        key(&mut c, &["set-expire", "nokey", "1000"])
            .error()
            .contains("the key is empty")
    );
    // Deleting.
    c.cmd(&["SET", "d1", "x"]);
    c.cmd(&["SET", "d2", "x"]);
    assert_eq!(key(&mut c, &["delete", "d1"]), ok);
    assert_eq!(key(&mut c, &["unlink", "d2"]), ok);
    assert_eq!(c.cmd(&["EXISTS", "d1", "d2"]), Reply::Int(0));
    // The replica saw every change as plain commands and holds the same data.
    master.assert_same_dataset(&replica);
    assert_eq!(
        replica.client().cmd(&["PEXPIRETIME", "l"]).int(),
        4_102_444_800_000
    );
}

#[test]
fn conflicting_key_handles_are_refused() {
    let server = api_server();
    let mut c = server.client();
    for (first, second, expected) in [
        ("w", "w", "already-open"),
        ("w", "r", "already-open"),
        ("r", "w", "already-open"),
        ("r", "r", "opened"),
    ] {
        assert_eq!(
            c.cmd(&["API.OPEN2", "k", first, "k", second]),
            bulk(expected),
            "{first} then {second}"
        );
    }
    assert_eq!(
        c.cmd(&["API.OPEN2", "k", "w", "other", "w"]),
        bulk("opened")
    );
    // The same name in another database is another key.
    c.cmd(&["SELECT", "1"]);
    assert_eq!(
        c.cmd(&["API.OPEN2", "k", "w", "k", "r"]),
        bulk("already-open")
    );
}

#[test]
fn a_key_dropped_last_is_closed_when_its_command_returns() {
    // The SDK leaves closing the last key a command drops to the host, which closes every key
    // when the command returns. Closing a written key is where Redis tells WATCH and
    // client-side caching that it changed: both must still hear of it.
    let server = api_server();
    let mut watcher = server.client();
    let mut tracker = server.client();
    let mut writer = server.client();
    writer.cmd(&["SET", "k", "old"]);
    tracker.hello3();
    assert_eq!(
        tracker.cmd(&["CLIENT", "TRACKING", "on"]),
        Reply::Status("OK".into())
    );
    assert_eq!(tracker.cmd(&["GET", "k"]), bulk("old"));
    assert_eq!(watcher.cmd(&["WATCH", "k"]), Reply::Status("OK".into()));
    assert_eq!(
        writer.cmd(&["API.KEY", "string-set", "k", "new"]),
        Reply::Status("OK".into())
    );
    watcher.cmd(&["MULTI"]);
    watcher.cmd(&["SET", "k", "watcher's"]);
    assert_eq!(watcher.cmd(&["EXEC"]), Reply::Nil, "WATCH missed the write");
    assert_eq!(
        tracker.cmd(&["PING"]),
        Reply::Push(vec![bulk("invalidate"), Reply::Array(vec![bulk("k")])]),
        "no invalidation for the cached key"
    );
    assert_eq!(tracker.read(), Reply::Status("PONG".into()));
    assert_eq!(writer.cmd(&["GET", "k"]), bulk("new"));
    // A key dropped and opened again for writing in one command: the drop's close comes first.
    assert_eq!(
        writer.cmd(&["API.OPENMANY", "1", "0"]).array()[1],
        bulk("opened")
    );
}

#[test]
fn keys_survive_calls_that_change_them() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["RPUSH", "k", "old1", "old2"]);
    // DEL through a call while the key is open: the handle reopens and sees the new state.
    assert_eq!(
        c.cmd(&["API.DELWHILEOPEN", "k"]),
        Reply::Array(vec![Reply::Int(3), Reply::Int(1)])
    );
    assert_eq!(texts(&c.cmd(&["LRANGE", "k", "0", "-1"])), ["b"]);
    // A sorted-set range cannot continue across a call, nor across a keyspace notification
    // (other modules' subscribers run inside it and may change the key: keys are closed).
    c.cmd(&["ZADD", "z", "1", "a", "2", "b"]);
    assert_eq!(c.cmd(&["API.RANGECALL", "z"]).error(), "KEYERR no-range");
    assert_eq!(
        c.cmd(&["API.RANGECALL", "z", "notify"]).error(),
        "KEYERR no-range"
    );
    // A handle reopened after a call counts no second access for eviction: three commands
    // count three, as three GETs would.
    c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    c.cmd(&["CONFIG", "SET", "lfu-log-factor", "0"]);
    c.cmd(&["ZADD", "f", "1", "a"]);
    let before = c.cmd(&["OBJECT", "FREQ", "f"]).int();
    for _ in 0..3 {
        c.cmd(&["API.RANGECALL", "f"]);
    }
    assert_eq!(c.cmd(&["OBJECT", "FREQ", "f"]).int(), before + 3);
    c.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    // A second read handle on the key, or a test whether it exists, does not end it (a command
    // runs on a clock Redis holds still: the key cannot expire under the first handle).
    assert_eq!(c.cmd(&["API.RANGECALL", "z", "open"]), Reply::Int(1));
    assert_eq!(c.cmd(&["API.RANGECALL", "z", "exists"]), Reply::Int(1));
    // Reading a short or integer string replaces its value object (`RedisModule_StringDMA`
    // unshares it): a second handle on the key must not read the freed one.
    for value in [
        "abcdefghijabcdefghijabcdefghijabcdefghij1234",
        "123456789",
        "7",
    ] {
        for others in ["0", "1", "8"] {
            c.cmd(&["SET", "s", value]);
            assert_eq!(
                c.cmd(&["API.READ2", "s", others]),
                Reply::Array(vec![
                    bulk(value),
                    Reply::Int(value.len() as i64),
                    bulk(value)
                ]),
                "{value} {others}"
            );
        }
    }
    // A key given an expire in the past through a write handle: asking whether it exists
    // expires it, and the handle then sees it gone (it once read the freed value).
    c.cmd(&["SET", "gone", "bar"]);
    assert_eq!(
        c.cmd(&["API.EXPIREDEXISTS", "gone"]),
        Reply::Array(vec![Reply::Int(0), Reply::Int(0)])
    );
    assert_eq!(c.cmd(&["EXISTS", "gone"]), Reply::Int(0));
    // Two read handles reading one compressed list in turns (each keeps Redis's list iterator:
    // one moving off a compressed node freed what the other was reading).
    c.cmd(&["CONFIG", "SET", "list-compress-depth", "1"]);
    let mut push = vec!["RPUSH".to_owned(), "cl".to_owned()];
    push.extend((0..1000).map(|i| format!("{i:0>100}")));
    let push: Vec<&str> = push.iter().map(String::as_str).collect();
    c.cmd(&push);
    assert_eq!(
        texts(&c.cmd(&["API.LISTS2", "cl", "400", "400", "600", "401"])),
        [400, 400, 600, 401].map(|i| format!("{i:0>100}"))
    );
    c.cmd(&["CONFIG", "SET", "list-compress-depth", "0"]);
    // Many keys held at once (past the host's index threshold): the one open for reading is
    // refused for writing until its handle closes.
    for n in ["10", "40", "99999"] {
        assert_eq!(
            texts(&c.cmd(&["API.OPENMANY", n, "7"])),
            ["already-open", "opened"],
            "{n} keys"
        );
    }
    // A handle kept past its command is closed.
    assert_eq!(c.cmd(&["API.KEEP", "k"]), Reply::Status("OK".into()));
    assert_eq!(c.cmd(&["API.USEKEPT"]).error(), "KEYERR closed");
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn writes_recorded_before_a_lookup_that_expires_their_key_replicate_before_its_del() {
    // The command writes a key and gives it an expire in the past; asking whether it exists
    // then deletes it, and Redis propagates that DEL at once: the recorded writes must go out
    // before it, or a replica keeps the key (expired, but there for ever).
    let server = api_server();
    let replica = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    replica.replicate_from(&server);
    let mut c = server.client();
    assert_eq!(
        c.cmd(&["API.EXPIREDEXISTS", "k"]),
        Reply::Array(vec![Reply::Int(0), Reply::Int(0)])
    );
    server.assert_same_dataset(&replica);
    // A command replicating itself verbatim replicates its effects from that lookup on: a
    // replica replaying it would not expire the key (replicas leave that to their master).
    assert_eq!(
        c.cmd(&["API.EXPIREDEXISTS", "k", "verbatim"]),
        Reply::Array(vec![Reply::Int(0), Reply::Int(0)])
    );
    server.assert_same_dataset(&replica);
    // So does one that calls a command setting an expire (Redis deletes the key at once for
    // an expire that has passed; a replica replaying the command would only set it).
    c.cmd(&["RPUSH", "l", "x"]);
    assert_eq!(
        c.cmd(&["API.VERBATIMCALL", "PEXPIREAT", "l", "1"]),
        Reply::Int(1)
    );
    assert_eq!(c.cmd(&["EXISTS", "l"]), Reply::Int(0));
    server.assert_same_dataset(&replica);
}

#[test]
fn a_time_to_live_set_through_a_key_replicates_as_an_absolute_expire() {
    // A verbatim command replayed later (from the AOF, by a replica that receives it late)
    // would count a time to live from the replay: like Redis, which propagates every expire
    // as absolute, the command replicates its effects, whether it asked for verbatim
    // replication before or after setting the expire.
    let server = api_server();
    let mut tap = ReplicationTap::attach(&server);
    let mut c = server.client();
    for order in ["before", "after"] {
        assert_eq!(
            c.cmd(&["API.VERBATIMTTL", "t", "100000", order]),
            Reply::Status("OK".into())
        );
        let at = c.cmd(&["PEXPIRETIME", "t"]).int().to_string();
        let mut sent = tap.commands(&server);
        sent.retain(|command| command[0] != "SELECT"); // the stream's first
        assert_eq!(
            sent,
            vec![
                vec!["MULTI".to_owned()],
                vec!["SET".to_owned(), "t".to_owned(), "v".to_owned()],
                vec!["PEXPIREAT".to_owned(), "t".to_owned(), at],
                vec!["EXEC".to_owned()],
            ],
            "{order}"
        );
    }
    // Removing the expire (-1) counts nothing from now: the command stays verbatim.
    assert_eq!(
        c.cmd(&["API.VERBATIMTTL", "t", "-1", "before"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        tap.commands(&server),
        vec![vec![
            "wasm.invoke-write",
            "API.VERBATIMTTL",
            "t",
            "-1",
            "before"
        ]]
    );
    // An absolute expire may stay verbatim.
    assert_eq!(
        c.cmd(&["API.EXPIREDEXISTS", "k", "verbatim"]),
        Reply::Array(vec![Reply::Int(0), Reply::Int(0)])
    );
}

#[test]
fn read_only_commands_cannot_write() {
    let server = api_server();
    let mut c = server.client();
    c.cmd(&["RPUSH", "l", "a"]);
    assert_eq!(
        c.cmd(&["API.RKEY", "list-push", "l", "tail", "x"]).error(),
        "KEYERR not-writable"
    );
    assert_eq!(c.cmd(&["API.RKEY", "len", "l"]), Reply::Int(1));
    // A missing key opened for reading is empty.
    assert_eq!(c.cmd(&["API.RKEY", "type", "missing"]), bulk("empty"));
    assert_eq!(c.cmd(&["API.RKEY", "len", "missing"]), Reply::Int(0));
    assert_eq!(c.cmd(&["API.RKEY", "string-get", "missing"]), bulk(""));
    assert_eq!(c.cmd(&["EXISTS", "missing"]), Reply::Int(0));
}

#[test]
fn replication_order_verbatim_rules_and_failures() {
    let server = api_server();
    let mut tap = ReplicationTap::attach(&server);
    let mut c = server.client();
    assert_eq!(c.cmd(&["API.ORDER", "k"]), Reply::Status("OK".into()));
    let expected: Vec<Vec<&str>> = vec![
        vec!["SELECT", "0"],
        vec!["MULTI"],
        vec!["RPUSH", "k", "low-level"],
        vec!["RPUSH", "k", "called"],
        vec!["ECHO", "explicit"],
        vec!["EXEC"],
    ];
    assert_eq!(tap.commands(&server), expected);
    // Verbatim after a call replicated its effects: the command goes on replicating effects
    // (it must not answer an error for writes that are done and replicated).
    assert_eq!(
        c.cmd(&["API.VERBATIMAFTERCALL", "n"]),
        Reply::Status("OK".into())
    );
    assert_eq!(tap.commands(&server), vec![vec!["INCR", "n"]]);
    // An error after writing still replicates the writes made before it.
    assert_eq!(
        c.cmd(&["API.FAILAFTERWRITE", "w"]).error(),
        "ERR failed after writing"
    );
    assert_eq!(
        tap.commands(&server),
        vec![
            vec!["MULTI"],
            vec!["RPUSH", "w", "written"],
            vec!["INCR", "counter"],
            vec!["EXEC"]
        ]
    );
    // Writes go to the database they were made in.
    assert_eq!(c.cmd(&["API.SELECTWRITE", "3", "k3", "v"]), Reply::Int(0));
    // (the SELECT 0 is Redis's own, for the marker the tap writes in database 0)
    assert_eq!(
        tap.commands(&server),
        vec![
            vec!["SELECT", "3"],
            vec!["SET", "k3", "v"],
            vec!["SELECT", "0"]
        ]
    );
    assert_eq!(
        c.cmd(&["API.REPLICATE", "NOSUCH", "x"]).error(),
        "ERR cannot replicate unknown command 'NOSUCH'"
    );
    // Nor the host's own commands, which Redis 7.0 gives no ACL categories to refuse them by:
    // replicas and the AOF would unload, load or restore guests, or register data types, that
    // this server did not.
    for line in [
        &["WASM.UNLOAD", "api"][..],
        &["wasm.load", "/tmp/x.wasm"],
        &["WASM.RESTORE", "payload"],
        &["WASM.SETVALUE", "k", "newtype01", "0", "x"],
        &["WASM.HELP"],
    ] {
        let mut args = vec!["API.REPLICATE"];
        args.extend(line);
        let refused = c.cmd(&args).error().to_owned();
        assert!(
            refused.starts_with(&format!(
                "ERR cannot replicate '{}': replicas would run a command of the host itself",
                line[0]
            )),
            "{refused}"
        );
    }
    assert!(tap.commands(&server).is_empty());
    // Checking that the command exists runs no command of its own (it once ran COMMAND INFO,
    // which showed in MONITOR, SLOWLOG and commandstats).
    assert!(
        !c.cmd(&["INFO", "commandstats"])
            .text()
            .contains("cmdstat_command")
    );
    // So do low-level writes already sent (ahead of a call).
    assert_eq!(
        c.cmd(&["API.VERBATIMAFTERWRITE", "vw"]),
        Reply::Status("OK".into())
    );
    assert_eq!(tap.commands(&server), vec![vec!["RPUSH", "vw", "x"]]);
}

#[test]
fn a_verbatim_command_replays_from_the_database_it_started_in() {
    let aof = redis_wasm_tests::ServerOptions {
        module_args: vec!["LOAD".into(), guests::API_GUEST.into()],
        config: vec![("appendonly".into(), "yes".into())],
        ..Default::default()
    };
    let mut master = Server::start_with(aof);
    let replica = Server::with_module_args(&["LOAD", guests::API_GUEST]);
    replica.replicate_from(&master);
    let mut c = master.client();
    c.cmd(&["SELECT", "2"]);
    assert_eq!(
        c.cmd(&["API.VERBATIMINDB", "5", "vk"]),
        Reply::Status("OK".into())
    );
    // The guest left its client in database 5, as SELECT would; replicas and the AOF replay
    // the command with another client, which must end where the stream expects it, in 2.
    let mut other = master.client();
    other.cmd(&["SELECT", "2"]);
    other.cmd(&["SET", "in2", "x"]);
    c.cmd(&["SET", "in5", "x"]);
    master.client().cmd(&["SET", "in0", "x"]);
    let digest = master.assert_same_dataset(&replica);
    let mut r = replica.client();
    let where_they_are = |r: &mut Client| {
        let mut found = Vec::new();
        for db in ["0", "2", "5"] {
            r.cmd(&["SELECT", db]);
            for key in ["vk", "in0", "in2", "in5"] {
                if r.cmd(&["EXISTS", key]) == Reply::Int(1) {
                    found.push(format!("{key}@{db}"));
                }
            }
        }
        found
    };
    let expected = ["in0@0", "vk@2", "in2@2", "vk@5", "in5@5"];
    assert_eq!(where_they_are(&mut r), expected);
    r.cmd(&["SELECT", "2"]);
    assert_eq!(r.cmd(&["GET", "vk"]).text(), "here");
    r.cmd(&["SELECT", "5"]);
    assert_eq!(r.cmd(&["GET", "vk"]).text(), "there");
    master.restart().expect("restart from the AOF");
    assert_eq!(master.digest(), digest);
    assert_eq!(where_they_are(&mut master.client()), expected);
}

#[test]
fn a_verbatim_command_whose_user_was_refused_something_replicates_its_effects() {
    let master = api_server();
    let replica = api_server();
    replica.replicate_from(&master);
    let mut c = master.client();
    let mut alice = client_as(&master, "alice", &["~a*", "+@all"]);
    // The master refuses alice the key b1; a replica replaying the command verbatim would not
    // (it has no user), so the command's effects are replicated instead.
    let tried = alice.cmd(&["API.VERBATIMTRY", "a1", "b1"]);
    let tried: Vec<String> = tried.array().iter().map(Reply::text).collect();
    assert!(tried[0].contains("no permissions"), "{tried:?}");
    assert!(tried[1].contains("NOPERM"), "{tried:?}");
    master.assert_same_dataset(&replica);
    assert_eq!(replica.client().cmd(&["EXISTS", "b1"]), Reply::Int(0));
    assert_eq!(replica.client().cmd(&["GET", "a1"]).text(), "done");
    // Without a refusal the command still replicates verbatim (and does the same on replicas).
    assert_eq!(
        texts(&c.cmd(&["API.VERBATIMTRY", "a2", "b2"])),
        ["set", "set"]
    );
    master.assert_same_dataset(&replica);
    assert_eq!(replica.client().cmd(&["GET", "b2"]).text(), "tried");
    // The calls go out as they were made: one kept from replicas stays away from them.
    let mut tap = ReplicationTap::attach(&master);
    assert_eq!(
        alice.cmd(&["API.VERBATIMNOREPL", "a3", "b3"]),
        Reply::Int(0)
    );
    let sent = tap.commands(&master);
    assert!(
        !sent.iter().any(|c| c.iter().any(|arg| arg == "a3")),
        "{sent:?}"
    );
    assert_eq!(replica.client().cmd(&["EXISTS", "a3"]), Reply::Int(0));
}

#[test]
fn context_flags_and_pool() {
    let server = api_server();
    let mut c = server.client();
    let flags = c.cmd(&["API.FLAGS"]).array()[0].text();
    assert!(
        !flags.contains("MULTI") && !flags.contains("LUA"),
        "{flags}"
    );
    c.cmd(&["MULTI"]);
    c.cmd(&["API.FLAGS"]);
    let exec = c.cmd(&["EXEC"]);
    assert!(exec.array()[0].array()[0].text().contains("MULTI"));
    let lua = c.cmd(&["EVAL", "return redis.call('api.flags')", "0"]);
    assert!(lua.array()[0].text().contains("LUA"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((c.cmd(&["API.FLAGS"]).array()[1].int() - now).abs() < 5_000);
    // 10 buffers of 100 bytes filled with 0..9.
    assert_eq!(c.cmd(&["API.POOL", "10"]), Reply::Int(100 * 45));
}

#[test]
fn calls_to_keys_this_cluster_node_does_not_serve_are_a_distinct_error() {
    let server = Server::start_with(redis_wasm_tests::ServerOptions {
        module_args: vec!["LOAD".into(), guests::API_GUEST.into()],
        config: vec![("cluster-enabled".into(), "yes".into())],
        ..Default::default()
    });
    let mut c = server.client();
    // No slot is assigned: every key belongs to no node.
    let reply = c.cmd(&["API.CALL", "2", "GET", "k"]);
    assert!(
        reply.error().starts_with("CALLERR non-local-key"),
        "{reply:?}"
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        Reply::Status("OK".into())
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c
        .cmd(&["CLUSTER", "INFO"])
        .text()
        .contains("cluster_state:ok")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "cluster did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        c.cmd(&["API.CALL", "2", "GET", "k"]),
        Reply::Array(vec![bulk("null")])
    );
}

#[test]
fn a_stricter_dispatcher_called_by_hand_needs_the_commands_own_permission() {
    // ACL permissions are per dispatcher: a user denied the read-only one may not run read-only
    // guest commands by naming a write dispatcher (whose checks are stricter) instead.
    let server = api_server();
    let mut nr = client_as(
        &server,
        "nr",
        &["~*", "&*", "+@all", "-wasm.invoke-readonly", "-wasm.invoke"],
    );
    assert!(nr.cmd(&["BASICS.ECHO", "a"]).error().starts_with("NOPERM"));
    for dispatcher in ["wasm.invoke-write", "wasm.invoke-write-denyoom"] {
        let refused = nr.cmd(&[dispatcher, "BASICS.ECHO", "a"]);
        assert!(
            refused.error().starts_with(
                "NOPERM this user has no permissions to run the 'wasm.invoke-readonly' command, \
                 which guest command 'basics.echo' runs through"
            ),
            "{refused:?}"
        );
        let from_lua = nr.cmd(&[
            "EVAL",
            &format!("return redis.call('{dispatcher}', 'basics.echo', 'a')"),
            "0",
        ]);
        assert!(from_lua.error().contains("NOPERM"), "{from_lua:?}");
    }
    // Allowed the command's own dispatcher, the stricter one still runs it.
    let mut both = client_as(&server, "both", &["~*", "+@all"]);
    assert_eq!(
        both.cmd(&["wasm.invoke-write", "BASICS.ECHO", "a"])
            .array()
            .len(),
        1
    );
}

#[test]
fn select_db_needs_the_permission_to_select() {
    // `-select` keeps a user in its database: a guest's select-db is checked as SELECT is (Lua
    // checks its scripts' SELECTs alike), and the user stays where it was.
    let server = api_server();
    let mut db0 = client_as(&server, "db0", &["~*", "&*", "+@all", "-select"]);
    let refused = db0.cmd(&["API.SELECTWRITE", "1", "k", "fromguest"]);
    assert_eq!(
        refused.error(),
        "NOPERM this user has no permissions to run the 'select' command"
    );
    let mut admin = server.client();
    admin.cmd(&["SELECT", "1"]);
    assert_eq!(admin.cmd(&["EXISTS", "k"]), Reply::Int(0));
    assert!(db0.cmd(&["CLIENT", "INFO"]).text().contains(" db=0 "));
    assert_eq!(
        admin.cmd(&["ACL", "LOG", "1"]).array()[0]
            .field("object")
            .text(),
        "select"
    );
    // Allowed, it works as before.
    let mut any = client_as(&server, "any", &["~*", "&*", "+@all"]);
    assert_eq!(
        any.cmd(&["API.SELECTWRITE", "1", "k", "fromguest"]),
        Reply::Int(0)
    );
    assert_eq!(admin.cmd(&["GET", "k"]), Reply::Bulk(b"fromguest".to_vec()));
}

#[test]
fn blocking_on_keys_needs_read_access_to_them() {
    // Being woken tells that a key changed: like BLPOP, a guest may block only on keys its
    // caller may read, declared or not.
    let server = api_server();
    let mut mine = client_as(&server, "mine", &["~mine*", "+@all"]);
    assert!(
        mine.cmd(&["BLPOP", "api:never", "1"])
            .error()
            .starts_with("NOPERM")
    );
    assert_eq!(
        mine.cmd(&["API.WAIT", "keyswait", "0"]).error(),
        "NOPERM this user has no permissions to access the 'api:never' key"
    );
    assert_eq!(server.client().info_u64("clients", "blocked_clients"), 0);
    // Allowed, it blocks (and times out).
    let mut all = client_as(&server, "all", &["~*", "+@all"]);
    assert_eq!(
        all.cmd(&["API.WAIT", "keysreply", "50"]),
        Reply::Status("anyway".into())
    );
}

#[test]
fn a_blocked_clients_callback_does_not_run_as_the_default_user_after_its_user_is_deleted() {
    // ACL DELUSER gives the deleted user's clients the default user until Redis closes them: a
    // reply phase running in between must not get the default user's permissions.
    let server = api_server();
    let mut alice = client_as(&server, "alice", &["~a*", "+@all"]);
    // Refused while alice exists (the key is not hers).
    send_line(&mut alice, &["API.WAIT", "plain"]);
    let mut admin = server.client();
    wait_for_blocked(&mut admin, 1);
    assert_eq!(
        admin.cmd(&["API.WAKE", "call SET xsecret pwned"]),
        Reply::Int(1)
    );
    assert!(format!("{:?}", alice.read()).contains("no-permission"));
    // Woken and deleted in one event-loop turn.
    send_line(&mut alice, &["API.WAIT", "plain"]);
    wait_for_blocked(&mut admin, 1);
    admin.cmd(&["MULTI"]);
    admin.cmd(&["API.WAKE", "call SET xsecret pwned"]);
    admin.cmd(&["ACL", "DELUSER", "alice"]);
    let exec = admin.cmd(&["EXEC"]);
    assert_eq!(exec.array()[0], Reply::Int(1), "{exec:?}");
    assert_eq!(admin.cmd(&["GET", "xsecret"]), Reply::Nil);
    assert_eq!(admin.cmd(&["PING"]), Reply::Status("PONG".into()));
    // Nor does a background job start for such a client (it would run as the default user).
    let mut alice = client_as(&server, "alice", &["~a*", "+@all"]);
    send_line(&mut alice, &["API.WAIT", "plain"]);
    wait_for_blocked(&mut admin, 1);
    admin.cmd(&["MULTI"]);
    admin.cmd(&["ACL", "DELUSER", "alice"]);
    admin.cmd(&["API.BGFOR"]);
    let exec = admin.cmd(&["EXEC"]);
    assert_eq!(exec.array()[1], Reply::Int(0), "{exec:?}");
    assert_eq!(admin.info_u64("wasm", "wasm_background_jobs"), 0);
}

fn send_line(client: &mut Client, args: &[&str]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    client.send(&args);
}

fn wait_for_blocked(admin: &mut Client, count: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while admin.info_u64("clients", "blocked_clients") != count {
        assert!(std::time::Instant::now() < deadline, "no client blocked");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_refused_publication_is_logged_as_a_channel_refusal() {
    // As Redis logs its own: reason "channel", the channel as the object.
    let server = api_server();
    let mut ch = client_as(&server, "ch", &["~*", "+@all", "resetchannels", "&ok*"]);
    let refused = ch.cmd(&["API.REPLICATE", "PUBLISH", "bad", "m"]);
    assert!(refused.error().starts_with("NOPERM"), "{refused:?}");
    let mut admin = server.client();
    let entry = admin.cmd(&["ACL", "LOG", "1"]).array()[0].clone();
    assert_eq!(entry.field("reason").text(), "channel");
    assert_eq!(entry.field("object").text(), "bad");
    // The same refusal through a call, which Redis logs itself.
    admin.cmd(&["ACL", "LOG", "RESET"]);
    let called = ch.cmd(&["API.WCALL", "2", "PUBLISH", "bad", "m"]);
    assert!(
        format!("{called:?}").contains("no-permission"),
        "{called:?}"
    );
    let entry = admin.cmd(&["ACL", "LOG", "1"]).array()[0].clone();
    assert_eq!(entry.field("reason").text(), "channel");
    assert_eq!(entry.field("object").text(), "bad");
    // Allowed channels replicate.
    assert_eq!(
        ch.cmd(&["API.REPLICATE", "PUBLISH", "ok1", "m"]),
        Reply::Status("OK".into())
    );
}

#[test]
fn a_callback_run_while_an_rdb_loads_stays_under_its_users_acl() {
    // Redis flags the whole server as loading while an RDB loads, and CLIENT UNBLOCK (allowed
    // then) runs a blocked client's timeout phase: that is no replayed work, and the keys it
    // opens are still checked against its user's ACL.
    let server = api_server();
    let mut admin = server.client();
    admin.cmd(&["SET", "secret", "s3cr3t"]);
    admin.cmd(&["SELECT", "1"]);
    admin.cmd(&["DEBUG", "POPULATE", "20000", "filler", "10"]);
    admin.cmd(&["SELECT", "0"]);
    assert_eq!(admin.cmd(&["SAVE"]), Reply::Status("OK".into()));
    let mut user = client_as(&server, "u", &["~public:*", "+@all"]);
    let id = user.cmd(&["CLIENT", "ID"]).int().to_string();
    send_line(&mut user, &["API.WAIT", "readtimeout", "0", "secret"]);
    wait_for_blocked(&mut admin, 1);
    admin.cmd(&["CONFIG", "SET", "key-load-delay", "100"]);
    admin.cmd(&[
        "CONFIG",
        "SET",
        "loading-process-events-interval-bytes",
        "1024",
    ]);
    let mut reloader = server.client();
    send_line(&mut reloader, &["DEBUG", "RELOAD"]);
    let mut unblocker = server.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if unblocker
            .cmd(&["INFO", "persistence"])
            .text()
            .contains("loading:1")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never loading");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(unblocker.cmd(&["CLIENT", "UNBLOCK", &id]), Reply::Int(1));
    let answer = user.read();
    assert!(
        format!("{answer:?}")
            .contains("NOPERM this user has no permissions to access the 'secret' key"),
        "{answer:?}"
    );
    unblocker.cmd(&["CONFIG", "SET", "key-load-delay", "0"]);
    assert_eq!(reloader.read(), Reply::Status("OK".into()));
}
