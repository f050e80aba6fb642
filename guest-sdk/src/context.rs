//! The context of a running command: replies and logging.

use std::cell::RefCell;

use crate::call::{CallArg, CallFlags, CallReply, with_args};
use crate::key::{Key, KeyError};
use crate::string::RedisString;
use crate::value::{RedisError, RedisValue};
use crate::wit::redis::module::keys::OpenMode;
use crate::wit::redis::module::{call, context, keys, log, replication, reply, types};

pub use crate::wit::redis::module::context::ContextFlags;
/// Keyspace event classes for [`Context::notify_keyspace_event`] (`GENERIC`, `STRING`, `LIST`,
/// `SET`, `HASH`, `ZSET`, `EXPIRED`, `EVICTED`, `STREAM`, `KEY_MISS`, `MODULE`, `NEW`).
pub use crate::wit::redis::module::context::NotifyClass as NotifyEvent;
pub use crate::wit::redis::module::replication::ReplicateFlags;

/// Levels of the Redis log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `verbose`
    Verbose,
    /// `notice`
    Notice,
    /// `warning`
    Warning,
}

impl From<LogLevel> for types::LogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => types::LogLevel::Debug,
            LogLevel::Verbose => types::LogLevel::Verbose,
            LogLevel::Notice => types::LogLevel::Notice,
            LogLevel::Warning => types::LogLevel::Warning,
        }
    }
}

/// The running command (`RedisModuleCtx`). Handed to every command function.
///
/// Replies can be returned as a [`RedisValue`] from the command function, or written step by step
/// with the `reply_with_*` methods (then return [`RedisValue::NoReply`]). Either way the host
/// checks that exactly one complete reply was produced before anything reaches the client.
#[derive(Debug)]
pub struct Context {
    /// Chunks of the per-command pool (see [`Context::pool_alloc`]), freed with the context.
    pool: RefCell<Vec<Box<[u8]>>>,
}

impl Context {
    pub(crate) const fn new() -> Self {
        Context {
            pool: RefCell::new(Vec::new()),
        }
    }

    /// `RedisModule_PoolAlloc`: zeroed scratch memory that lives until the command returns.
    #[allow(clippy::mut_from_ref)] // each chunk is a fresh allocation, handed out once
    pub fn pool_alloc(&self, len: usize) -> &mut [u8] {
        let mut chunk = vec![0u8; len].into_boxed_slice();
        let ptr: *mut [u8] = &mut *chunk;
        self.pool.borrow_mut().push(chunk);
        // SAFETY: the boxed slice is owned by `self.pool`, which only grows (moving the Box
        // pointers, never their heap contents) and is freed when the Context is dropped; the
        // returned borrow is tied to `&self`, and every chunk is handed out exactly once.
        unsafe { &mut *ptr }
    }

    /// `RedisModule_Call`: runs a Redis command. Arguments can be text, bytes, [`RedisString`]s,
    /// integers, or slices of those. Effects are replicated automatically.
    ///
    /// `Err` means the command did not run (unknown, wrong arity, not allowed, ...); an error the
    /// command itself returns (such as `WRONGTYPE`) is an `Ok` reply of type error.
    pub fn call(
        &self,
        command: &str,
        args: &[&dyn CallArg],
    ) -> Result<CallReply, crate::call::CallError> {
        self.call_ext(command, args, CallFlags::empty())
    }

    /// [`call`](Self::call) with `RedisModule_Call` modifiers (RESP3, no AOF, ...).
    pub fn call_ext(
        &self,
        command: &str,
        args: &[&dyn CallArg],
        flags: CallFlags,
    ) -> Result<CallReply, crate::call::CallError> {
        with_args(args, |args| call::call(command, args, flags)).map(CallReply::from)
    }

    /// Opens a key for reading (`RedisModule_OpenKey` with `REDISMODULE_READ`).
    pub fn open_key(&self, name: impl AsRef<[u8]>) -> Result<Key, KeyError> {
        crate::key::close_dropped();
        keys::open_key(name.as_ref(), OpenMode::READ).map(Key)
    }

    /// Opens a key for reading and writing (the command must be flagged `write`).
    pub fn open_key_writable(&self, name: impl AsRef<[u8]>) -> Result<Key, KeyError> {
        crate::key::close_dropped();
        keys::open_key(name.as_ref(), OpenMode::READ | OpenMode::WRITE).map(Key)
    }

    /// `RedisModule_KeyExists`.
    pub fn key_exists(&self, name: impl AsRef<[u8]>) -> bool {
        keys::key_exists(name.as_ref())
    }

    /// `RedisModule_Replicate`: also propagate `command args` to replicas and the AOF, after the
    /// command's other effects.
    pub fn replicate(&self, command: &str, args: &[&dyn CallArg]) -> Result<(), RedisError> {
        self.replicate_ext(command, args, ReplicateFlags::empty())
    }

    /// [`replicate`](Self::replicate) with the `A` (no AOF) / `R` (no replicas) modifiers.
    pub fn replicate_ext(
        &self,
        command: &str,
        args: &[&dyn CallArg],
        flags: ReplicateFlags,
    ) -> Result<(), RedisError> {
        with_args(args, |args| replication::replicate(command, args, flags))
            .map_err(RedisError::String)
    }

    /// `RedisModule_ReplicateVerbatim`: propagate this command itself instead of its effects.
    /// If something already went out as effects (a call's, writes sent ahead of a call,
    /// `select_db`, a yield past `busy-reply-threshold`, a key lookup after an expire that has
    /// passed), it returns `Ok` and the command goes on replicating its effects; a call that may
    /// set an expire ends verbatim replication the same way. Errors in a blocked client's `Reply`/`Timeout` phase, in a
    /// command not flagged `write`, and while clients are paused.
    pub fn replicate_verbatim(&self) -> Result<(), RedisError> {
        replication::replicate_verbatim().map_err(RedisError::String)
    }

    /// `RedisModule_GetSelectedDb`.
    pub fn get_selected_db(&self) -> u32 {
        context::get_selected_db()
    }

    /// `RedisModule_SelectDb` (also changes the calling client's database, like `SELECT`).
    pub fn select_db(&self, db: u32) -> Result<(), RedisError> {
        context::select_db(db).map_err(RedisError::String)
    }

    /// `RedisModule_GetContextFlags`.
    pub fn get_context_flags(&self) -> ContextFlags {
        context::get_context_flags()
    }

    /// `RedisModule_Milliseconds`: Unix time in milliseconds.
    pub fn milliseconds(&self) -> i64 {
        context::milliseconds()
    }

    /// `RedisModule_NotifyKeyspaceEvent`: publishes `event` about `key` (of the selected
    /// database) to keyspace-notification subscribers, when the server's
    /// `notify-keyspace-events` lets `class` through. Writes made through [`Key`] publish
    /// nothing by themselves, as in C; [`call`](Self::call) publishes what its command does.
    ///
    /// ```no_run
    /// # use redis_wasm_sdk::{Context, NotifyEvent, RedisResult, RedisString, RedisValue};
    /// fn touch(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ///     let key = ctx.open_key_writable(&args[1])?;
    ///     key.string_set("1")?;
    ///     ctx.notify_keyspace_event(NotifyEvent::STRING, "touch", &args[1])?;
    ///     Ok(RedisValue::SimpleStringStatic("OK"))
    /// }
    /// ```
    pub fn notify_keyspace_event(
        &self,
        class: NotifyEvent,
        event: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<(), RedisError> {
        context::notify_keyspace_event(class, event, key.as_ref()).map_err(RedisError::String)
    }

    /// Writes a line to the Redis log (`RedisModule_Log`).
    pub fn log(&self, level: LogLevel, message: &str) {
        log::log(level.into(), message);
    }

    /// Logs at `debug` level.
    pub fn log_debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// Logs at `verbose` level.
    pub fn log_verbose(&self, message: &str) {
        self.log(LogLevel::Verbose, message);
    }

    /// Logs at `notice` level.
    pub fn log_notice(&self, message: &str) {
        self.log(LogLevel::Notice, message);
    }

    /// Logs at `warning` level.
    pub fn log_warning(&self, message: &str) {
        self.log(LogLevel::Warning, message);
    }

    /// `RedisModule_ReplyWithLongLong`.
    pub fn reply_with_long_long(&self, value: i64) {
        reply::reply_with_long_long(value);
    }

    /// `RedisModule_ReplyWithSimpleString`. The string must not contain CR, LF or NUL.
    pub fn reply_with_simple_string(&self, value: &str) {
        reply::reply_with_simple_string(value);
    }

    /// `RedisModule_ReplyWithError`, sent as written: start it with an error code (`ERR ...`).
    pub fn reply_with_error(&self, message: &str) {
        reply::reply_with_error(message);
    }

    /// `RedisModule_ReplyWithStringBuffer`: a bulk string.
    pub fn reply_with_string_buffer(&self, value: &[u8]) {
        reply::reply_with_string_buffer(value);
    }

    /// `RedisModule_ReplyWithNull`.
    pub fn reply_with_null(&self) {
        reply::reply_with_null();
    }

    /// `RedisModule_ReplyWithArray`: the next `len` replies are the array's elements.
    pub fn reply_with_array(&self, len: u32) {
        reply::reply_with_array(len);
    }

    /// `RedisModule_WrongArity`: the standard wrong-number-of-arguments error for this command.
    pub fn wrong_arity(&self) {
        reply::wrong_arity();
    }

    /// `RedisModule_ReplyWithString`: a bulk string.
    pub fn reply_with_string(&self, value: &RedisString) {
        reply::reply_with_string_buffer(value.as_slice());
    }

    /// `RedisModule_ReplyWithDouble`.
    pub fn reply_with_double(&self, value: f64) {
        reply::reply_with_double(value);
    }

    /// `RedisModule_ReplyWithBool`.
    pub fn reply_with_bool(&self, value: bool) {
        reply::reply_with_bool(value);
    }

    /// `RedisModule_ReplyWithBigNumber`.
    pub fn reply_with_big_number(&self, digits: &str) {
        reply::reply_with_big_number(digits);
    }

    /// `RedisModule_ReplyWithVerbatimStringType` (`format` is three characters, e.g. `txt`).
    pub fn reply_with_verbatim_string(&self, format: &str, text: &[u8]) {
        reply::reply_with_verbatim_string(format, text);
    }

    /// `RedisModule_ReplyWithMap`: the next `len` key/value pairs are its content.
    pub fn reply_with_map(&self, len: u32) {
        reply::reply_with_map(len);
    }

    /// `RedisModule_ReplyWithSet`.
    pub fn reply_with_set(&self, len: u32) {
        reply::reply_with_set(len);
    }

    /// `RedisModule_ReplyWithNullArray`.
    pub fn reply_with_null_array(&self) {
        reply::reply_with_null_array();
    }

    /// `RedisModule_ReplyWithEmptyArray`.
    pub fn reply_with_empty_array(&self) {
        reply::reply_with_empty_array();
    }

    /// `RedisModule_ReplyWithArray(ctx, REDISMODULE_POSTPONED_LEN)`.
    pub fn reply_with_postponed_array(&self) {
        reply::reply_with_postponed_array();
    }

    /// `RedisModule_ReplySetArrayLength`: closes the innermost postponed array.
    pub fn reply_set_array_length(&self, len: u32) {
        reply::reply_set_array_length(len);
    }

    /// A map whose length is set later with [`reply_set_map_length`](Self::reply_set_map_length).
    pub fn reply_with_postponed_map(&self) {
        reply::reply_with_postponed_map();
    }

    /// `RedisModule_ReplySetMapLength`.
    pub fn reply_set_map_length(&self, len: u32) {
        reply::reply_set_map_length(len);
    }

    /// A set whose length is set later with [`reply_set_set_length`](Self::reply_set_set_length).
    pub fn reply_with_postponed_set(&self) {
        reply::reply_with_postponed_set();
    }

    /// `RedisModule_ReplySetSetLength`.
    pub fn reply_set_set_length(&self, len: u32) {
        reply::reply_set_set_length(len);
    }

    /// `RedisModule_ReplyWithCallReply`: replies with a call's reply as it is.
    pub fn reply_with_call_reply(&self, reply: &CallReply) {
        reply.reply_with();
    }

    /// Sends a whole [`RedisValue`] as the reply.
    pub fn reply_with_value(&self, value: &RedisValue) {
        value.emit();
    }
}
