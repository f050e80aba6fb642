//! A real Redis Cluster on loopback: three masters with a replica each.

use std::process::Command;
use std::time::{Duration, Instant};

use redis_wasm_tests::{Client, Reply, Server, ServerOptions, guests};

fn cluster_node() -> Server {
    Server::start_with(ServerOptions {
        config: vec![
            ("cluster-enabled".into(), "yes".into()),
            ("cluster-node-timeout".into(), "1000".into()),
            ("cluster-replica-validity-factor".into(), "0".into()),
        ],
        ..Default::default()
    })
}

fn redis_cli(args: &[String]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "redis-cli {args:?} failed:\n{text}");
    text
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster_ok(port: u16) -> bool {
    Client::connect(port)
        .map(|mut c| {
            c.cmd(&["CLUSTER", "INFO"])
                .text()
                .contains("cluster_state:ok")
        })
        .unwrap_or(false)
}

/// Sends a command, following MOVED redirections like a cluster client. Returns the reply and
/// whether a redirection happened.
fn routed(start: u16, args: &[&str]) -> (Reply, bool) {
    let mut port = start;
    let mut moved = false;
    for _ in 0..5 {
        let reply = Client::connect(port).unwrap().cmd(args);
        match &reply {
            Reply::Error(e) if e.starts_with("MOVED") => {
                port = e.rsplit(':').next().unwrap().parse().unwrap();
                moved = true;
            }
            _ => return (reply, moved),
        }
    }
    panic!("too many redirections for {args:?}");
}

fn guest_names(port: u16) -> Vec<String> {
    Client::connect(port)
        .unwrap()
        .cmd(&["WASM.LIST"])
        .array()
        .iter()
        .map(|g| g.field("name").text())
        .collect()
}

#[test]
fn guests_on_a_cluster_with_replicas_and_failover() {
    let nodes: Vec<Server> = (0..6).map(|_| cluster_node()).collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
    create.extend(addresses.iter().cloned());
    create.extend([
        "--cluster-replicas".into(),
        "1".into(),
        "--cluster-yes".into(),
    ]);
    redis_cli(&create);
    for node in &nodes {
        wait_until("the cluster to be ok", || cluster_ok(node.port));
    }
    let masters: Vec<u16> = nodes
        .iter()
        .filter(|n| Client::connect(n.port).unwrap().cmd(&["ROLE"]).array()[0].text() == "master")
        .map(|n| n.port)
        .collect();
    assert_eq!(masters.len(), 3);

    // The documented procedure: load on every master; replicas get the guest from them.
    for guest in [guests::HELLO, guests::API_GUEST] {
        let out = redis_cli(&[
            "--cluster".into(),
            "call".into(),
            addresses[0].clone(),
            "WASM.LOAD".into(),
            guest.into(),
            "--cluster-only-masters".into(),
        ]);
        assert!(!out.contains("ERR"), "{out}");
    }
    for node in &nodes {
        wait_until("every node to have the guests", || {
            guest_names(node.port) == ["api", "hello"]
        });
    }

    // Guest commands are routed by their declared keys.
    let mut redirected = 0;
    for i in 0..30 {
        let key = format!("key{i}");
        let (reply, moved) = routed(masters[0], &["HELLO.PUSH.NATIVE", &key, "v"]);
        assert_eq!(reply, Reply::Int(1), "{key}");
        redirected += usize::from(moved);
    }
    assert!(
        redirected > 0,
        "keys of other slots must be redirected with MOVED"
    );
    let (cross, _) = routed(masters[0], &["HELLO.LIST.SPLICE", "{a}src", "{b}dst", "1"]);
    assert!(cross.error().starts_with("CROSSSLOT"), "{cross:?}");
    routed(masters[0], &["RPUSH", "{a}src", "x"]);
    let (same_slot, _) = routed(masters[0], &["HELLO.LIST.SPLICE", "{a}src", "{a}dst", "1"]);
    assert_eq!(same_slot, Reply::Int(0));

    // A guest calling Redis for a key served by another node gets a distinct error.
    let other = (0..100).map(|i| format!("k{i}")).find(|k| {
        let mut c = Client::connect(masters[0]).unwrap();
        c.cmd(&["GET", k]).is_error()
    });
    let other = other.expect("a key of another node");
    let reply = Client::connect(masters[0])
        .unwrap()
        .cmd(&["API.CALL", "2", "GET", &other]);
    assert!(
        reply.error().starts_with("CALLERR non-local-key"),
        "{reply:?}"
    );
    // Opening it directly is refused too, and a keyless command sees no key (such a key would
    // be written here while its owner holds another value).
    let mut first = Client::connect(masters[0]).unwrap();
    assert_eq!(
        first.cmd(&["WASM.LOAD", guests::BASICS]),
        Reply::Bulk(b"basics".to_vec())
    );
    let poke = first.cmd(&["BASICS.POKE", &other]).text();
    assert!(poke.contains("is not in the hash slot"), "{poke}");
    let peek = first.cmd(&["BASICS.PEEK", &other]);
    assert_eq!(peek.array()[0], Reply::Int(0), "{peek:?}");
    let slot = first.cmd(&["CLUSTER", "KEYSLOT", &other]).int().to_string();
    assert_eq!(
        first.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot]),
        Reply::Int(0)
    );

    // A node added later, as a replica, gets the guests with its full sync.
    let late = cluster_node();
    let mut l = late.client();
    l.cmd(&["CLUSTER", "MEET", "127.0.0.1", &masters[1].to_string()]);
    let master_id = Client::connect(masters[1])
        .unwrap()
        .cmd(&["CLUSTER", "MYID"])
        .text();
    wait_until("the new node to know the master", || {
        l.cmd(&["CLUSTER", "NODES"]).text().contains(&master_id)
    });
    assert_eq!(
        l.cmd(&["CLUSTER", "REPLICATE", &master_id]),
        Reply::Status("OK".into())
    );
    wait_until("the new replica to get the guests", || {
        guest_names(late.port) == ["api", "hello"]
    });
    let master1 = nodes.iter().find(|n| n.port == masters[1]).unwrap();
    master1.assert_same_dataset(&late);
    let mut m1 = master1.client();
    let served_here = |c: &mut Client, key: &str| !c.cmd(&["GET", key]).is_error();
    let local = (0..200)
        .map(|i| format!("k{i}"))
        .find(|k| served_here(&mut m1, k))
        .expect("a key of masters[1]");
    let foreign = (0..200)
        .map(|i| format!("k{i}"))
        .find(|k| !served_here(&mut m1, k))
        .expect("a key of another node");
    // Redis keeps cluster bookkeeping for database 0 only: writing elsewhere would crash.
    let select = m1.cmd(&["API.SELECTWRITE", "1", &local, "x"]);
    assert!(
        format!("{select:?}").contains("SELECT is not allowed in cluster mode"),
        "{select:?}"
    );
    assert_eq!(m1.cmd(&["PING"]), Reply::Status("PONG".into()));
    // What the master refused for another node's slot (a call, a key) must not reach its
    // replica by a verbatim replication, whose replay skips those checks; nor may a guest
    // replicate a write of another node's key.
    m1.cmd(&["API.VERBATIMTRY", &local, &foreign]);
    let replicated = m1.cmd(&["API.REPLICATE", "SET", &foreign, "x"]);
    assert!(
        replicated.error().contains("is not in the hash slot"),
        "{replicated:?}"
    );
    master1.assert_same_dataset(&late);
    assert_eq!(late.client().cmd(&["DBSIZE"]), m1.cmd(&["DBSIZE"]));

    // Failover: the master of a guest-written key stops; its replica serves the command, data kept.
    let (reply, _) = routed(masters[2], &["HELLO.PUSH.NATIVE", "failover-key", "a"]);
    assert_eq!(reply, Reply::Int(1));
    let owner = nodes
        .iter()
        .find(|n| {
            masters.contains(&n.port)
                && !Client::connect(n.port)
                    .unwrap()
                    .cmd(&["LLEN", "failover-key"])
                    .is_error()
        })
        .unwrap()
        .port;
    Client::connect(owner).unwrap().cmd(&["WAIT", "1", "5000"]);
    let mut killer = Client::connect(owner).unwrap();
    killer.send(&[b"SHUTDOWN", b"NOSAVE"]);
    let survivor = nodes
        .iter()
        .map(|n| n.port)
        .find(|&p| p != owner && Client::ping(p))
        .unwrap();
    wait_until("a replica to take over", || {
        // Until the failover, redirections lead to the stopped node: treat that as "not yet".
        let attempt = std::panic::catch_unwind(|| {
            routed(survivor, &["HELLO.PUSH.NATIVE", "failover-key", "b"]).0
        });
        matches!(attempt, Ok(Reply::Int(2)))
    });
    let (list, _) = routed(survivor, &["LRANGE", "failover-key", "0", "-1"]);
    assert_eq!(
        list.array().iter().map(Reply::text).collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn loads_answer_truly_while_the_cluster_is_down() {
    // A lone node has no slots: its cluster is down, and Redis 7.0 answers every blocked client
    // -CLUSTERDOWN within 100 ms. A load that takes longer to compile must still answer what it
    // did (it compiles inline there), as a new node is given its guests before it takes slots.
    let node = cluster_node();
    let mut c = node.client();
    assert!(
        c.cmd(&["CLUSTER", "INFO"])
            .text()
            .contains("cluster_state:fail")
    );
    assert_eq!(
        c.cmd(&["WASM.LOAD", guests::BIG]),
        Reply::Bulk(b"big".to_vec())
    );
    let Reply::Bulk(payload) = c.cmd(&["WASM.DUMP"]) else {
        panic!("no dump")
    };
    assert_eq!(
        c.cmd_bytes(&[b"WASM.RESTORE", &payload, b"REPLACE"]),
        Reply::Status("OK".into())
    );
    assert_eq!(guest_names(node.port), ["big"]);
}

#[test]
fn a_load_whose_client_redis_told_clusterdown_is_dropped_even_if_the_cluster_recovers() {
    // A node serving every slot; a slot unassigned mid-compile makes its cluster fail, and
    // Redis answers the blocked loading client -CLUSTERDOWN. If the slot comes back before the
    // compile ends, the load must still not happen behind that answer.
    let node = cluster_node();
    let mut admin = node.client();
    admin.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    wait_until("the cluster is up", || cluster_ok(node.port));
    let mut loader = node.client();
    loader.send(&[b"WASM.LOAD", guests::BIG.as_bytes()]);
    // Compiling in the background, its client blocked.
    wait_until("the load is blocked", || {
        admin.info_u64("clients", "blocked_clients") == 1
    });
    assert_eq!(
        admin.cmd(&["CLUSTER", "DELSLOTS", "0"]),
        Reply::Status("OK".into())
    );
    let answer = loader.read();
    assert!(
        answer.is_error() && answer.error().starts_with("CLUSTERDOWN"),
        "{answer:?}\n{}",
        node.log()
    );
    admin.cmd(&["CLUSTER", "ADDSLOTS", "0"]);
    wait_until("the cluster is up again", || cluster_ok(node.port));
    wait_until("the compile ends", || {
        node.log().contains("a WASM.LOAD whose client left failed")
            || !guest_names(node.port).is_empty()
    });
    assert!(guest_names(node.port).is_empty(), "{}", node.log());
    assert!(
        node.log()
            .contains("Redis answered the client -CLUSTERDOWN; nothing was loaded"),
        "{}",
        node.log()
    );
    // With the cluster up, a load works.
    assert_eq!(
        loader.cmd(&["WASM.LOAD", guests::BIG]),
        Reply::Bulk(b"big".to_vec())
    );
}
