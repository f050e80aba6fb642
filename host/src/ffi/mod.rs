//! The boundary with Redis: every `extern "C"` entry point and every raw Module API call.
//!
//! Nothing outside this module touches a raw pointer. Entry points catch panics (a panic that
//! escapes an `extern "C"` function aborts redis-server) and hand safe wrappers to the rest of
//! the host: [`Ctx`] for a `RedisModuleCtx`, [`Args`] for a command's arguments,
//! [`FilterCtx`] for a command filter, [`OwnedString`] for a string the host keeps.
//!
//! The wrappers are only valid for the duration of the callback that created them (or, for
//! [`OwnedString`], until dropped). All of them are used on the thread that holds Redis's global
//! lock: the main thread, or a thread that locked a thread-safe context.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_int};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};

use redis_module::raw;

const OK: c_int = raw::REDISMODULE_OK as c_int;
const ERR: c_int = raw::REDISMODULE_ERR as c_int;

/// Calls a Module API function pointer that Redis filled in at init.
macro_rules! api {
    ($name:ident) => {
        // Copy the function pointer out of the `static mut` the bindings keep; the API table is
        // written once by `RedisModule_Init` before any of our code runs.
        match raw::$name {
            Some(f) => f,
            None => panic!(concat!("Redis does not export ", stringify!($name))),
        }
    };
}

pub(crate) use api;

/// Calls the variadic Module API function `$f` as `$f(leading..., format, ptr0, len0, ptr1,
/// len1, ...)`: each byte string of `$args` (at most `call::MAX_BYTE_ARGS`) as the pointer and
/// length a `b` specifier of `format` takes. Unsafe: the caller vouches for the other arguments.
macro_rules! with_byte_args {
    ($f:expr, ($($lead:expr),*), $format:expr, $args:expr) => {{
        let args = $args;
        // An empty argument points at a real byte (Redis `memcpy`s zero bytes from it).
        let p = |i: usize| match args[i].as_ref() {
            [] => c"".as_ptr(),
            bytes => bytes.as_ptr().cast::<c_char>(),
        };
        let l = |i: usize| args[i].as_ref().len();
        match args.len() {
            0 => $f($($lead,)* $format),
            1 => $f($($lead,)* $format, p(0), l(0)),
            2 => $f($($lead,)* $format, p(0), l(0), p(1), l(1)),
            3 => $f($($lead,)* $format, p(0), l(0), p(1), l(1), p(2), l(2)),
            4 => $f($($lead,)* $format, p(0), l(0), p(1), l(1), p(2), l(2), p(3), l(3)),
            5 => $f(
                $($lead,)* $format, p(0), l(0), p(1), l(1), p(2), l(2), p(3), l(3), p(4), l(4)
            ),
            6 => $f(
                $($lead,)* $format, p(0), l(0), p(1), l(1), p(2), l(2), p(3), l(3), p(4), l(4),
                p(5), l(5)
            ),
            n => unreachable!("{n} byte arguments: at most call::MAX_BYTE_ARGS are passed so"),
        }
    }};
}

use with_byte_args;

mod blocking;
mod call;
mod datatype;
mod keys;
mod rdb;
mod server;
pub mod signals;

pub use blocking::{Blocked, BlockedClient, ThreadSafeCtx, TimerId, Waiting, with_redis_lock};
pub use call::{
    AclDenial, CallRefusal, CallReply, CommandLine, ContextUser, ReplyKind, ReplyRef, command_keys,
    command_line, command_may_write, has_subcommands, key_count_fits, replicable,
};
pub use datatype::{GuestType, KeyValue, TypeValue, check_type_name, find_type, type_names};
pub use keys::{
    KeyAccess, MODE_NO_TOUCH, MODE_READ, MODE_WRITE, RawKey, ScanCursor, key_check_in_progress,
};
pub use rdb::{AuxHandlers, Io};
pub use server::{InfoCtx, NumericConfig, StringConfig};

/// Lowers the calling thread's scheduling priority (nice 10), so that work off the main thread
/// (compiling a guest, a background job) leaves the CPU to Redis's main thread when both want it.
pub fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes this
    // thread's nice value (raising it is always permitted); a failure is harmless and ignored.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

thread_local! {
    /// The lowest address of this thread's stack (stacks grow down), once asked.
    static STACK_LOW: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Bytes of native stack left to the calling thread below the caller's frame, when the thread's
/// stack bounds can be read.
pub fn stack_left() -> Option<usize> {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let low = match STACK_LOW.get() {
        Some(low) => low,
        None => {
            let low = stack_low()?;
            STACK_LOW.set(Some(low));
            low
        }
    };
    here.checked_sub(low)
}

fn stack_low() -> Option<usize> {
    let mut addr = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: pthread_getattr_np initialises `attr` for the calling thread (glibc reads the
    // main thread's bounds from /proc and its rlimit); it is read, then destroyed, only when
    // that succeeded.
    let read = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let read = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        read
    };
    read.then_some(addr as usize)
}

/// Whether Redis gives module commands ACL categories (`RedisModule_SetCommandACLCategories`,
/// Redis 7.2+).
pub fn has_command_categories() -> bool {
    // SAFETY: reading an optional API pointer, set once when the module loaded.
    unsafe { raw::RedisModule_SetCommandACLCategories }.is_some()
}

/// Whether clients are paused (`CLIENT PAUSE`, a failover): nothing may be written or
/// propagated then (`RedisModule_AvoidReplicaTraffic`; Redis 7.0 asserts on propagation).
pub fn writes_paused() -> bool {
    // SAFETY: no arguments; reads server state on the main thread.
    unsafe { api!(RedisModule_AvoidReplicaTraffic)() != 0 }
}

/// The error for a write attempted by a blocked client's callback while clients are paused.
pub const WRITES_PAUSED: &str = "ERR clients are paused (CLIENT PAUSE or a failover): a blocked \
client's callback cannot write until they are unpaused";

/// The error reply for a fault of the host itself (the details go to the server log).
pub const INTERNAL_ERROR: &str = "ERR internal error in redis-wasm (see the server log)";

/// Runs `f`, turning a panic into `None` after logging it. Every entry point goes through here.
pub fn catch<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(|| {
        crate::inject::maybe_panic(what);
        f()
    })) {
        Ok(r) => Some(r),
        Err(payload) => {
            log_host(
                LogLevel::Warning,
                &format!("internal error in {what}: {}", panic_text(&*payload)),
            );
            None
        }
    }
}

/// The message inside a panic payload.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Log levels of `RedisModule_Log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl LogLevel {
    fn as_cstr(self) -> &'static CStr {
        match self {
            LogLevel::Debug => c"debug",
            LogLevel::Verbose => c"verbose",
            LogLevel::Notice => c"notice",
            LogLevel::Warning => c"warning",
        }
    }
}

/// A C string from arbitrary text: interior NULs would truncate it, so they become spaces.
fn c_string(text: &[u8]) -> CString {
    CString::new(
        text.iter()
            .map(|&b| if b == 0 { b' ' } else { b })
            .collect::<Vec<u8>>(),
    )
    .expect("NUL bytes were replaced")
}

/// A context of this module that is never freed, for the host's log lines from anywhere
/// (Redis prefixes a line with the module's name, `<wasm>`, only through such a context).
static LOG_CTX: std::sync::atomic::AtomicPtr<raw::RedisModuleCtx> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Writes a line of the host's to the Redis log, as `<wasm> message` (from any thread).
pub fn log_host(level: LogLevel, message: &str) {
    log_with(
        LOG_CTX.load(std::sync::atomic::Ordering::Acquire),
        level,
        message,
    );
}

/// Writes a line to the Redis log without a context (`RedisModule_Log(NULL, ...)`: Redis puts
/// `<module>` before it).
pub fn log_raw(level: LogLevel, message: &str) {
    log_with(ptr::null_mut(), level, message);
}

fn log_with(ctx: *mut raw::RedisModuleCtx, level: LogLevel, message: &str) {
    // SAFETY: reads the API pointer, which is only missing outside Redis (the fuzz targets).
    if unsafe { raw::RedisModule_Log }.is_none() {
        return;
    }
    let text = log_line(message);
    // SAFETY: RM_Log accepts a NULL context, or a live one (`LOG_CTX` is never freed; RM_Log
    // reads only its module's name); the format takes exactly one C string argument and both
    // strings are valid NUL-terminated buffers for the duration of the call.
    unsafe { api!(RedisModule_Log)(ctx, level.as_cstr().as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
}

/// Redis 7.0 cuts every module log message at 1024 bytes (its `LOG_MAX_LEN`), `<module> ` and
/// the terminating NUL included.
const REDIS_LOG_ROOM: usize = 1024 - "<module> ".len() - 1;

/// A log message as one line: messages quote what clients and guests sent (a refused import's
/// name, an init's error), which must not forge lines of their own.
fn log_line(message: &str) -> CString {
    if message.chars().any(|c| c.is_control() && c != '\t') {
        c_string(escape_controls(message).as_bytes())
    } else {
        c_string(message.as_bytes())
    }
}

/// `text` with its control characters but tabs written as `\xNN`.
fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            escaped.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Logs text a guest wrote as `<wasm:label> text`: control bytes (but tabs) escaped as `\xNN`,
/// so that a guest cannot forge log lines or send terminal escapes, invalid UTF-8 replaced, and
/// split into lines Redis keeps whole.
pub fn log_guest_text(level: LogLevel, label: &str, text: &[u8]) {
    let escaped = escape_controls(&String::from_utf8_lossy(text));
    // What is left of a line after `<wasm:label> ` (guest names are at most 128 bytes).
    let chunk = REDIS_LOG_ROOM
        .saturating_sub(label.len() + "<wasm:> ".len())
        .max(64);
    let mut rest = escaped.as_str();
    loop {
        let mut cut = rest.len().min(chunk);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (line, after) = rest.split_at(cut);
        log_raw(level, &format!("<wasm:{label}> {line}"));
        if after.is_empty() {
            break;
        }
        rest = after;
    }
}

/// A client's argument as an error message quotes it: text, cut after [`SHOWN_CHARS`]
/// characters (a mistyped word should not echo the megabytes of a module sent beside it).
pub fn shown(arg: &[u8]) -> String {
    let text = String::from_utf8_lossy(arg);
    let (text, more) = match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => (&text[..cut], format!("... ({} bytes)", arg.len())),
        None => (&text[..], String::new()),
    };
    // Control bytes escaped, so that binary arguments do not garble the message.
    let mut out = String::with_capacity(text.len() + more.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out + &more
}

const SHOWN_CHARS: usize = 64;

/// An I/O error's text without Rust's ` (os error N)` suffix, as Redis words them.
pub fn io_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// `RedisModuleCtx` flags the host looks at (`RedisModule_GetContextFlags`).
pub mod ctx_flags {
    use redis_module::raw;
    pub const MULTI: u32 = raw::REDISMODULE_CTX_FLAGS_MULTI;
    pub const LUA: u32 = raw::REDISMODULE_CTX_FLAGS_LUA;
    pub const REPLICATED: u32 = raw::REDISMODULE_CTX_FLAGS_REPLICATED;
    pub const LOADING: u32 = raw::REDISMODULE_CTX_FLAGS_LOADING;
    pub const OOM: u32 = raw::REDISMODULE_CTX_FLAGS_OOM;
    pub const CLUSTER: u32 = raw::REDISMODULE_CTX_FLAGS_CLUSTER;
    pub const SLAVE: u32 = raw::REDISMODULE_CTX_FLAGS_SLAVE;
    pub const READONLY: u32 = raw::REDISMODULE_CTX_FLAGS_READONLY;
    pub const RESP3: u32 = raw::REDISMODULE_CTX_FLAGS_RESP3;
    pub const DENY_BLOCKING: u32 = raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING;

    /// Whether the context's work is replayed from the master or the AOF (or an RDB being
    /// loaded): the master accepted it, so a replica must carry it out whatever its own limits.
    pub fn replayed(flags: u32) -> bool {
        flags & (REPLICATED | LOADING) != 0
    }
}

/// `REDISMODULE_NOTIFY_*`: keyspace event classes.
pub mod notify {
    use std::ffi::c_int;

    use super::raw;

    pub const GENERIC: c_int = raw::REDISMODULE_NOTIFY_GENERIC as c_int;
    pub const STRING: c_int = raw::REDISMODULE_NOTIFY_STRING as c_int;
    pub const LIST: c_int = raw::REDISMODULE_NOTIFY_LIST as c_int;
    pub const SET: c_int = raw::REDISMODULE_NOTIFY_SET as c_int;
    pub const HASH: c_int = raw::REDISMODULE_NOTIFY_HASH as c_int;
    pub const ZSET: c_int = raw::REDISMODULE_NOTIFY_ZSET as c_int;
    pub const EXPIRED: c_int = raw::REDISMODULE_NOTIFY_EXPIRED as c_int;
    pub const EVICTED: c_int = raw::REDISMODULE_NOTIFY_EVICTED as c_int;
    pub const STREAM: c_int = raw::REDISMODULE_NOTIFY_STREAM as c_int;
    pub const KEY_MISS: c_int = raw::REDISMODULE_NOTIFY_KEY_MISS as c_int;
    pub const MODULE: c_int = raw::REDISMODULE_NOTIFY_MODULE as c_int;
    pub const NEW: c_int = raw::REDISMODULE_NOTIFY_NEW as c_int;
}

/// A `RedisModuleCtx` for the duration of one callback.
#[derive(Clone, Copy, Debug)]
pub struct Ctx(NonNull<raw::RedisModuleCtx>);

// SAFETY: a Ctx is only used on the thread holding Redis's global lock, while the callback that
// created it runs; it is stored in per-call state that is cleared before the callback returns.
unsafe impl Send for Ctx {}

impl Ctx {
    /// Writes a line to the Redis log with this module's name.
    pub fn log(self, level: LogLevel, message: &str) {
        let text = log_line(message);
        // SAFETY: valid context; one `%s` argument, a valid C string.
        unsafe {
            api!(RedisModule_Log)(
                self.0.as_ptr(),
                level.as_cstr().as_ptr(),
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        };
    }

    /// `RedisModule_GetContextFlags`.
    pub fn flags(self) -> u32 {
        // SAFETY: valid context.
        let flags = unsafe { api!(RedisModule_GetContextFlags)(self.0.as_ptr()) };
        flags as u32
    }

    /// Whether this call only asks for the key positions of the command (getkeys-api).
    pub fn is_keys_position_request(self) -> bool {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_IsKeysPositionRequest)(self.0.as_ptr()) != 0 }
    }

    /// `RedisModule_NotifyKeyspaceEvent` for `key` in the selected database; false when the
    /// context has no client (Redis then publishes nothing).
    pub fn notify_keyspace_event(self, class: c_int, event: &CStr, key: &[u8]) -> bool {
        let key = OwnedString::new(key);
        // SAFETY: valid context; Redis copies what it publishes from the event and the key,
        // both alive for the call.
        unsafe {
            api!(RedisModule_NotifyKeyspaceEvent)(
                self.0.as_ptr(),
                class,
                event.as_ptr(),
                key.as_ptr(),
            ) == OK
        }
    }

    /// Reports the argument at `pos` as a key (`RedisModule_KeyAtPosWithFlags`): read only
    /// (ACL `%R~` patterns suffice), or read and written (it needs both permissions).
    pub fn key_at_pos(self, pos: i32, read_only: bool) {
        let flags = if read_only {
            raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS
        } else {
            raw::REDISMODULE_CMD_KEY_RW
                | raw::REDISMODULE_CMD_KEY_ACCESS
                | raw::REDISMODULE_CMD_KEY_UPDATE
        };
        self.key_at_pos_with_flags(pos, flags);
    }

    /// Reports the argument at `pos` as a key with key-spec `flags`.
    pub fn key_at_pos_with_flags(self, pos: i32, flags: u32) {
        // SAFETY: valid context; Redis ignores the call when this is not a key-position request.
        unsafe { api!(RedisModule_KeyAtPosWithFlags)(self.0.as_ptr(), pos, flags as c_int) };
    }

    pub fn reply_long_long(self, value: i64) {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_ReplyWithLongLong)(self.0.as_ptr(), value) };
    }

    /// A status reply. The caller has checked that `text` has no CR, LF or NUL.
    pub fn reply_simple_string(self, text: &[u8]) {
        let text = c_string(text);
        // SAFETY: valid context and C string.
        unsafe { api!(RedisModule_ReplyWithSimpleString)(self.0.as_ptr(), text.as_ptr()) };
    }

    /// An error reply; `message` starts with its error code. Redis replaces CR/LF inside it.
    pub fn reply_error(self, message: &str) {
        let text = c_string(message.as_bytes());
        // SAFETY: valid context and C string.
        unsafe { api!(RedisModule_ReplyWithError)(self.0.as_ptr(), text.as_ptr()) };
    }

    pub fn reply_string_buffer(self, bytes: &[u8]) {
        // SAFETY: valid context; Redis copies `bytes.len()` bytes from the pointer.
        unsafe {
            api!(RedisModule_ReplyWithStringBuffer)(
                self.0.as_ptr(),
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
    }

    pub fn reply_null(self) {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_ReplyWithNull)(self.0.as_ptr()) };
    }

    pub fn reply_array(self, len: i64) {
        // SAFETY: valid context; the caller sends exactly `len` elements next.
        unsafe { api!(RedisModule_ReplyWithArray)(self.0.as_ptr(), len) };
    }

    pub fn reply_map(self, len: i64) {
        // SAFETY: valid context; the caller sends exactly `len` key/value pairs next.
        unsafe { api!(RedisModule_ReplyWithMap)(self.0.as_ptr(), len) };
    }

    pub fn reply_double(self, value: f64) {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_ReplyWithDouble)(self.0.as_ptr(), value) };
    }

    pub fn reply_bool(self, value: bool) {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_ReplyWithBool)(self.0.as_ptr(), c_int::from(value)) };
    }

    pub fn reply_big_number(self, digits: &[u8]) {
        // SAFETY: valid context; Redis copies `len` bytes.
        unsafe {
            api!(RedisModule_ReplyWithBigNumber)(
                self.0.as_ptr(),
                digits.as_ptr().cast::<c_char>(),
                digits.len(),
            )
        };
    }

    /// A verbatim string; `format` must be exactly three bytes (checked by the caller).
    pub fn reply_verbatim(self, format: &[u8], text: &[u8]) {
        let format = c_string(format);
        // SAFETY: valid context; Redis copies the text and reads 3 bytes of the format.
        unsafe {
            api!(RedisModule_ReplyWithVerbatimStringType)(
                self.0.as_ptr(),
                text.as_ptr().cast::<c_char>(),
                text.len(),
                format.as_ptr(),
            )
        };
    }

    pub fn reply_set(self, len: i64) {
        // SAFETY: valid context; the caller sends exactly `len` members next.
        unsafe { api!(RedisModule_ReplyWithSet)(self.0.as_ptr(), len) };
    }

    pub fn reply_null_array(self) {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_ReplyWithNullArray)(self.0.as_ptr()) };
    }

    /// `RedisModule_ReplicateVerbatim`.
    pub fn replicate_verbatim(self) {
        // SAFETY: valid command context.
        unsafe { api!(RedisModule_ReplicateVerbatim)(self.0.as_ptr()) };
    }

    pub fn reply_simple_ok(self) {
        self.reply_simple_string(b"OK");
    }

    /// Propagates `command args...` to replicas and the AOF (`RedisModule_Replicate`; the
    /// modifiers "A" or "R" skip the AOF or the replicas). Arguments go as in [`Ctx::call`].
    pub fn replicate<A: AsRef<[u8]>>(self, command: &str, args: &[A], modifiers: &str) -> bool {
        call::with_c_str(command.as_bytes(), |command| {
            let status = if args.len() <= call::MAX_BYTE_ARGS {
                let format = call::Format::with_byte_args(modifiers.as_bytes(), args.len());
                // SAFETY: valid context; NUL-terminated command and format, with a `b` for each
                // argument, whose bytes live for the call; Redis copies them.
                unsafe {
                    with_byte_args!(
                        api!(RedisModule_Replicate),
                        (self.0.as_ptr(), command),
                        format.as_ptr(),
                        args
                    )
                }
            } else {
                call::with_argv(args, |argv| {
                    let format = call::Format::with_vector(modifiers.as_bytes());
                    // SAFETY: valid context; NUL-terminated command and format; "v" takes an
                    // array of RedisModuleString pointers and its length, alive for the call
                    // (see `with_argv`); Redis retains what it keeps.
                    unsafe {
                        api!(RedisModule_Replicate)(
                            self.0.as_ptr(),
                            command,
                            format.as_ptr(),
                            argv.as_mut_ptr(),
                            argv.len(),
                        )
                    }
                })
            };
            status == OK
        })
    }
}

/// `RedisModule_StringToLongLong` on bytes.
pub fn string_to_long_long(bytes: &[u8]) -> Option<i64> {
    let s = OwnedString::new(bytes);
    let mut out = 0i64;
    // SAFETY: a live string and a valid out pointer.
    (unsafe { api!(RedisModule_StringToLongLong)(s.as_ptr(), &mut out) } == OK).then_some(out)
}

/// `RedisModule_StringToDouble` on bytes.
pub fn string_to_double(bytes: &[u8]) -> Option<f64> {
    let s = OwnedString::new(bytes);
    let mut out = 0f64;
    // SAFETY: a live string and a valid out pointer.
    (unsafe { api!(RedisModule_StringToDouble)(s.as_ptr(), &mut out) } == OK).then_some(out)
}

/// `RedisModule_CreateStringFromDouble`: Redis's formatting of a double.
pub fn double_to_string(value: f64) -> Vec<u8> {
    // SAFETY: a NULL context creates an unmanaged string, which OwnedString frees.
    let s = unsafe { api!(RedisModule_CreateStringFromDouble)(ptr::null_mut(), value) };
    match NonNull::new(s) {
        Some(s) => OwnedString(s).bytes().to_vec(),
        None => value.to_string().into_bytes(),
    }
}

/// `RedisModule_Milliseconds`.
pub fn milliseconds() -> i64 {
    // SAFETY: no arguments.
    unsafe { api!(RedisModule_Milliseconds)() }
}

/// The arguments of a command callback (`RedisModuleString **argv, int argc`).
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    argv: &'a [*mut raw::RedisModuleString],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.argv.len()
    }

    /// The bytes of argument `i` (`RedisModule_StringPtrLen`).
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.argv.get(i).map(|&s| string_bytes(s))
    }

    /// The arguments after the first `n`.
    pub fn skip(self, n: usize) -> Args<'a> {
        Args {
            argv: &self.argv[n.min(self.argv.len())..],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.argv.iter().map(|&s| string_bytes(s))
    }

    /// Runs `f` with the arguments as byte slices, without allocating for the usual few.
    pub fn with_slices<R>(&self, f: impl FnOnce(&[&'a [u8]]) -> R) -> R {
        const ON_STACK: usize = 8;
        if self.argv.len() <= ON_STACK {
            let mut slices: [&[u8]; ON_STACK] = [&[]; ON_STACK];
            for (slot, arg) in slices.iter_mut().zip(self.iter()) {
                *slot = arg;
            }
            f(&slices[..self.argv.len()])
        } else {
            f(&self.iter().collect::<Vec<_>>())
        }
    }
}

pub(super) fn string_bytes<'a>(s: *mut raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: `s` is a live RedisModuleString (an argument or one we own); StringPtrLen returns
    // a pointer to `len` bytes that stay valid as long as the string does.
    unsafe {
        let p = api!(RedisModule_StringPtrLen)(s, &mut len);
        if p.is_null() || len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(p.cast::<u8>(), len)
        }
    }
}

/// A `RedisModuleString` the host owns (created without a context, freed on drop).
#[derive(Debug)]
pub struct OwnedString(pub(super) NonNull<raw::RedisModuleString>);

// SAFETY: a string made without a context is a private object: creating, reading and freeing it
// touches only the object and Redis's allocator (thread-safe), so the parsing helpers use it on
// any thread. Once Redis may hold a reference too (a key name it retains), the host touches it
// only under Redis's global lock, where Redis does.
unsafe impl Send for OwnedString {}
// SAFETY: as above; shared references only read the string.
unsafe impl Sync for OwnedString {}

impl OwnedString {
    pub fn new(bytes: &[u8]) -> Self {
        // SAFETY: a NULL context creates a string outside automatic memory management; Redis
        // copies the bytes.
        let s = unsafe {
            api!(RedisModule_CreateString)(
                ptr::null_mut(),
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
        OwnedString(NonNull::new(s).expect("RedisModule_CreateString returned NULL"))
    }

    pub fn bytes(&self) -> &[u8] {
        string_bytes(self.0.as_ptr())
    }

    pub(super) fn as_ptr(&self) -> *mut raw::RedisModuleString {
        self.0.as_ptr()
    }

    /// Hands the reference to Redis, which frees it.
    pub(super) fn into_raw(self) -> *mut raw::RedisModuleString {
        let s = self.0.as_ptr();
        std::mem::forget(self);
        s
    }
}

impl Drop for OwnedString {
    fn drop(&mut self) {
        // SAFETY: we hold one reference, created by CreateString (or retained) without a context.
        unsafe { api!(RedisModule_FreeString)(ptr::null_mut(), self.0.as_ptr()) };
    }
}

/// A command filter's view of the command about to run.
#[derive(Debug)]
pub struct FilterCtx(NonNull<raw::RedisModuleCommandFilterCtx>);

impl FilterCtx {
    pub fn arg(&self, pos: usize) -> Option<&[u8]> {
        let pos = c_int::try_from(pos).ok()?;
        // SAFETY: valid filter context; returns NULL when `pos` is out of range.
        let s = unsafe { api!(RedisModule_CommandFilterArgGet)(self.0.as_ptr(), pos) };
        (!s.is_null()).then(|| string_bytes(s))
    }

    /// Replaces the argument at `pos` with `arg`, releasing the one it replaces.
    pub fn replace_arg(&self, pos: usize, arg: &OwnedString) -> bool {
        // SAFETY: reads a pointer of Redis's API table, written once before any of our code.
        self.put_arg(pos, arg, unsafe {
            api!(RedisModule_CommandFilterArgReplace)
        })
    }

    /// Inserts `arg` at `pos`.
    pub fn insert_arg(&self, pos: usize, arg: &OwnedString) -> bool {
        // SAFETY: as in `replace_arg`.
        self.put_arg(pos, arg, unsafe {
            api!(RedisModule_CommandFilterArgInsert)
        })
    }

    /// Hands `arg` to the argv with `put` (`CommandFilterArgInsert` or `…Replace`): the argv
    /// owns a reference of its own, retained here, which Redis releases with the argv.
    fn put_arg(&self, pos: usize, arg: &OwnedString, put: FilterArgPut) -> bool {
        let Ok(pos) = c_int::try_from(pos) else {
            return false;
        };
        // SAFETY: valid filter context and string. RetainString with a NULL context adds one
        // reference, given to the argv on success and dropped again on failure.
        unsafe {
            api!(RedisModule_RetainString)(ptr::null_mut(), arg.0.as_ptr());
            if put(self.0.as_ptr(), pos, arg.0.as_ptr()) == OK {
                true
            } else {
                api!(RedisModule_FreeString)(ptr::null_mut(), arg.0.as_ptr());
                false
            }
        }
    }
}

/// `RedisModule_CommandFilterArgInsert` / `…Replace`.
type FilterArgPut = unsafe extern "C" fn(
    *mut raw::RedisModuleCommandFilterCtx,
    c_int,
    *mut raw::RedisModuleString,
) -> c_int;

// ---------------------------------------------------------------------------------------------
// Entry points from Redis.
// ---------------------------------------------------------------------------------------------

/// A command implementation: gets the context and arguments, replies through the context.
pub type CommandHandler = fn(Ctx, Args<'_>);

/// Runs a command handler, answering an error if it panics.
fn run_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    name: &str,
    handler: CommandHandler,
) -> c_int {
    let Some(ctx) = NonNull::new(ctx).map(Ctx) else {
        return ERR;
    };
    let argv: &[*mut raw::RedisModuleString] = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid string pointers in `argv` for the callback's duration.
        Ok(n) if n > 0 && !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    if catch(name, || handler(ctx, Args { argv })).is_none() {
        ctx.reply_error(&format!(
            "ERR internal error in redis-wasm while running '{name}' (see the server log)"
        ));
    }
    OK
}

/// Declares an `extern "C"` command trampoline for a [`CommandHandler`].
macro_rules! command_entry {
    ($entry:ident, $name:literal, $handler:path) => {
        extern "C" fn $entry(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut *mut raw::RedisModuleString,
            argc: c_int,
        ) -> c_int {
            run_command(ctx, argv, argc, $name, $handler)
        }
    };
}

command_entry!(wasm_load_entry, "wasm.load", crate::commands::wasm_load);
command_entry!(
    wasm_unload_entry,
    "wasm.unload",
    crate::commands::wasm_unload
);
command_entry!(wasm_list_entry, "wasm.list", crate::commands::wasm_list);
command_entry!(wasm_help_entry, "wasm.help", crate::commands::wasm_help);
command_entry!(wasm_kill_entry, "wasm.kill", crate::commands::wasm_kill);
command_entry!(wasm_debug_entry, "wasm.debug", crate::commands::wasm_debug);
command_entry!(wasm_dump_entry, "wasm.dump", crate::commands::wasm_dump);
command_entry!(
    wasm_setvalue_entry,
    "wasm.setvalue",
    crate::commands::wasm_setvalue
);
command_entry!(
    wasm_restore_entry,
    "wasm.restore",
    crate::commands::wasm_restore
);
command_entry!(
    dispatch_write_oom_entry,
    "wasm.invoke-write-denyoom",
    crate::dispatch::invoke_write_denyoom
);
command_entry!(
    dispatch_write_entry,
    "wasm.invoke-write",
    crate::dispatch::invoke_write
);
command_entry!(
    dispatch_readonly_entry,
    "wasm.invoke-readonly",
    crate::dispatch::invoke_readonly
);
command_entry!(
    dispatch_plain_entry,
    "wasm.invoke",
    crate::dispatch::invoke_plain
);

/// Whether `name` (lowercase) is one of the host's own commands ([`HOST_COMMANDS`]).
pub fn is_host_command(name: &str) -> bool {
    HOST_COMMANDS
        .iter()
        .any(|(host, ..)| host.to_bytes() == name.as_bytes())
}

type RawCommandFn =
    extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// The host's own commands: name, entry point, flags, first key, last key, key step, and the
/// ACL categories set where Redis supports it (7.2+; 7.0 gives module commands none).
const HOST_COMMANDS: &[(&CStr, RawCommandFn, &CStr, c_int, c_int, c_int, &CStr)] = &[
    (
        c"wasm.load",
        wasm_load_entry,
        c"write deny-oom deny-script",
        0,
        0,
        0,
        c"write slow scripting",
    ),
    (
        c"wasm.unload",
        wasm_unload_entry,
        c"write deny-script",
        0,
        0,
        0,
        c"write slow scripting",
    ),
    (
        c"wasm.list",
        wasm_list_entry,
        c"readonly allow-busy deny-script",
        0,
        0,
        0,
        c"slow scripting",
    ),
    (
        c"wasm.debug",
        wasm_debug_entry,
        c"admin deny-script",
        0,
        0,
        0,
        c"admin dangerous",
    ),
    (
        c"wasm.dump",
        wasm_dump_entry,
        c"readonly deny-script",
        0,
        0,
        0,
        c"slow scripting",
    ),
    (
        c"wasm.restore",
        wasm_restore_entry,
        c"write deny-oom deny-script",
        0,
        0,
        0,
        c"write slow scripting",
    ),
    (
        c"wasm.setvalue",
        wasm_setvalue_entry,
        c"write deny-oom",
        1,
        1,
        1,
        c"write dangerous",
    ),
    (
        c"wasm.kill",
        wasm_kill_entry,
        c"readonly allow-busy deny-script fast",
        0,
        0,
        0,
        c"fast scripting",
    ),
    (
        c"wasm.help",
        wasm_help_entry,
        c"readonly fast",
        0,
        0,
        0,
        c"fast scripting",
    ),
    (
        c"wasm.invoke-write-denyoom",
        dispatch_write_oom_entry,
        c"write deny-oom getkeys-api",
        0,
        0,
        0,
        c"write",
    ),
    (
        c"wasm.invoke-write",
        dispatch_write_entry,
        c"write getkeys-api",
        0,
        0,
        0,
        c"write",
    ),
    (
        c"wasm.invoke-readonly",
        dispatch_readonly_entry,
        c"readonly getkeys-api",
        0,
        0,
        0,
        c"read",
    ),
    (
        c"wasm.invoke",
        dispatch_plain_entry,
        c"getkeys-api",
        0,
        0,
        0,
        c"",
    ),
];

/// Command tips for cluster-aware clients (as on `FUNCTION LOAD`): guests are per node, so loads
/// go to every shard.
const COMMAND_TIPS: &[(&CStr, &CStr)] = &[
    (
        c"wasm.load",
        c"request_policy:all_shards response_policy:all_succeeded",
    ),
    (
        c"wasm.unload",
        c"request_policy:all_shards response_policy:all_succeeded",
    ),
    (
        c"wasm.restore",
        c"request_policy:all_shards response_policy:all_succeeded",
    ),
    // As FUNCTION KILL: the busy guest runs on one of the shards.
    (
        c"wasm.kill",
        c"request_policy:all_shards response_policy:one_succeeded",
    ),
];

/// Sets a command's tips (`RedisModule_SetCommandInfo`).
fn set_command_tips(ctx: Ctx, name: &CStr, tips: &CStr) -> bool {
    set_command_info(ctx, name, tips.as_ptr(), 0, ptr::null_mut())
}

/// Gives `WASM.SETVALUE` `RESTORE`'s arity rule (exact, here) and key spec: the key is
/// overwritten (`OW update`), not read, so a user who may only write a key (`%W~`) may set it
/// as it may `RESTORE` it.
fn set_setvalue_info(ctx: Ctx) -> bool {
    let mut key_specs = [
        raw::RedisModuleCommandKeySpec {
            notes: ptr::null(),
            flags: u64::from(raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE),
            begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
            bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
            },
            find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
            fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
                range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                    lastkey: 0,
                    keystep: 1,
                    limit: 0,
                },
            },
        },
        // SAFETY: all zeros is the end marker Redis looks for (no begin-search type).
        unsafe { std::mem::zeroed() },
    ];
    set_command_info(
        ctx,
        c"wasm.setvalue",
        ptr::null(),
        5,
        key_specs.as_mut_ptr(),
    )
}

/// `RedisModule_SetCommandInfo` of `tips` (or NULL), `arity` (0: unchanged) and `key_specs`
/// (NULL, or an array ended by a zeroed spec).
fn set_command_info(
    ctx: Ctx,
    name: &CStr,
    tips: *const c_char,
    arity: c_int,
    key_specs: *mut raw::RedisModuleCommandKeySpec,
) -> bool {
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: ptr::null(),
        complexity: ptr::null(),
        since: ptr::null(),
        history: ptr::null_mut(),
        tips,
        arity,
        key_specs,
        args: ptr::null_mut(),
    };
    // SAFETY: valid OnLoad context; the command exists; Redis copies what it keeps from `info`
    // (`tips` NUL-terminated or NULL, `key_specs` NULL or ended by a zeroed spec).
    unsafe {
        let command = api!(RedisModule_GetCommand)(ctx.0.as_ptr(), name.as_ptr());
        !command.is_null() && api!(RedisModule_SetCommandInfo)(command, &info) == OK
    }
}

extern "C" fn command_filter_entry(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    if let Some(fctx) = NonNull::new(fctx) {
        catch("the command filter", || {
            crate::dispatch::filter(&FilterCtx(fctx))
        });
    }
}

/// Called by Redis when the module loads (`MODULE LOAD` or `loadmodule`).
///
/// # Safety
/// Called by Redis with a valid context and `argc` valid argument strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn RedisModule_OnLoad(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // Nothing may allocate before Init: the global allocator is Redis's, reached through the
    // API table that Init fills in.
    // SAFETY: Redis passes a valid context; the name is a static C string.
    let status = unsafe {
        raw::Export_RedisModule_Init(
            ctx,
            c"wasm".as_ptr(),
            crate::MODULE_VERSION,
            raw::REDISMODULE_APIVER_1 as c_int,
        )
    };
    if status == ERR {
        return ERR;
    }
    let Some(ctx) = NonNull::new(ctx).map(Ctx) else {
        return ERR;
    };
    // Redis keeps this library mapped after a failed load, and with it every static: a second
    // load would find guests, types and routes that point into the first load's freed module.
    if LOAD_ATTEMPTED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        ctx.log(
            LogLevel::Warning,
            "an earlier MODULE LOAD of the host failed in this process: restart redis-server \
             to load it",
        );
        return ERR;
    }
    pin_library();
    let argv: &[*mut raw::RedisModuleString] = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid module argument strings.
        Ok(n) if n > 0 && !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    let mut filter: *mut raw::RedisModuleCommandFilter = ptr::null_mut();
    let loaded = catch("module load", || {
        for &(name, entry, flags, first, last, step, categories) in HOST_COMMANDS {
            // SAFETY: valid OnLoad context; static C strings; `entry` is a panic-safe trampoline.
            let status = unsafe {
                api!(RedisModule_CreateCommand)(
                    ctx.0.as_ptr(),
                    name.as_ptr(),
                    Some(entry),
                    flags.as_ptr(),
                    first,
                    last,
                    step,
                )
            };
            if status != OK {
                ctx.log(
                    LogLevel::Warning,
                    &format!("could not register {}", name.to_string_lossy()),
                );
                return false;
            }
            // SAFETY: reading an optional API pointer; Redis 7.0 leaves it NULL (see
            // `commands::refused_as_stand_in` for what the host does instead).
            if let Some(set_categories) = unsafe { raw::RedisModule_SetCommandACLCategories } {
                // SAFETY: valid OnLoad context; the command was just created.
                unsafe {
                    let command = api!(RedisModule_GetCommand)(ctx.0.as_ptr(), name.as_ptr());
                    if !command.is_null() {
                        set_categories(command, categories.as_ptr());
                    }
                }
            }
        }
        for &(name, tips) in COMMAND_TIPS {
            if !set_command_tips(ctx, name, tips) {
                ctx.log(
                    LogLevel::Warning,
                    &format!("could not set the tips of {}", name.to_string_lossy()),
                );
            }
        }
        if !set_setvalue_info(ctx) {
            ctx.log(
                LogLevel::Warning,
                "could not set the key spec of wasm.setvalue",
            );
        }
        // SAFETY: valid OnLoad context; the callback is panic-safe. The filter also sees calls
        // made by guests (no NOSELF flag), so guests can call each other's commands by name.
        filter = unsafe {
            api!(RedisModule_RegisterCommandFilter)(ctx.0.as_ptr(), Some(command_filter_entry), 0)
        };
        if filter.is_null() {
            ctx.log(LogLevel::Warning, "could not register the command filter");
            return false;
        }
        // SAFETY: the OnLoad context of this module; the detached context made from it is
        // kept for the server's life (the module cannot be unloaded).
        let log_ctx = unsafe { api!(RedisModule_GetDetachedThreadSafeContext)(ctx.0.as_ptr()) };
        LOG_CTX.store(log_ctx, std::sync::atomic::Ordering::Release);
        crate::on_load(ctx, Args { argv })
    });
    if loaded == Some(true) {
        return OK;
    }
    // Redis frees the module, its commands and configs, but not its filter or event listener:
    // both would run against the freed module.
    if !filter.is_null() {
        // SAFETY: the filter this context registered above, not yet unregistered.
        unsafe { api!(RedisModule_UnregisterCommandFilter)(ctx.0.as_ptr(), filter) };
    }
    ctx.stop_config_change();
    ERR
}

/// Set by the first `OnLoad` in this process, successful or not.
static LOAD_ATTEMPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps this library mapped for the life of the process, whatever Redis does with its handle:
/// the epoch and compile threads, wasmtime's signal handlers and compiled guests run its code.
fn pin_library() {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let anchor: unsafe extern "C" fn(
        *mut raw::RedisModuleCtx,
        *mut *mut raw::RedisModuleString,
        c_int,
    ) -> c_int = RedisModule_OnLoad;
    // SAFETY: dladdr writes `info` for an address inside a loaded object; dlopen with
    // RTLD_NOLOAD only takes another reference to that already loaded object (never loads or
    // runs anything) and RTLD_NODELETE keeps it mapped. The handle is kept on purpose.
    unsafe {
        if libc::dladdr(anchor as *const libc::c_void, info.as_mut_ptr()) != 0 {
            let path = info.assume_init().dli_fname;
            if !path.is_null() {
                libc::dlopen(
                    path,
                    libc::RTLD_LAZY | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                );
            }
        }
    }
}

/// Called by Redis on `MODULE UNLOAD`. The host refuses: guests' compiled code and the engine's
/// background thread live inside this library.
#[unsafe(no_mangle)]
pub extern "C" fn RedisModule_OnUnload(_ctx: *mut raw::RedisModuleCtx) -> c_int {
    log_host(
        LogLevel::Warning,
        "the redis-wasm module cannot be unloaded; restart the server instead",
    );
    ERR
}

#[cfg(test)]
mod tests {
    use super::{escape_controls, shown};

    #[test]
    fn log_lines_and_messages_cannot_be_split_or_garbled() {
        // A quoted name with a newline must not start a forged log line.
        assert_eq!(
            escape_controls("import 'x\n123:M 01 Jan * DB saved'\t\x1b[31m"),
            "import 'x\\x0a123:M 01 Jan * DB saved'\t\\x1b[31m"
        );
        assert_eq!(shown(b"a\r\nb"), "a\\r\\nb");
        assert_eq!(
            shown(&[b'x'; 70]),
            format!("{}... (70 bytes)", "x".repeat(64))
        );
    }
}
