//! The context of a running command: replies and logging.

use crate::value::RedisValue;
use crate::wit::redis::module::{log, reply, types};

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
    _private: (),
}

impl Context {
    pub(crate) const fn new() -> Self {
        Context { _private: () }
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

    /// `RedisModule_ReplyWithSimpleString`. The string must not contain CR or LF.
    pub fn reply_with_simple_string(&self, value: &str) {
        reply::reply_with_simple_string(value);
    }

    /// `RedisModule_ReplyWithError`. The leading uppercase word is the error code; `ERR` is added
    /// when there is none.
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

    /// Sends a whole [`RedisValue`] as the reply.
    pub fn reply_with_value(&self, value: &RedisValue) {
        value.emit();
    }
}
