//! Test support: a real `redis-server` with the host loaded, and a raw RESP client.
//!
//! - [`Server`] starts `redis-server` on a free loopback port in its own temporary directory,
//!   with the host module loaded, and kills it when dropped.
//! - [`Client`] speaks RESP2/RESP3 over a plain socket and also exposes the raw reply bytes, so
//!   tests can check exact encodings and that a connection stays usable after errors.
//! - [`guests`] holds the paths of the guests the build compiled from source; [`hand_made`]
//!   makes the components no toolchain emits.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod hand_made;

/// Paths of the guest `.wasm` files built from source by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The context switches (voluntary and not) of one thread so far: `task` is its
/// `/proc/<pid>/task/<tid>` directory.
pub fn context_switches(task: &Path) -> u64 {
    std::fs::read_to_string(task.join("status"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("ctxt_switches"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The directory holding the host and the native twin: `REDIS_WASM_MODULE_DIR` when set (the
/// scripts set it to `scripts/build-host.sh`'s output, `target/host`), else cargo's output
/// directory of the tests' own profile.
fn library_dir() -> PathBuf {
    std::env::var_os("REDIS_WASM_MODULE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("REDIS_WASM_HOST_DIR")))
}

/// The host module: `scripts/build-host.sh`'s, or `cargo build -p redis-wasm`'s in the same
/// profile as the tests ([`library_dir`]).
pub fn host_library() -> PathBuf {
    let path = library_dir().join("libredis_wasm.so");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, or build the host (scripts/build-host.sh) and point \
         the tests at it (REDIS_WASM_MODULE_DIR=$PWD/target/host cargo test --release ...)",
        path.display()
    );
    path
}

/// The native comparison module (`benchmarks/native`), built like the host.
pub fn native_library() -> PathBuf {
    let path = library_dir().join("libnative_baseline.so");
    assert!(
        path.exists(),
        "{} is missing: build it with the host (scripts/build-host.sh; REDIS_WASM_MODULE_DIR=$PWD/target/host)",
        path.display()
    );
    path
}

/// A RESP reply.
#[derive(Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    /// RESP3 map, in wire order.
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    /// RESP3 double, as sent.
    Double(String),
    Bool(bool),
    BigNumber(String),
    /// RESP3 verbatim string: format and text.
    Verbatim(String, Vec<u8>),
    Push(Vec<Reply>),
}

impl Reply {
    /// The reply as text when it is a status, bulk, error or verbatim string.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) | Reply::BigNumber(s) | Reply::Double(s) => {
                s.clone()
            }
            Reply::Bulk(b) | Reply::Verbatim(_, b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    pub fn array(&self) -> &[Reply] {
        match self {
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The error text, panicking if the reply is not an error.
    pub fn error(&self) -> &str {
        match self {
            Reply::Error(e) => e,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    /// A field of a map reply (RESP3 map, or a RESP2 flat key/value array).
    pub fn field(&self, key: &str) -> &Reply {
        let found = match self {
            Reply::Map(pairs) => pairs.iter().find(|(k, _)| k.text() == key).map(|(_, v)| v),
            Reply::Array(items) => items
                .chunks(2)
                .find(|kv| kv[0].text() == key)
                .map(|kv| &kv[1]),
            _ => None,
        };
        found.unwrap_or_else(|| panic!("no field {key:?} in {self:?}"))
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Nil => write!(f, "nil"),
            Reply::Array(items) => f.debug_list().entries(items).finish(),
            Reply::Map(pairs) => f
                .debug_map()
                .entries(pairs.iter().map(|(k, v)| (k, v)))
                .finish(),
            Reply::Set(items) => write!(f, "~{items:?}"),
            Reply::Double(d) => write!(f, ",{d}"),
            Reply::Bool(b) => write!(f, "#{b}"),
            Reply::BigNumber(n) => write!(f, "({n}"),
            Reply::Verbatim(format, b) => write!(f, "={format}:{:?}", String::from_utf8_lossy(b)),
            Reply::Push(items) => write!(f, ">{items:?}"),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A connection to the test server.
pub struct Client {
    reader: BufReader<TcpStream>,
    /// Bytes of the replies read so far, when recording.
    recording: Option<Vec<u8>>,
}

impl Client {
    /// Whether a server answers PING on `port` (never panics).
    pub fn ping(port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
            recording: None,
        })
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args)
    }

    /// Sends a binary command and reads its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Reply {
        self.send(args);
        self.read()
    }

    /// A numeric field of `INFO <section>` (e.g. `wasm_memory_bytes` in `wasm`).
    pub fn info_u64(&mut self, section: &str, field: &str) -> u64 {
        let info = self.cmd(&["INFO", section]).text();
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no numeric {field} in INFO {section}:\n{info}"))
    }

    /// Sends a command and returns the exact bytes of its reply.
    pub fn cmd_raw(&mut self, args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args);
        self.recording = Some(Vec::new());
        let _ = self.read();
        self.recording.take().unwrap_or_default()
    }

    /// Sends a command without reading the reply (for pipelining).
    pub fn send(&mut self, args: &[&[u8]]) {
        self.reader
            .get_mut()
            .write_all(&encode(args))
            .expect("write to redis");
    }

    /// Sends commands in one write, so that Redis reads them together and runs them in the same
    /// event-loop turn, without reading the replies.
    pub fn send_together(&mut self, commands: &[&[&[u8]]]) {
        let bytes: Vec<u8> = commands.iter().flat_map(|args| encode(args)).collect();
        self.reader
            .get_mut()
            .write_all(&bytes)
            .expect("write to redis");
    }

    /// Switches the connection to RESP3.
    pub fn hello3(&mut self) {
        let reply = self.cmd(&["HELLO", "3"]);
        assert!(!reply.is_error(), "HELLO 3 failed: {reply:?}");
    }

    fn line(&mut self) -> String {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("read from redis");
        assert!(
            line.ends_with(b"\r\n"),
            "connection closed or malformed line: {:?}",
            String::from_utf8_lossy(&line)
        );
        if let Some(rec) = &mut self.recording {
            rec.extend_from_slice(&line);
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).expect("header lines are text")
    }

    fn exact(&mut self, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len + 2];
        self.reader.read_exact(&mut data).expect("read from redis");
        assert_eq!(&data[len..], b"\r\n", "bulk not terminated by CRLF");
        if let Some(rec) = &mut self.recording {
            rec.extend_from_slice(&data);
        }
        data.truncate(len);
        data
    }

    fn items(&mut self, n: &str) -> Vec<Reply> {
        let n: usize = n.parse().expect("aggregate length");
        (0..n).map(|_| self.read()).collect()
    }

    /// Reads the RDB payload that follows `SYNC` (`$<len>\r\n` and the bytes, no CRLF), after
    /// the master's keepalive newlines.
    fn read_sync_payload(&mut self) {
        let mut line = Vec::new();
        loop {
            line.clear();
            self.reader
                .read_until(b'\n', &mut line)
                .expect("read from redis");
            if line.starts_with(b"$") {
                break;
            }
            assert!(
                line.trim_ascii().is_empty(),
                "unexpected SYNC reply {:?}",
                String::from_utf8_lossy(&line)
            );
        }
        let len: usize = String::from_utf8_lossy(&line[1..])
            .trim()
            .parse()
            .expect("RDB length");
        let mut rdb = vec![0u8; len];
        self.reader.read_exact(&mut rdb).expect("read the RDB");
    }

    /// Reads one reply.
    pub fn read(&mut self) -> Reply {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().expect("integer")),
            "$" if rest == "-1" => Reply::Nil,
            "$" => Reply::Bulk(self.exact(rest.parse().expect("bulk length"))),
            "*" if rest == "-1" => Reply::Nil,
            "*" => Reply::Array(self.items(rest)),
            "_" => Reply::Nil,
            "," => Reply::Double(rest.to_owned()),
            "#" => Reply::Bool(rest == "t"),
            "(" => Reply::BigNumber(rest.to_owned()),
            "!" => Reply::Error(
                String::from_utf8_lossy(&self.exact(rest.parse().expect("length"))).into_owned(),
            ),
            "=" => {
                let data = self.exact(rest.parse().expect("verbatim length"));
                let (format, text) = data.split_at(4);
                Reply::Verbatim(
                    String::from_utf8_lossy(&format[..3]).into_owned(),
                    text.to_vec(),
                )
            }
            "%" => {
                let n: usize = rest.parse().expect("map length");
                Reply::Map((0..n).map(|_| (self.read(), self.read())).collect())
            }
            "~" => Reply::Set(self.items(rest)),
            ">" => Reply::Push(self.items(rest)),
            other => panic!("unknown RESP type {other:?} in line {line:?}"),
        }
    }
}

/// Reads the replication stream a replica of `server` receives: attaches with `SYNC` and
/// returns the commands propagated after that.
pub struct ReplicationTap {
    client: Client,
    marker: u32,
}

impl ReplicationTap {
    pub fn attach(server: &Server) -> ReplicationTap {
        let mut client = server.client();
        client.send(&[b"SYNC"]);
        client.read_sync_payload();
        ReplicationTap { client, marker: 0 }
    }

    /// Every command propagated since the last call (PINGs left out), as text. Writes a marker
    /// key on `server` and reads until it arrives.
    pub fn commands(&mut self, server: &Server) -> Vec<Vec<String>> {
        self.marker += 1;
        let marker = format!("tap-marker-{}", self.marker);
        server.client().cmd(&["SET", "__tap__", &marker]);
        let mut out = Vec::new();
        loop {
            let command: Vec<String> = self.client.read().array().iter().map(Reply::text).collect();
            if command
                .first()
                .is_some_and(|c| c.eq_ignore_ascii_case("ping"))
            {
                continue;
            }
            if command.len() == 3 && command[1] == "__tap__" && command[2] == marker {
                return out;
            }
            out.push(command);
        }
    }
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A `redis-server` with the host loaded, killed and cleaned up on drop.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
    options: ServerOptions,
}

/// Options for [`Server::start_with`].
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Arguments after the host path on the `--loadmodule` line.
    pub module_args: Vec<String>,
    /// Extra `--name value` server options.
    pub config: Vec<(String, String)>,
    /// Start without loading the host.
    pub without_host: bool,
    /// A program (and its arguments) to run `redis-server` under, such as valgrind; empty to
    /// run it directly.
    pub run_under: Vec<String>,
}

/// A free loopback port. Ports come from a per-process sequence, so two tests of this process
/// never get the same one, and are checked by binding them (and the cluster bus port, +10000).
fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 35_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 7919) % COUNT;
    loop {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(port).expect("below 55000");
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

impl Server {
    /// A server with the host loaded and no guests.
    pub fn start() -> Server {
        Server::start_with(ServerOptions::default())
    }

    /// A server with the host loaded with these module arguments.
    pub fn with_module_args(args: &[&str]) -> Server {
        Server::start_with(ServerOptions {
            module_args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    pub fn start_with(options: ServerOptions) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            match Server::try_start(&options) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start; its log:\n{last_log}");
    }

    /// Starts a server, or returns its log if it exited.
    fn try_start(options: &ServerOptions) -> Result<Server, String> {
        let port = free_port();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "redis-wasm-test-{}-{id}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create server dir");
        Server::spawn(options, port, dir)
    }

    /// Stops the server (without saving) and starts it again in the same directory and port,
    /// with `options` (e.g. to load its data from the RDB or AOF). Returns the log if it fails.
    pub fn restart_with(&mut self, options: ServerOptions) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let restarted = Server::spawn(&options, self.port, self.dir.clone())?;
        let old = std::mem::replace(self, restarted);
        // `old` is the stopped process: dropping it would remove the directory.
        std::mem::forget(old);
        Ok(())
    }

    /// Restarts with the same options.
    pub fn restart(&mut self) -> Result<(), String> {
        self.restart_with(self.options.clone())
    }

    fn spawn(options: &ServerOptions, port: u16, dir: PathBuf) -> Result<Server, String> {
        let mut command = match options.run_under.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg("redis-server");
                command
            }
            None => Command::new("redis-server"),
        };
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--enable-debug-command",
                "yes",
                "--enable-module-command",
                "yes",
            ])
            .args(["--repl-diskless-sync-delay", "0"])
            // `restart` kills the process, and with `everysec` Redis may postpone writing the AOF
            // for up to two seconds while an earlier fsync is slow: tests that enable the AOF
            // must find every acknowledged write in it.
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        for (name, value) in &options.config {
            command.arg(format!("--{name}")).arg(value);
        }
        if !options.without_host {
            command
                .arg("--loadmodule")
                .arg(host_library())
                .args(&options.module_args);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-server (is it installed?)");
        let mut server = Server {
            port,
            dir,
            child,
            options: options.clone(),
        };
        // Under valgrind, starting the host's engine alone takes seconds.
        let patience = if options.run_under.is_empty() {
            20
        } else {
            300
        };
        let deadline = Instant::now() + Duration::from_secs(patience);
        loop {
            if let Ok(Some(_)) = server.child.try_wait() {
                return Err(server.log());
            }
            if Client::ping(port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for redis-server\n{}",
                    server.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Makes this server a replica of `master` and waits until it is in sync.
    pub fn replicate_from(&self, master: &Server) {
        let mut c = self.client();
        assert_eq!(
            c.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]),
            Reply::Status("OK".into())
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c
            .cmd(&["INFO", "replication"])
            .text()
            .contains("master_link_status:up")
        {
            assert!(
                Instant::now() < deadline,
                "replica did not connect; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every replica acknowledged everything written so far.
    pub fn wait_replicas(&self) {
        let acked = self.client().cmd(&["WAIT", "1", "10000"]).int();
        assert!(acked >= 1, "no replica acknowledged the writes");
    }

    /// Waits until this master and `replica` hold the same dataset (`DEBUG DIGEST`), and returns
    /// the digest. Panics with both logs if they do not converge.
    pub fn assert_same_dataset(&self, replica: &Server) -> String {
        self.wait_replicas();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (a, b) = (self.digest(), replica.digest());
            if a == b {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "master digest {a} != replica digest {b}\nmaster log:\n{}\nreplica log:\n{}",
                self.log(),
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes every key whose expire has passed, as a `SCAN` of each database does (and
    /// replicates the deletions), so that a digest does not depend on when Redis's active
    /// expiry reaches them: one taken before the cycle deleted a key would not match the
    /// dataset replayed from the AOF that records the deletion.
    pub fn reap_expired_keys(&self) {
        let mut c = self.client();
        let databases = c.cmd(&["CONFIG", "GET", "databases"]).array()[1].text();
        for db in 0..databases.parse::<u32>().expect("a number of databases") {
            c.cmd(&["SELECT", &db.to_string()]);
            let mut cursor = "0".to_owned();
            loop {
                let reply = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]);
                cursor = reply.array()[0].text();
                if cursor == "0" {
                    break;
                }
            }
        }
    }

    /// `DEBUG DIGEST` of the dataset.
    pub fn digest(&self) -> String {
        self.client().cmd(&["DEBUG", "DIGEST"]).text()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to the test server")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the server process to exit (for tests of startup failures).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // PGO training (scripts/build-host.sh) runs the tests against an instrumented host,
        // which writes its counts when redis-server exits normally, not when it is killed.
        if std::env::var_os("REDIS_WASM_GRACEFUL_STOP").is_some() && self.is_running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            self.wait_exit(Duration::from_secs(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `redis-server` with the given arguments and expects it to fail at startup; returns its
/// log. Used to check module-argument errors.
pub fn start_expecting_failure(module_args: &[&str]) -> String {
    let options = ServerOptions {
        module_args: module_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    match Server::try_start(&options) {
        Ok(_server) => {
            panic!("redis-server started although it should have refused the module arguments")
        }
        Err(log) => log,
    }
}
