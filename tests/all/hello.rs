//! The hello port (examples/hello) against the behaviour of Redis's own helloworld module.
//!
//! `C_MODULE_REPLIES` was recorded by running the same command sequence, in RESP2 and then in
//! RESP3, against Redis 7.0.15 with `src/modules/helloworld.c` built as a native module. The
//! guest must give byte-identical replies.

use redis_wasm_tests::{ReplicationTap, Reply, Server, ServerOptions, guests};

fn hello_server() -> Server {
    Server::with_module_args(&["LOAD", guests::HELLO])
}

const C_MODULE_REPLIES: &[(&str, &[u8], &[u8])] = &[
    ("hello.simple", b":0\r\n", b":0\r\n"),
    ("select 3", b"+OK\r\n", b"+OK\r\n"),
    ("hello.simple", b":3\r\n", b":3\r\n"),
    ("select 0", b"+OK\r\n", b"+OK\r\n"),
    (
        "hello.push.native",
        b"-ERR wrong number of arguments for 'hello.push.native' command\r\n",
        b"-ERR wrong number of arguments for 'hello.push.native' command\r\n",
    ),
    ("hello.push.native l1 a", b":1\r\n", b":1\r\n"),
    ("hello.push.native l1 b", b":2\r\n", b":2\r\n"),
    ("hello.push.call l1 c", b":3\r\n", b":3\r\n"),
    ("hello.push.call2 l1 d", b":4\r\n", b":4\r\n"),
    ("set s1 hello", b"+OK\r\n", b"+OK\r\n"),
    ("hello.push.native s1 x", b":5\r\n", b":5\r\n"),
    (
        "hello.push.call s1 x",
        b":-9223372036854775808\r\n",
        b":-9223372036854775808\r\n",
    ),
    (
        "hello.push.call2 s1 x",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    ("hello.list.sum.len l1", b":4\r\n", b":4\r\n"),
    ("hello.list.sum.len nokey", b":0\r\n", b":0\r\n"),
    (
        "hello.list.sum.len",
        b"-ERR wrong number of arguments for 'hello.list.sum.len' command\r\n",
        b"-ERR wrong number of arguments for 'hello.list.sum.len' command\r\n",
    ),
    ("hello.list.splice l1 l2 2", b":2\r\n", b":2\r\n"),
    ("hello.list.splice l1 l2 100", b":0\r\n", b":0\r\n"),
    (
        "hello.list.splice l1 l2 -1",
        b"-ERR invalid count\r\n",
        b"-ERR invalid count\r\n",
    ),
    (
        "hello.list.splice l1 l2 abc",
        b"-ERR invalid count\r\n",
        b"-ERR invalid count\r\n",
    ),
    (
        "hello.list.splice s1 l2 1",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.list.splice l2 s1 1",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    ("hello.list.splice.auto l2 l3 1", b":3\r\n", b":3\r\n"),
    (
        "hello.list.splice.auto l2 l3 x",
        b"-ERR invalid count\r\n",
        b"-ERR invalid count\r\n",
    ),
    (
        "hello.list.splice.auto s1 l3 1",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    ("hello.rand.array 0", b"*0\r\n", b"*0\r\n"),
    (
        "hello.rand.array -1",
        b"-ERR invalid count\r\n",
        b"-ERR invalid count\r\n",
    ),
    (
        "hello.rand.array x",
        b"-ERR invalid count\r\n",
        b"-ERR invalid count\r\n",
    ),
    ("hello.repl1", b":0\r\n", b":0\r\n"),
    ("get foo", b"$1\r\n1\r\n", b"$1\r\n1\r\n"),
    ("hello.repl1", b":0\r\n", b":0\r\n"),
    ("get bar", b"$1\r\n2\r\n", b"$1\r\n2\r\n"),
    ("rpush nums 1 2 3 x", b":4\r\n", b":4\r\n"),
    ("hello.repl2 nums", b":10\r\n", b":10\r\n"),
    (
        "lrange nums 0 -1",
        b"*4\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n1\r\n",
        b"*4\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n1\r\n",
    ),
    (
        "hello.repl2 s1",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.repl2 nokey",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.repl2",
        b"-ERR wrong number of arguments for 'hello.repl2' command\r\n",
        b"-ERR wrong number of arguments for 'hello.repl2' command\r\n",
    ),
    ("set tc HeLLo123", b"+OK\r\n", b"+OK\r\n"),
    ("hello.toggle.case tc", b"+OK\r\n", b"+OK\r\n"),
    ("get tc", b"$8\r\nhEllO123\r\n", b"$8\r\nhEllO123\r\n"),
    ("hello.toggle.case nokey", b"+OK\r\n", b"+OK\r\n"),
    (
        "hello.toggle.case l3",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    ("set ex v", b"+OK\r\n", b"+OK\r\n"),
    ("hello.more.expire ex 1000", b"+OK\r\n", b"+OK\r\n"),
    ("expire ex 100", b":1\r\n", b":1\r\n"),
    ("hello.more.expire ex 100000", b"+OK\r\n", b"+OK\r\n"),
    (
        "hello.more.expire ex abc",
        b"-ERR invalid expire time\r\n",
        b"-ERR invalid expire time\r\n",
    ),
    ("hello.more.expire nokey 10", b"+OK\r\n", b"+OK\r\n"),
    ("zadd z 1 a 2 b 3 c 4 d", b":4\r\n", b":4\r\n"),
    (
        "hello.zsumrange z 1 3",
        b"*2\r\n$1\r\n6\r\n$1\r\n6\r\n",
        b"*2\r\n,6\r\n,6\r\n",
    ),
    (
        "hello.zsumrange z -inf +inf",
        b"*2\r\n$2\r\n10\r\n$2\r\n10\r\n",
        b"*2\r\n,10\r\n,10\r\n",
    ),
    (
        "hello.zsumrange z 3 1",
        b"*2\r\n$1\r\n0\r\n$1\r\n0\r\n",
        b"*2\r\n,0\r\n,0\r\n",
    ),
    (
        "hello.zsumrange z x 1",
        b"-ERR invalid range\r\n",
        b"-ERR invalid range\r\n",
    ),
    (
        "hello.zsumrange nokey 1 2",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.zsumrange s1 1 2",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "zadd lx 0 Anna:52 0 Bob:30 0 Carl:40 0 Dan:20",
        b":4\r\n",
        b":4\r\n",
    ),
    (
        "hello.lexrange lx [A [C 0 100",
        b"*2\r\n$7\r\nAnna:52\r\n$6\r\nBob:30\r\n",
        b"*2\r\n$7\r\nAnna:52\r\n$6\r\nBob:30\r\n",
    ),
    (
        "hello.lexrange lx - + 0 100",
        b"*4\r\n$7\r\nAnna:52\r\n$6\r\nBob:30\r\n$7\r\nCarl:40\r\n$6\r\nDan:20\r\n",
        b"*4\r\n$7\r\nAnna:52\r\n$6\r\nBob:30\r\n$7\r\nCarl:40\r\n$6\r\nDan:20\r\n",
    ),
    (
        "hello.lexrange lx (Bob + 0 1",
        b"*3\r\n$6\r\nBob:30\r\n$7\r\nCarl:40\r\n$6\r\nDan:20\r\n",
        b"*3\r\n$6\r\nBob:30\r\n$7\r\nCarl:40\r\n$6\r\nDan:20\r\n",
    ),
    (
        "hello.lexrange lx bad + 0 1",
        b"-invalid range\r\n",
        b"-invalid range\r\n",
    ),
    ("hello.lexrange lx [Z [A 0 1", b"*0\r\n", b"*0\r\n"),
    (
        "hello.lexrange nokey - + 0 1",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.lexrange s1 - + 0 1",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.lexrange lx - +",
        b"-ERR wrong number of arguments for 'hello.lexrange' command\r\n",
        b"-ERR wrong number of arguments for 'hello.lexrange' command\r\n",
    ),
    ("hset h f1 v1", b":1\r\n", b":1\r\n"),
    ("hello.hcopy h f1 f2", b":1\r\n", b":1\r\n"),
    (
        "hgetall h",
        b"*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv1\r\n",
        b"%2\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv1\r\n",
    ),
    ("hello.hcopy h nofield f3", b":0\r\n", b":0\r\n"),
    ("hello.hcopy newh a b", b":0\r\n", b":0\r\n"),
    (
        "hello.hcopy s1 a b",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (
        "hello.leftpad hello 10 *",
        b"$10\r\n*****hello\r\n",
        b"$10\r\n*****hello\r\n",
    ),
    (
        "hello.leftpad hello 3 *",
        b"$5\r\nhello\r\n",
        b"$5\r\nhello\r\n",
    ),
    (
        "hello.leftpad hello 10 ab",
        b"-ERR padding must be a single char\r\n",
        b"-ERR padding must be a single char\r\n",
    ),
    (
        "hello.leftpad hello -1 *",
        b"-ERR invalid padding length\r\n",
        b"-ERR invalid padding length\r\n",
    ),
    (
        "hello.leftpad hello x *",
        b"-ERR invalid padding length\r\n",
        b"-ERR invalid padding length\r\n",
    ),
    (
        "hello.leftpad hello 5 *",
        b"$5\r\nhello\r\n",
        b"$5\r\nhello\r\n",
    ),
    (
        "hello.leftpad",
        b"-ERR wrong number of arguments for 'hello.leftpad' command\r\n",
        b"-ERR wrong number of arguments for 'hello.leftpad' command\r\n",
    ),
];

#[test]
fn replies_match_the_c_module_in_resp2_and_resp3() {
    let server = hello_server();
    for resp3 in [false, true] {
        let mut c = server.client();
        if resp3 {
            c.hello3();
        }
        c.cmd(&["FLUSHALL"]);
        for (command, resp2_reply, resp3_reply) in C_MODULE_REPLIES {
            let words: Vec<&str> = command.split(' ').collect();
            let got = c.cmd_raw(&words);
            let expected: &[u8] = if resp3 { resp3_reply } else { resp2_reply };
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(expected),
                "RESP{} reply to {command:?}",
                if resp3 { 3 } else { 2 }
            );
        }
    }
}

#[test]
fn inputs_that_crash_the_c_module_answer_errors() {
    let server = hello_server();
    let mut c = server.client();
    c.cmd(&["RPUSH", "list", "a", "b", "c"]);
    c.cmd(&["ZADD", "zset", "1", "a"]);
    // Same key twice for writing: the C module corrupts memory and crashes.
    assert_eq!(
        c.cmd(&["HELLO.LIST.SPLICE", "list", "list", "3"]).error(),
        "ERR source and destination must be different keys"
    );
    assert_eq!(
        c.cmd(&["HELLO.LIST.SPLICE.AUTO", "list", "list", "3"])
            .error(),
        "ERR source and destination must be different keys"
    );
    // An error reply walked as an array: the C module dereferences NULL.
    assert_eq!(
        c.cmd(&["HELLO.LIST.SUM.LEN", "zset"]).error(),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(c.cmd(&["LRANGE", "list", "0", "-1"]).array().len(), 3);
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn random_arrays_have_the_requested_length() {
    let server = hello_server();
    let mut c = server.client();
    let array = c.cmd(&["HELLO.RAND.ARRAY", "5"]);
    assert_eq!(array.array().len(), 5);
    assert!(
        array
            .array()
            .iter()
            .all(|v| (0..=i64::from(i32::MAX)).contains(&v.int()))
    );
}

#[test]
fn expires_are_extended_only_when_set() {
    let server = hello_server();
    let mut c = server.client();
    c.cmd(&["SET", "k", "v"]);
    assert_eq!(
        c.cmd(&["HELLO.MORE.EXPIRE", "k", "5000"]),
        Reply::Status("OK".into())
    );
    assert_eq!(c.cmd(&["PTTL", "k"]).int(), -1);
    c.cmd(&["PEXPIRE", "k", "10000"]);
    c.cmd(&["HELLO.MORE.EXPIRE", "k", "50000"]);
    let ttl = c.cmd(&["PTTL", "k"]).int();
    assert!((55_000..=60_000).contains(&ttl), "{ttl}");
}

#[test]
fn key_positions_are_those_declared() {
    let server = hello_server();
    let mut c = server.client();
    let keys = c.cmd(&["COMMAND", "GETKEYS", "HELLO.LIST.SPLICE", "src", "dst", "3"]);
    assert_eq!(
        keys.array().iter().map(Reply::text).collect::<Vec<_>>(),
        ["src", "dst"]
    );
    let keys = c.cmd(&["COMMAND", "GETKEYS", "HELLO.LEFTPAD", "str", "10", "*"]);
    assert_eq!(
        keys.array().iter().map(Reply::text).collect::<Vec<_>>(),
        ["str"]
    );
    // ACL key patterns apply to both keys of the splice.
    c.cmd(&[
        "ACL",
        "SETUSER",
        "u",
        "on",
        "nopass",
        "~a*",
        "+@all",
        "+wasm.invoke-write-denyoom",
    ]);
    let mut u = server.client();
    u.cmd(&["AUTH", "u", "x"]);
    assert_eq!(u.cmd(&["HELLO.LIST.SPLICE", "a1", "a2", "1"]).int(), 0);
    assert!(
        u.cmd(&["HELLO.LIST.SPLICE", "a1", "b2", "1"])
            .error()
            .starts_with("NOPERM")
    );
}

#[test]
fn repl1_replicates_calls_first_then_the_explicit_command() {
    let server = hello_server();
    let mut tap = ReplicationTap::attach(&server);
    assert_eq!(server.client().cmd(&["HELLO.REPL1"]).int(), 0);
    let stream = tap.commands(&server);
    let expected: Vec<Vec<&str>> = vec![
        vec!["SELECT", "0"],
        vec!["MULTI"],
        vec!["INCR", "foo"],
        vec!["INCR", "bar"],
        vec!["ECHO", "foo"],
        vec!["EXEC"],
    ];
    assert_eq!(stream, expected);
}

#[test]
fn low_level_writes_reach_the_replication_stream_as_commands() {
    let server = hello_server();
    let mut c = server.client();
    c.cmd(&["RPUSH", "src", "1", "2", "3"]);
    let mut tap = ReplicationTap::attach(&server);
    c.cmd(&["HELLO.PUSH.NATIVE", "list", "x"]);
    c.cmd(&["HELLO.LIST.SPLICE", "src", "dst", "2"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["HELLO.HCOPY", "h", "f", "g"]);
    let stream = tap.commands(&server);
    let expected: Vec<Vec<&str>> = vec![
        vec!["SELECT", "0"],
        vec!["RPUSH", "list", "x"],
        vec!["MULTI"],
        vec!["RPOP", "src"],
        vec!["LPUSH", "dst", "3"],
        vec!["RPOP", "src"],
        vec!["LPUSH", "dst", "2"],
        vec!["EXEC"],
        vec!["HSET", "h", "f", "v"],
        vec!["HSET", "h", "g", "v"],
    ];
    assert_eq!(stream, expected);
}

#[test]
fn verbatim_commands_replicate_as_the_guest_command() {
    let server = hello_server();
    let mut c = server.client();
    c.cmd(&["RPUSH", "nums", "1", "2"]);
    c.cmd(&["SET", "s", "aBc"]);
    let mut tap = ReplicationTap::attach(&server);
    assert_eq!(c.cmd(&["HELLO.REPL2", "nums"]).int(), 5);
    assert_eq!(
        c.cmd(&["HELLO.TOGGLE.CASE", "s"]),
        Reply::Status("OK".into())
    );
    let stream = tap.commands(&server);
    let expected: Vec<Vec<&str>> = vec![
        vec!["SELECT", "0"],
        vec!["wasm.invoke-write", "HELLO.REPL2", "nums"],
        vec!["wasm.invoke-write", "HELLO.TOGGLE.CASE", "s"],
    ];
    assert_eq!(stream, expected);
}

/// A replica of `master` with the hello guest: verbatim-replicated commands run the guest there
/// too.
fn hello_replica(master: &Server) -> Server {
    let replica = Server::start_with(ServerOptions {
        module_args: vec!["LOAD".into(), guests::HELLO.into()],
        ..Default::default()
    });
    replica.replicate_from(master);
    replica
}

#[test]
fn a_replica_ends_with_the_same_dataset() {
    let master = hello_server();
    let replica = hello_replica(&master);
    let mut c = master.client();
    let workload: &[&[&str]] = &[
        &["RPUSH", "src", "1", "2", "3", "4"],
        &["HELLO.PUSH.NATIVE", "a", "x"],
        &["HELLO.PUSH.CALL", "a", "y"],
        &["HELLO.PUSH.CALL2", "a", "z"],
        &["HELLO.LIST.SPLICE", "src", "dst", "2"],
        &["HELLO.LIST.SPLICE.AUTO", "dst", "src", "1"],
        &["HELLO.REPL1"],
        &["HELLO.REPL2", "src"],
        &["SET", "s", "MiXeD"],
        &["HELLO.TOGGLE.CASE", "s"],
        &["SET", "e", "v", "PX", "100000"],
        &["HELLO.MORE.EXPIRE", "e", "1000"],
        &["HSET", "h", "f", "v"],
        &["HELLO.HCOPY", "h", "f", "copy"],
        &["SELECT", "5"],
        &["HELLO.PUSH.NATIVE", "in5", "v"],
    ];
    for command in workload {
        let reply = c.cmd(command);
        assert!(!reply.is_error(), "{command:?}: {reply:?}");
    }
    master.assert_same_dataset(&replica);
    let mut r = replica.client();
    assert_eq!(r.cmd(&["GET", "s"]).text(), "mIxEd");
    r.cmd(&["SELECT", "5"]);
    assert_eq!(r.cmd(&["LLEN", "in5"]).int(), 1);
}

#[test]
fn a_verbatim_command_the_host_yields_in_answers_and_replicates_its_effects() {
    // HELLO.REPL2 writes every element, then asks to replicate verbatim. A command running past
    // busy-reply-threshold is yielded, which sends its writes so far ahead: it then replicates
    // its effects, and answers as usual (an error would tell a client to retry done writes).
    let master = hello_server();
    let replica = hello_replica(&master);
    let mut c = master.client();
    let mut push = vec!["RPUSH".to_owned(), "big".to_owned()];
    push.extend((0..200_000).map(|i| i.to_string()));
    let push: Vec<&str> = push.iter().map(String::as_str).collect();
    c.cmd(&push);
    c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "1"]);
    let sum: i64 = (1..=200_000).sum();
    assert_eq!(c.cmd(&["HELLO.REPL2", "big"]).int(), sum);
    c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "5000"]);
    assert_eq!(c.cmd(&["LINDEX", "big", "0"]).text(), "1");
    master.assert_same_dataset(&replica);
    // It did yield: the replica got the effects, not the command to run again.
    let stats = replica.client().cmd(&["INFO", "commandstats"]).text();
    assert!(!stats.contains("cmdstat_wasm.invoke-write"), "{stats}");
}
