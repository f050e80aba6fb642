//! The host's own commands: `WASM.LOAD`, `WASM.UNLOAD`, `WASM.LIST`, `WASM.DUMP`,
//! `WASM.RESTORE`, `WASM.SETVALUE`, `WASM.KILL`, `WASM.DEBUG`, `WASM.HELP`.
//! Their syntax and replies are documented in docs/commands.md.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::ffi::{Args, Ctx, LogLevel, Waiting, catch, ctx_flags, log_host, shown};
use crate::guest::{Guest, InitTiming, Source};
use crate::reply::{Aggregate, ReplyBuffer, ReplyItem};
use crate::{loader, registry};

#[derive(Debug)]
/// What to load: the module (a server path or the bytes themselves) and its init arguments.
pub struct LoadRequest {
    pub module: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub replace: bool,
    /// The name the guest must declare (a saved guest): any other fails the load.
    pub saved_as: Option<String>,
    /// Replayed from the master, the AOF or an RDB: the master applied `wasm.max-module-size`
    /// when it accepted the module, and a replica must not refuse what its master holds.
    pub replayed: bool,
}

const MISSING_BEFORE_ARGS: &str = "missing the module: it (a path or its bytes) comes before ARGS; \
                                   with redis-cli -x its bytes come last (a module's bytes start \
                                   with \\0asm)";

/// Whether a module argument is the module's bytes rather than a path on the server: the wasm
/// magic number, or what no path holds (a NUL or other control byte, bytes that are not UTF-8,
/// an ELF header): `redis-cli -x` sending the wrong file gets told what the bytes are, not that
/// no such file exists.
fn is_module_bytes(token: &[u8]) -> bool {
    token.starts_with(b"\0asm")
        || token.starts_with(b"\x7fELF")
        || token.iter().any(|&b| b < 0x20 || b == 0x7f)
        || std::str::from_utf8(token).is_err()
}

impl LoadRequest {
    /// Parses `[REPLACE] <module> [REPLACE] [ARGS arg ...]` (everything after `ARGS` is an
    /// argument for the guest).
    pub fn parse<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> Result<LoadRequest, String> {
        let request = Self::parse_tokens(tokens)?;
        if request.args.len() > crate::registry::MAX_LOAD_ARGS {
            return Err(format!(
                "{} load arguments given, more than the {} a guest may have",
                request.args.len(),
                crate::registry::MAX_LOAD_ARGS
            ));
        }
        Ok(request)
    }

    fn parse_tokens<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> Result<LoadRequest, String> {
        let tokens: Vec<&[u8]> = tokens.collect();
        // `redis-cli -x` sends the module's bytes last: `[REPLACE] ARGS <arg> ... <bytes>`.
        if let Some((last, before)) = tokens.split_last()
            && is_module_bytes(last)
            && let Some(at) = before
                .iter()
                .position(|t| !t.eq_ignore_ascii_case(b"replace"))
            && before[at].eq_ignore_ascii_case(b"args")
        {
            return Ok(LoadRequest {
                module: last.to_vec(),
                args: before[at + 1..].iter().map(|a| a.to_vec()).collect(),
                replace: at > 0,
                saved_as: None,
                replayed: false,
            });
        }
        let mut tokens = tokens.into_iter();
        let mut replace = false;
        let mut module = None;
        let mut args = Vec::new();
        while let Some(token) = tokens.next() {
            if module.is_none() && token.eq_ignore_ascii_case(b"replace") {
                replace = true;
            } else if module.is_none()
                && token.eq_ignore_ascii_case(b"args")
                && tokens.as_slice().first().is_some_and(|next| {
                    !next.eq_ignore_ascii_case(b"args") && !next.eq_ignore_ascii_case(b"replace")
                })
            {
                // `WASM.LOAD ARGS a b`: the module was forgotten (`WASM.LOAD ARGS ARGS a` reads
                // a file named ARGS, when there is one).
                return Err(MISSING_BEFORE_ARGS.to_owned());
            } else if module.is_none() {
                module = Some(token.to_vec());
            } else if token.eq_ignore_ascii_case(b"replace") {
                replace = true;
            } else if token.eq_ignore_ascii_case(b"args") {
                args.extend(tokens.by_ref().map(<[u8]>::to_vec));
            } else {
                return Err(format!(
                    "unexpected argument '{}' (expected REPLACE or ARGS)",
                    shown(token)
                ));
            }
        }
        let module =
            module.ok_or("missing the module: a path on the server or the module's bytes")?;
        Ok(LoadRequest {
            module,
            args,
            replace,
            saved_as: None,
            replayed: false,
        })
    }

    /// Whether the module is given as a path on the server (see [`is_module_bytes`]).
    pub fn is_path(&self) -> bool {
        !is_module_bytes(&self.module)
    }

    /// Reads the module: bytes given inline (see [`is_module_bytes`]), or a file on the server.
    fn read(&self) -> Result<(Arc<[u8]>, Source), String> {
        if !self.is_path() {
            return Ok((self.module.as_slice().into(), Source::Bytes));
        }
        let path = String::from_utf8(self.module.clone())
            .map_err(|_| "the module path is not valid UTF-8".to_owned())?;
        let load_dir = check_load_dir(&path)?;
        let bytes = read_module_file(&path, load_dir.as_deref())?;
        Ok((bytes.into(), Source::Path(path)))
    }

    fn describe(&self) -> String {
        if !self.is_path() {
            format!("a module of {} bytes", self.module.len())
        } else {
            format!("'{}'", shown(&self.module))
        }
    }
}

/// Refuses paths outside `wasm.load-dir` (when set), before anything is opened; returns the
/// directory, resolved, for [`read_module_file`] to check the file it opens against (a link
/// swapped in between the two is caught there).
fn check_load_dir(path: &str) -> Result<Option<std::path::PathBuf>, String> {
    let dir = crate::config::LOAD_DIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if dir.is_empty() {
        return Ok(None);
    }
    let canonical = |p: &str| {
        std::fs::canonicalize(p).map_err(|e| {
            format!(
                "cannot read '{}': {}",
                shown(p.as_bytes()),
                crate::ffi::io_error_text(&e)
            )
        })
    };
    // The directory may have gone since it was set (or a failed CONFIG SET restored it
    // unchecked): say it is the setting that is wrong, not the module.
    let dir_path = canonical(&dir).map_err(|why| format!("wasm.load-dir is unusable: {why}"))?;
    let file = match canonical(path) {
        Ok(file) => file,
        // Only a path inside the directory learns why it cannot be read: the others are
        // refused alike, whether or not they exist.
        Err(why) if lexically_inside(path, &dir_path) => return Err(why),
        Err(_) => return Err(outside_load_dir(path, &dir_path)),
    };
    if file.starts_with(&dir_path) {
        Ok(Some(dir_path))
    } else {
        Err(outside_load_dir(path, &dir_path))
    }
}

fn outside_load_dir(path: &str, dir: &std::path::Path) -> String {
    format!(
        "'{}' is outside wasm.load-dir ('{}'); send the module's bytes instead",
        shown(path.as_bytes()),
        dir.display()
    )
}

/// Whether `path` (relative to the server's working directory) names something under `dir`,
/// reading its `..` and `.` without the file system.
fn lexically_inside(path: &str, dir: &std::path::Path) -> bool {
    use std::path::{Component, PathBuf};
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| PathBuf::from(path));
    let mut normal = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal.starts_with(dir)
}

/// Where a load comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client's `WASM.LOAD` (or a command replayed from the master or the AOF): a slow init
    /// may let other clients in.
    Command,
    /// The module's arguments, at startup.
    ModuleArgs,
    /// The RDB: there is no client to call Redis with, and the guest's command names were
    /// checked against Redis's when it was first loaded.
    Rdb,
}

/// A module read and compiled, ready for its init (which needs the main thread).
pub struct Prepared {
    described: String,
    wasm: Arc<[u8]>,
    source: Source,
    program: crate::guest::Program,
    args: Vec<Vec<u8>>,
    replace: bool,
    saved_as: Option<String>,
}

/// Reads and compiles a module: the slow part of a load, safe on any thread.
pub fn prepare(request: LoadRequest) -> Result<Prepared, String> {
    let described = request.describe();
    let fail = |why: String| format!("cannot load {described}: {why}");
    let (wasm, source) = request.read().map_err(fail)?;
    let program = loader::compile(&wasm, request.replayed).map_err(fail)?;
    Ok(Prepared {
        described,
        wasm,
        source,
        program,
        args: request.args,
        replace: request.replace,
        saved_as: request.saved_as,
    })
}

/// Runs a prepared guest's init and registers its commands; on error nothing of it stays
/// registered. `may_yield`: a slow init may let other clients in (only a client's own command
/// can: a blocked client's reply callback has no client Redis would protect meanwhile).
pub fn finish(
    ctx: Ctx,
    prepared: Prepared,
    origin: Origin,
    may_yield: bool,
) -> Result<Arc<Guest>, String> {
    let replace = prepared.replace;
    let guest = start(ctx, prepared, origin, may_yield)?;
    registry::commit(ctx, guest.clone(), replace)
        .map_err(|why| format!("cannot load guest '{}': {why}", guest.info.name))?;
    log_loaded(ctx, &guest);
    Ok(guest)
}

pub fn log_loaded(ctx: Ctx, guest: &Guest) {
    ctx.log(
        LogLevel::Notice,
        &format!(
            "loaded guest '{}' version {} with {} command(s)",
            guest.info.name,
            guest.info.version,
            guest.commands.len()
        ),
    );
}

/// Runs a prepared guest's init and checks its commands against Redis's: a guest ready to be
/// published (`registry::commit`), which nothing sees yet.
pub fn start(
    ctx: Ctx,
    prepared: Prepared,
    origin: Origin,
    may_yield: bool,
) -> Result<Arc<Guest>, String> {
    let Prepared {
        described,
        wasm,
        source,
        program,
        args,
        replace: _,
        saved_as,
    } = prepared;
    let timing = match origin {
        Origin::ModuleArgs => InitTiming::Alone,
        _ => InitTiming::yielding_if(may_yield, crate::guest::ENDING_A_LOAD),
    };
    let guest = Guest::start(program, Some(ctx), timing, wasm, source, args)
        .map_err(|why| format!("cannot load {described}: {why}"))?;
    let name = guest.info.name.clone();
    if let Some(saved) = saved_as.filter(|saved| *saved != name) {
        return Err(format!(
            "the module saved as guest '{saved}' now declares the name '{name}'"
        ));
    }
    let fail = |why: String| format!("cannot load guest '{name}': {why}");
    let cluster = ctx.flags() & ctx_flags::CLUSTER != 0;
    for spec in &guest.commands {
        if cluster && spec.flags.no_cluster {
            return Err(fail(format!(
                "command '{}' is flagged no-cluster and cluster mode is on",
                spec.name
            )));
        }
        // A guest command is not a Redis command (the filter routes it), so this finds only
        // Redis's and other modules' commands.
        if origin != Origin::Rdb
            && crate::ffi::command_line(&spec.name, &[]) != crate::ffi::CommandLine::Unknown
        {
            return Err(fail(format!(
                "command '{}' collides with a Redis command",
                spec.name
            )));
        }
    }
    Ok(Arc::new(guest))
}

/// Reads a module file: only a regular file, and no more than one byte past
/// `wasm.max-module-size` (enough for the size check to refuse it), so that a path such as
/// `/dev/zero` or a FIFO cannot exhaust memory or hang the load.
fn read_module_file(path: &str, load_dir: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // `WASM.LOAD ARGS a b` forgot the module (a file named ARGS is still read when there is one).
    let hint = if path.eq_ignore_ascii_case("args") {
        " (the module, a path or its bytes, comes before ARGS; with redis-cli -x its bytes come last)"
    } else {
        ""
    };
    let cannot = |e: std::io::Error| {
        format!(
            "cannot read '{}': {}{hint}",
            shown(path.as_bytes()),
            crate::ffi::io_error_text(&e)
        )
    };
    let not_regular = || {
        format!(
            "cannot read '{}': not a regular file",
            shown(path.as_bytes())
        )
    };
    // Refused before it is opened: opening a device can do something of its own (a terminal, a
    // tape, a watchdog). The opened file is checked again below, in case the path changed.
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(not_regular());
    }
    // Non-blocking, so that opening a FIFO swapped in does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    // The file actually opened, as the kernel resolved it: a link changed since
    // `check_load_dir` looked cannot lead outside the directory. (Without /proc, the check
    // made before opening stands alone.)
    if let Some(dir) = load_dir
        && let Ok(opened) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        && !opened.starts_with(dir)
    {
        return Err(outside_load_dir(path, dir));
    }
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    // The file's own size in the message (reading stops one byte past the limit).
    loader::check_size(metadata.len())?;
    let limit = crate::config::get_usize(&crate::config::MAX_MODULE_SIZE);
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1) as u64)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    Ok(bytes)
}

/// Loads a guest on this thread (compiling included).
pub fn load(ctx: Ctx, request: LoadRequest, origin: Origin) -> Result<Arc<Guest>, String> {
    let may_yield = origin == Origin::Command && crate::busy::may_yield_in(ctx.flags());
    finish(ctx, prepare(request)?, origin, may_yield)
}

/// Background compiles running and waiting now.
static COMPILES: std::sync::Mutex<CompileCounts> = std::sync::Mutex::new(CompileCounts {
    running: 0,
    waiting: 0,
});
static COMPILE_DONE: std::sync::Condvar = std::sync::Condvar::new();

#[derive(Clone, Copy)]
pub struct CompileCounts {
    pub running: usize,
    pub waiting: usize,
}

/// Background compiles now (for INFO).
pub fn compile_counts() -> CompileCounts {
    *locked_compiles()
}

fn locked_compiles() -> std::sync::MutexGuard<'static, CompileCounts> {
    COMPILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A background compile's turn among at most `wasm.max-compiles`; the next one's on drop.
struct CompileTurn;

/// Background compiles that may wait for their turn: each holds a thread and its module's
/// bytes meanwhile.
const MAX_WAITING_COMPILES: usize = 64;

/// A background compile queued for its turn (see [`CompileTurn`]).
struct QueuedCompile;

impl QueuedCompile {
    /// Queues a compile, unless [`MAX_WAITING_COMPILES`] already wait.
    fn join() -> Result<QueuedCompile, String> {
        let mut counts = locked_compiles();
        if counts.waiting >= MAX_WAITING_COMPILES {
            return Err(format!(
                "{MAX_WAITING_COMPILES} loads or restores are already waiting to compile \
                 (wasm.max-compiles at once); retry once they are done"
            ));
        }
        counts.waiting += 1;
        Ok(QueuedCompile)
    }
}

impl Drop for QueuedCompile {
    fn drop(&mut self) {
        let mut counts = locked_compiles();
        counts.waiting -= 1;
    }
}

impl CompileTurn {
    /// Waits for a turn to compile: leaves the queue for the running ones.
    fn wait(queued: QueuedCompile) -> CompileTurn {
        std::mem::forget(queued);
        let mut counts = locked_compiles();
        loop {
            let limit = crate::config::get_usize(&crate::config::MAX_COMPILES).max(1);
            if counts.running < limit {
                break;
            }
            // Timed, so that a raised limit is seen without another compile ending.
            counts = COMPILE_DONE
                .wait_timeout(counts, std::time::Duration::from_millis(100))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        counts.waiting -= 1;
        counts.running += 1;
        CompileTurn
    }
}

impl Drop for CompileTurn {
    fn drop(&mut self) {
        let mut counts = locked_compiles();
        counts.running -= 1;
        COMPILE_DONE.notify_one();
    }
}

/// On Redis 7.0, which gives module commands no ACL categories (`-@scripting`, `-@dangerous`
/// would not deny them), host command `name` is refused to a caller whose user may not run
/// `command args`, the Redis command with the categories it would have (`FUNCTION LOAD x` for
/// WASM.LOAD). The caller is the client, or for a script's or a guest's call, the user they run
/// for; what the master or the AOF replays is not checked.
fn refused_as_stand_in(ctx: Ctx, name: &str, command: &str, args: &[&[u8]]) -> Option<String> {
    // Replayed from the master or the AOF: Redis checks nothing there either.
    if crate::ffi::has_command_categories() || ctx_flags::replayed(ctx.flags()) {
        return None;
    }
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
    match crate::scope::caller_may_run(ctx, name, command, &args) {
        false => Some(format!(
            "NOPERM this user has no permissions to run the '{name}' command (Redis 7.0 gives \
             module commands no ACL categories: it needs the permissions of '{}')",
            match args.first() {
                Some(sub) if command == "FUNCTION" => format!(
                    "function {}",
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                ),
                _ => command.to_ascii_lowercase(),
            }
        )),
        true => None,
    }
}

/// A load by path reads a file on the server, as `MODULE LOAD` does: without `wasm.load-dir`
/// (where an administrator chose the files), the caller needs `MODULE LOAD`'s permissions too
/// (`@admin @dangerous`), on every Redis version; otherwise a user allowed to load guests could
/// learn which files exist and what they start with.
fn refused_path(ctx: Ctx, request: &LoadRequest) -> Option<String> {
    let load_dir_set = !crate::config::LOAD_DIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_empty();
    if !request.is_path() || request.replayed || load_dir_set {
        return None;
    }
    let line = [b"LOAD".to_vec(), b"x".to_vec()];
    (!crate::scope::caller_may_run(ctx, "wasm.load", "MODULE", &line)).then(|| {
        "NOPERM this user has no permissions to load a guest by path: reading a file on the \
         server needs the permissions of 'module load' too, unless wasm.load-dir is set (or \
         send the module's bytes)"
            .to_owned()
    })
}

/// `WASM.LOAD [REPLACE] <path | bytes> [ARGS arg ...]` → the guest's name.
pub fn wasm_load(ctx: Ctx, args: Args<'_>) {
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.load", "FUNCTION", &[b"LOAD", b"x"]) {
        return ctx.reply_error(&refusal);
    }
    let mut request = match LoadRequest::parse(args.iter().skip(1)) {
        Ok(request) => request,
        Err(why) => return ctx.reply_error(&format!("ERR {why}")),
    };
    request.replayed = ctx_flags::replayed(ctx.flags());
    if let Some(refusal) = refused_path(ctx, &request) {
        return ctx.reply_error(&refusal);
    }
    // Compiling takes milliseconds to seconds: do it on another thread while the client waits
    // and others are served. Where the client cannot be blocked (MULTI, scripts, the master, the
    // AOF), compile here.
    match ctx.block() {
        Some(blocked) => compile_in_background(
            blocked,
            move || prepare(request),
            |ctx, waiting, prepared: Result<Prepared, String>| {
                let started = std::time::Instant::now();
                let loaded = prepared
                    .and_then(|p| may_publish(ctx, waiting).map(|()| p))
                    .and_then(|p| finish(ctx, p, Origin::Command, false));
                if waiting != Waiting::Yes
                    && let Err(why) = &loaded
                {
                    // Nobody gets the error: the log does.
                    log_host(
                        LogLevel::Warning,
                        &format!("a WASM.LOAD whose client left failed: {why}"),
                    );
                }
                reply_load(ctx, loaded);
                log_host(
                    LogLevel::Verbose,
                    &format!(
                        "a compiled guest took {} µs to start on the main thread",
                        started.elapsed().as_micros()
                    ),
                );
            },
        ),
        None => reply_load(ctx, load(ctx, request, Origin::Command)),
    }
}

/// Compiles on another thread (`compile`, at most `wasm.max-compiles` at once) for a client
/// blocked meanwhile, then, back on the main thread, hands the result to `then` (with whether
/// the client still waits).
fn compile_in_background<T: Send + 'static>(
    blocked: crate::ffi::Blocked,
    compile: impl FnOnce() -> Result<T, String> + Send + 'static,
    then: impl FnOnce(Ctx, Waiting, Result<T, String>) + Send + 'static,
) {
    let queued = match QueuedCompile::join() {
        Ok(queued) => queued,
        Err(why) => {
            return blocked.resume(Box::new(move |ctx, waiting| then(ctx, waiting, Err(why))));
        }
    };
    let spawned = std::thread::Builder::new()
        .name("wasm-compile".into())
        .spawn(move || {
            crate::ffi::lower_thread_priority();
            // A compile takes tens of times the module's size in memory: a few at once.
            let turn = CompileTurn::wait(queued);
            let compiled = catch("compiling a guest", compile).unwrap_or_else(|| {
                Err("internal error in redis-wasm while compiling (see the server log)".to_owned())
            });
            drop(turn);
            blocked.resume(Box::new(move |ctx, waiting| then(ctx, waiting, compiled)));
        });
    if let Err(e) = spawned {
        log_host(
            LogLevel::Warning,
            &format!("cannot start a compile thread: {e}"),
        );
    }
}

/// Whether guests compiled in the background may be published now, on the main thread.
fn may_publish(ctx: Ctx, waiting: Waiting) -> Result<(), String> {
    // Its client left: the load is still made (Redis received it), unless this server became a
    // replica meanwhile (`REPLICAOF` unblocks every client): a replica's guests are its
    // master's.
    if waiting == Waiting::No && ctx.flags() & ctx_flags::SLAVE != 0 {
        return Err("the server became a replica while compiling; nothing was loaded".to_owned());
    }
    // Or the cluster went down meanwhile: Redis answered the client `-CLUSTERDOWN` (see
    // `Ctx::block`), and the load must not happen behind that answer.
    if waiting == Waiting::ToldClusterDown {
        return Err(
            "the cluster went down while compiling and Redis answered the client \
             -CLUSTERDOWN; nothing was loaded"
                .to_owned(),
        );
    }
    // Redis runs this even while clients are paused, when nothing may be propagated (and 7.0
    // asserts it): the load is refused then.
    if crate::ffi::writes_paused() {
        return Err(
            "clients were paused (CLIENT PAUSE or a failover) while compiling; \
                    nothing was loaded: retry once they are unpaused"
                .to_owned(),
        );
    }
    Ok(())
}

/// Replies to a `WASM.LOAD` and replicates it when it worked.
fn reply_load(ctx: Ctx, loaded: Result<Arc<Guest>, String>) {
    match loaded {
        Ok(guest) => {
            replicate_load(ctx, &guest);
            ctx.reply_string_buffer(guest.info.name.as_bytes());
        }
        Err(why) => ctx.reply_error(&format!("ERR {why}")),
    }
}

/// Propagates a load to replicas and the AOF as the module's bytes (never a server path), with
/// REPLACE so that replaying it over a dataset that already has the guest is harmless.
fn replicate_load(ctx: Ctx, guest: &Guest) {
    let mut args: Vec<&[u8]> = vec![b"REPLACE", &guest.wasm];
    if !guest.load_args.is_empty() {
        args.push(b"ARGS");
        args.extend(guest.load_args.iter().map(Vec::as_slice));
    }
    ctx.replicate("WASM.LOAD", &args, "");
}

/// `WASM.UNLOAD <name>` → OK.
pub fn wasm_unload(ctx: Ctx, args: Args<'_>) {
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.unload", "FUNCTION", &[b"DELETE", b"x"]) {
        return ctx.reply_error(&refusal);
    }
    if args.len() != 2 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.unload"));
    }
    let name = args.get(1).unwrap_or_default();
    match registry::remove(&String::from_utf8_lossy(name)) {
        Some(guest) => {
            ctx.log(
                LogLevel::Notice,
                &format!("unloaded guest '{}'", guest.info.name),
            );
            ctx.replicate("WASM.UNLOAD", &[guest.info.name.as_bytes()], "");
            ctx.reply_simple_ok();
        }
        None => ctx.reply_error(&format!("ERR no guest named '{}' is loaded", shown(name))),
    }
}

fn array(len: u32) -> ReplyItem {
    ReplyItem::Aggregate(Aggregate::Array, len)
}

fn map(pairs: u32) -> ReplyItem {
    ReplyItem::Aggregate(Aggregate::Map, pairs)
}

fn bulk(text: impl AsRef<[u8]>) -> ReplyItem {
    ReplyItem::Bulk(text.as_ref().to_vec())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn describe_guest(out: &mut ReplyBuffer, guest: &Guest) {
    out.push(map(10));
    out.push(bulk("name"));
    out.push(bulk(&guest.info.name));
    out.push(bulk("version"));
    out.push(ReplyItem::Integer(i64::from(guest.info.version)));
    out.push(bulk("api-version"));
    out.push(ReplyItem::Integer(i64::from(guest.info.api_version)));
    out.push(bulk("source"));
    out.push(match &guest.source {
        Source::Path(path) => bulk(path),
        Source::Bytes => bulk("bytes"),
    });
    out.push(bulk("size"));
    out.push(ReplyItem::Integer(
        i64::try_from(guest.wasm.len()).unwrap_or(i64::MAX),
    ));
    out.push(bulk("world"));
    out.push(bulk(guest.world()));
    out.push(bulk("args"));
    out.push(array(count(guest.load_args.len())));
    for arg in &guest.load_args {
        out.push(bulk(arg));
    }
    out.push(bulk("commands"));
    out.push(array(count(guest.commands.len())));
    for (spec, stats) in guest.commands.iter().zip(&guest.command_stats) {
        out.push(map(10));
        out.push(bulk("name"));
        out.push(bulk(&spec.name));
        out.push(bulk("flags"));
        let flags = spec.flags.to_string();
        let words: Vec<&str> = flags.split_ascii_whitespace().collect();
        out.push(array(count(words.len())));
        for word in words {
            out.push(ReplyItem::Simple(word.to_owned()));
        }
        out.push(bulk("first-key"));
        out.push(ReplyItem::Integer(i64::from(spec.first_key)));
        out.push(bulk("last-key"));
        out.push(ReplyItem::Integer(i64::from(spec.last_key)));
        out.push(bulk("key-step"));
        out.push(ReplyItem::Integer(i64::from(spec.key_step)));
        out.push(bulk("arity"));
        out.push(ReplyItem::Integer(i64::from(spec.arity)));
        for (name, counter) in [("calls", &stats.calls), ("errors", &stats.errors)] {
            out.push(bulk(name));
            out.push(ReplyItem::Integer(
                i64::try_from(counter.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ));
        }
        let (usec, per_call) = stats.usec();
        out.push(bulk("usec"));
        out.push(ReplyItem::Integer(i64::try_from(usec).unwrap_or(i64::MAX)));
        out.push(bulk("usec-per-call"));
        out.push(ReplyItem::Double(per_call));
    }
    out.push(bulk("data-types"));
    out.push(array(count(guest.data_types.len())));
    for (name, encver) in &guest.data_types {
        out.push(map(2));
        out.push(bulk("name"));
        out.push(bulk(name));
        out.push(bulk("encoding-version"));
        out.push(ReplyItem::Integer(i64::from(*encver)));
    }
    out.push(bulk("stats"));
    out.push(map(8));
    let stats = &guest.stats;
    for (name, value) in [
        ("calls", guest.calls()),
        ("errors", stats.errors.load(Ordering::Relaxed)),
        ("traps", stats.traps.load(Ordering::Relaxed)),
        ("kills", stats.kills.load(Ordering::Relaxed)),
        ("restarts", stats.restarts.load(Ordering::Relaxed)),
    ] {
        out.push(bulk(name));
        out.push(ReplyItem::Integer(i64::try_from(value).unwrap_or(i64::MAX)));
    }
    out.push(bulk("memory"));
    out.push(ReplyItem::Integer(
        i64::try_from(guest.stats.memory.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
    ));
    out.push(bulk("code"));
    out.push(ReplyItem::Integer(
        i64::try_from(guest.code_size()).unwrap_or(i64::MAX),
    ));
    out.push(bulk("last-error"));
    let last_error = guest
        .stats
        .last_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    out.push(if last_error.is_empty() {
        ReplyItem::Null
    } else {
        bulk(last_error)
    });
}

/// `WASM.LIST [name]` → one map per loaded guest.
pub fn wasm_list(ctx: Ctx, args: Args<'_>) {
    // It shows every guest's load arguments, which may hold secrets.
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.list", "FUNCTION", &[b"LIST"]) {
        return ctx.reply_error(&refusal);
    }
    if args.len() > 2 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.list"));
    }
    let mut guests = registry::guests();
    if let Some(name) = args.get(1) {
        guests.retain(|g| g.info.name.as_bytes() == name);
    }
    let mut out = ReplyBuffer::default();
    out.push(array(count(guests.len())));
    for guest in &guests {
        describe_guest(&mut out, guest);
    }
    match out.finish() {
        Ok(()) => out.send(ctx),
        Err(why) => ctx.reply_error(&format!("ERR internal error listing guests: {why}")),
    }
}

/// `WASM.DUMP` → a payload holding every guest (name, module bytes, load arguments).
pub fn wasm_dump(ctx: Ctx, args: Args<'_>) {
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.dump", "FUNCTION", &[b"DUMP"]) {
        return ctx.reply_error(&refusal);
    }
    if args.len() != 1 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.dump"));
    }
    ctx.reply_string_buffer(&crate::persist::dump());
}

/// `WASM.RESTORE <payload> [APPEND | REPLACE | FLUSH]` → OK.
pub fn wasm_restore(ctx: Ctx, args: Args<'_>) {
    use crate::persist::{
        Mode, compile_restore, parse_dump, plan_restore, restore, restore_compiled,
    };
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.restore", "FUNCTION", &[b"RESTORE", b"x"])
    {
        return ctx.reply_error(&refusal);
    }
    if args.len() < 2 || args.len() > 3 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.restore"));
    }
    let policy = |word: &[u8]| -> Option<Mode> {
        [
            (&b"append"[..], Mode::Append),
            (b"replace", Mode::Replace),
            (b"flush", Mode::Flush),
        ]
        .into_iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|(_, mode)| mode)
    };
    // The policy may come before the payload (as `redis-cli -x` sends it) or after it.
    let (payload, mode) = match (args.get(1).unwrap_or_default(), args.get(2)) {
        (payload, None) => (payload, Mode::Append),
        (first, Some(second)) => match (policy(first), policy(second)) {
            (Some(mode), _) => (second, mode),
            (None, Some(mode)) => (first, mode),
            (None, None) => {
                // The shorter of the two is the word meant as the policy.
                let word = if first.len() <= second.len() {
                    first
                } else {
                    second
                };
                return ctx.reply_error(&format!(
                    "ERR unknown policy '{}' (expected APPEND, REPLACE or FLUSH)",
                    shown(word)
                ));
            }
        },
    };
    let saved = match parse_dump(payload) {
        Ok(saved) => saved,
        Err(why) => return ctx.reply_error(&format!("ERR {why}")),
    };
    // All or nothing: a restore that fails changes nothing, so there is nothing to replicate
    // (a replica replaying a failed one could fail differently: its limits and time differ).
    // What it compiles is compiled on another thread, as for WASM.LOAD (where the client can
    // be blocked), and its plan made again on the main thread once compiled.
    let plan = match plan_restore(&saved, mode) {
        Ok(plan) => plan,
        Err(why) => return ctx.reply_error(&format!("ERR {why}")),
    };
    // Propagated with REPLACE (or FLUSH), as loads are: replaying an APPEND that worked here
    // where a namesake is loaded (a guest named in the module's arguments, a writable replica's
    // own) would fail as a whole and drop every guest of the payload.
    let replicated = [
        payload.to_vec(),
        match mode {
            // (`Mirror` is not a policy a client can give.)
            Mode::Flush | Mode::Mirror => b"FLUSH".to_vec(),
            Mode::Append | Mode::Replace => b"REPLACE".to_vec(),
        },
    ];
    let Some(blocked) = ctx.block() else {
        return match restore(ctx, saved, mode, Origin::Command) {
            Ok(_) => {
                ctx.replicate("WASM.RESTORE", &replicated, "");
                ctx.reply_simple_ok();
            }
            Err(why) => ctx.reply_error(&format!("ERR {why}")),
        };
    };
    compile_in_background(
        blocked,
        move || {
            let compiled = compile_restore(&saved, &plan, mode);
            Ok((saved, compiled))
        },
        move |ctx, waiting, compiled| {
            let restored = compiled.and_then(|(saved, compiled)| {
                may_publish(ctx, waiting)?;
                restore_compiled(ctx, &saved, mode, Origin::Command, false, compiled)
            });
            match restored {
                Ok(_) => {
                    ctx.replicate("WASM.RESTORE", &replicated, "");
                    ctx.reply_simple_ok();
                }
                Err(why) => {
                    if waiting != Waiting::Yes {
                        log_host(
                            LogLevel::Warning,
                            &format!("a WASM.RESTORE whose client left failed: {why}"),
                        );
                    }
                    ctx.reply_error(&format!("ERR {why}"));
                }
            }
        },
    );
}

/// `WASM.DEBUG PANIC <site>`: arms a panic (see `inject.rs`). `WASM.DEBUG HANDLES <guest> <n>`:
/// jumps a live instance's handle numbers to `n` (to test their recycling). `WASM.DEBUG
/// HOLD-REGISTRY <ms>`: another thread holds the registry's lock that long, as a background
/// job's lookup does (to test forks meanwhile). Needs `wasm.enable-debug 1`.
pub fn wasm_debug(ctx: Ctx, args: Args<'_>) {
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.debug", "DEBUG", &[b"HELP"]) {
        return ctx.reply_error(&refusal);
    }
    if crate::config::ENABLE_DEBUG.load(Ordering::Relaxed) == 0 {
        return ctx.reply_error(
            "ERR WASM.DEBUG is disabled (start the server with wasm.enable-debug 1 to allow it)",
        );
    }
    match (args.get(1), args.get(2)) {
        (Some(sub), Some(site)) if sub.eq_ignore_ascii_case(b"panic") && args.len() == 3 => {
            let site = String::from_utf8_lossy(site);
            if !crate::inject::SITES.contains(&site.as_ref()) {
                return ctx.reply_error(&format!(
                    "ERR unknown site '{}'; sites: {}",
                    shown(site.as_bytes()),
                    crate::inject::SITES.join(", ")
                ));
            }
            crate::inject::arm(&site);
            ctx.reply_simple_ok();
        }
        (Some(sub), Some(name)) if sub.eq_ignore_ascii_case(b"handles") && args.len() == 4 => {
            let name = String::from_utf8_lossy(name);
            let Some(next) = args
                .get(3)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u32>().ok())
            else {
                return ctx
                    .reply_error("ERR the handle number must be an integer from 0 to 4294967295");
            };
            let guest = crate::registry::guests()
                .into_iter()
                .find(|g| g.info.name == name.as_ref());
            match guest {
                Some(guest) if guest.debug_set_next_handle(next) => ctx.reply_simple_ok(),
                Some(_) => ctx.reply_error(&format!("ERR guest '{name}' has no live instance")),
                None => ctx.reply_error(&format!("ERR no guest named '{name}'")),
            }
        }
        (Some(sub), Some(ms)) if sub.eq_ignore_ascii_case(b"hold-registry") && args.len() == 3 => {
            let Some(ms) = std::str::from_utf8(ms)
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&ms| ms <= 10_000)
            else {
                return ctx.reply_error("ERR the time must be an integer from 0 to 10000 (ms)");
            };
            crate::registry::debug_hold_lock(std::time::Duration::from_millis(ms));
            ctx.reply_simple_ok();
        }
        _ => ctx.reply_error(&format!("ERR syntax: {DEBUG_SYNTAX}")),
    }
}

const DEBUG_SYNTAX: &str = "WASM.DEBUG PANIC <site> | WASM.DEBUG HANDLES <guest> <number> | \
                            WASM.DEBUG HOLD-REGISTRY <ms>";

/// `WASM.SETVALUE <key> <type> <encoding-version> <bytes>`: stores a value of a guest data type.
/// The host replicates guest writes of data type values with it and rewrites the AOF with it;
/// it needs no guest (values are the host's bytes, see `ffi/datatype.rs`). A value of the same
/// type is replaced in place, keeping the key's expire.
pub fn wasm_setvalue(ctx: Ctx, args: Args<'_>) {
    if args.len() != 5 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.setvalue"));
    }
    let (Some(key), Some(type_name), Some(encver), Some(data)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        return;
    };
    // It stores a serialized value as it is, bypassing the checks the type's guest makes on
    // its writes: as RESTORE (`@dangerous`) does.
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.setvalue", "RESTORE", &[key, b"0", b"x"])
    {
        return ctx.reply_error(&refusal);
    }
    let Ok(type_name) = std::str::from_utf8(type_name) else {
        return ctx.reply_error("ERR the type name is not valid UTF-8");
    };
    // As Redis reads integers: no sign, no leading zeros.
    let Some(encver) = std::str::from_utf8(encver)
        .ok()
        .and_then(|text| text.parse::<i32>().ok().filter(|v| v.to_string() == text))
        .filter(|v| *v >= 0)
    else {
        return ctx.reply_error("ERR the encoding version must be an integer from 0 to 2147483647");
    };
    // A replayed AOF without an RDB preamble may set values before any guest declared the type.
    // Only a replay may register one: a type is never unregistered and the RDB lists every type
    // the server knows, so clients could otherwise fill the server's 1024 for good. A guest's
    // call is never the replay (Redis flags the whole AOF load as loading): the master refused
    // it, so the AOF and replicas replaying the guest's command refuse it too.
    if let Err(why) = crate::ffi::check_type_name(type_name) {
        return ctx.reply_error(&format!("ERR {why}"));
    }
    let replayed = ctx_flags::replayed(ctx.flags()) && !crate::api::called_by_a_guest();
    let ty = match crate::ffi::find_type(type_name) {
        Some(ty) => ty,
        None if !replayed => {
            return ctx.reply_error(&format!(
                "ERR unknown data type '{type_name}': no guest declared it and it is not reserved (load its guest first)"
            ));
        }
        None => match ctx.register_guest_type(type_name) {
            Ok(ty) => ty,
            Err(why) => return ctx.reply_error(&format!("ERR {why}")),
        },
    };
    let Some(mut raw) = ctx.open_key(key, crate::ffi::MODE_READ | crate::ffi::MODE_WRITE) else {
        return ctx.reply_error("ERR the key could not be opened for writing");
    };
    let value = crate::ffi::TypeValue {
        ty,
        encver,
        data: data.to_vec(),
    };
    if !raw.set_guest_value(value) {
        return ctx.reply_error("ERR the value could not be stored");
    }
    drop(raw);
    // A value of the same type is replaced in place, which Redis does not notice: clients
    // blocked on the key (a replica's, when this replays a guest's write) are woken as the
    // guest's own write woke them on the master.
    ctx.signal_key_as_ready(key);
    ctx.replicate_verbatim();
    ctx.reply_simple_ok();
}

/// `WASM.KILL`: stops the running guest command (allowed while Redis is busy).
pub fn wasm_kill(ctx: Ctx, args: Args<'_>) {
    if args.len() != 1 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.kill"));
    }
    if let Some(refusal) = refused_as_stand_in(ctx, "wasm.kill", "FUNCTION", &[b"KILL"]) {
        return ctx.reply_error(&refusal);
    }
    match crate::busy::kill() {
        crate::busy::KillOutcome::Killed => ctx.reply_simple_ok(),
        crate::busy::KillOutcome::NotBusy => ctx.reply_error("NOTBUSY No guest command is running right now."),
        crate::busy::KillOutcome::Unkillable { guest, command } => ctx.reply_error(&format!(
            "UNKILLABLE Guest '{guest}' command '{command}' already wrote to the dataset: killing it would leave it half done. Wait for it to finish, or stop the server with SHUTDOWN NOSAVE NOW."
        )),
    }
}

const HELP: &[&str] = &[
    "WASM.LOAD [REPLACE] <path|bytes> [ARGS <arg> ...]",
    "    Load a WebAssembly guest from a file on the server or from the module's bytes,",
    "    run its init with the arguments, and register its commands. Replies with its name.",
    "    REPLACE upgrades a loaded guest of the same name. The bytes may also come last,",
    "    after the arguments (as redis-cli -x sends them).",
    "WASM.UNLOAD <name>",
    "    Unload a guest; its commands stop answering.",
    "WASM.LIST [<name>]",
    "    List loaded guests: name, versions, source, load arguments, commands, counters,",
    "    memory, last error. Each command's time needs CONFIG SET wasm.time-commands 1.",
    "WASM.DUMP",
    "    A payload with every loaded guest, for WASM.RESTORE on another server.",
    "WASM.RESTORE [APPEND|REPLACE|FLUSH] <payload>",
    "    Load the guests of a WASM.DUMP payload. APPEND (default) fails if a name is taken,",
    "    REPLACE replaces guests of the same name, FLUSH unloads every guest first.",
    "WASM.KILL",
    "    Stop the guest command that keeps Redis busy (unless it already wrote).",
    "WASM.SETVALUE <key> <type> <encoding-version> <bytes>",
    "    Store a value of a guest data type in a key (used by AOF rewrites and replication).",
    "WASM.DEBUG PANIC <site> | WASM.DEBUG HANDLES <guest> <number> | WASM.DEBUG HOLD-REGISTRY <ms>",
    "    Test hooks (needs wasm.enable-debug 1): inject a host panic; jump handle numbers;",
    "    hold the guest registry's lock on another thread.",
    "WASM.HELP",
    "    Print this help.",
];

/// `WASM.HELP`.
pub fn wasm_help(ctx: Ctx, args: Args<'_>) {
    if args.len() != 1 {
        return ctx.reply_error(&crate::dispatch::wrong_arity_message("wasm.help"));
    }
    let mut out = ReplyBuffer::default();
    out.push(array(count(HELP.len())));
    for line in HELP {
        out.push(ReplyItem::Simple((*line).to_owned()));
    }
    match out.finish() {
        Ok(()) => out.send(ctx),
        Err(why) => ctx.reply_error(&format!("ERR {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<LoadRequest, String> {
        LoadRequest::parse(words.iter().map(|w| w.as_bytes()))
    }

    #[test]
    fn load_syntax() {
        let r = parse(&["/x.wasm", "ARGS", "a", "REPLACE"]).unwrap();
        assert_eq!(
            (r.module.as_slice(), r.replace, r.args.len()),
            (&b"/x.wasm"[..], false, 2)
        );
        let r = parse(&["REPLACE", "/x.wasm"]).unwrap();
        assert!(r.replace && r.args.is_empty());
        let r = parse(&["/x.wasm", "replace", "args"]).unwrap();
        assert!(r.replace && r.args.is_empty());
        assert!(parse(&[]).unwrap_err().contains("missing"));
        assert!(parse(&["/x.wasm", "BOGUS"]).unwrap_err().contains("BOGUS"));
        // The bytes last, as `redis-cli -x` sends them.
        let bytes = "\0asm\x0d\0\x01\0";
        let r = parse(&["REPLACE", "ARGS", "a", "b", bytes]).unwrap();
        assert_eq!(
            (r.module.as_slice(), r.replace, r.args.len()),
            (bytes.as_bytes(), true, 2)
        );
        let r = parse(&["args", bytes]).unwrap();
        assert!(!r.replace && r.args.is_empty() && r.module.starts_with(b"\0asm"));
        // A path named ARGS is still a path when the bytes do not come last.
        let r = parse(&["ARGS", "ARGS", "x"]).unwrap();
        assert_eq!((r.module.as_slice(), r.args.len()), (&b"ARGS"[..], 1));
    }
}
