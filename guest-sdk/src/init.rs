//! The guest's init: registering commands (`RedisModule_CreateCommand`).

use crate::context::{Context, LogLevel};
use crate::datatype::DataType;
use crate::string::RedisString;
use crate::value::{RedisError, RedisResult};
use crate::wit::redis::module::registration;

/// A command function: gets the running command's [`Context`] and its arguments (the first is
/// the command name) and returns the reply.
pub type CommandFn = fn(&Context, Vec<RedisString>) -> RedisResult;

/// An init function, run once when the guest loads, after the commands listed in
/// [`redis_module!`](crate::redis_module) are registered. Gets the load arguments.
pub type InitFn = fn(&InitContext, &[RedisString]) -> Result<(), RedisError>;

/// The guest's init (`RedisModule_OnLoad`'s context): registers more commands and logs.
#[derive(Debug)]
pub struct InitContext {
    _private: (),
}

impl InitContext {
    pub(crate) const fn new() -> Self {
        InitContext { _private: () }
    }

    /// `RedisModule_CreateCommand`: registers `name` handled by `handler`, with Redis command
    /// `flags` and the key positions `first_key`, `last_key`, `key_step`.
    pub fn create_command(
        &self,
        name: &str,
        handler: CommandFn,
        flags: &str,
        first_key: i32,
        last_key: i32,
        key_step: i32,
    ) -> Result<(), RedisError> {
        self.create_command_with_arity(name, handler, flags, first_key, last_key, key_step, 0)
    }

    /// Like [`create_command`](Self::create_command), with an arity the host checks before the
    /// command runs (N exact, -N at least N, counting the command name; 0 = unchecked).
    #[allow(clippy::too_many_arguments)]
    pub fn create_command_with_arity(
        &self,
        name: &str,
        handler: CommandFn,
        flags: &str,
        first_key: i32,
        last_key: i32,
        key_step: i32,
        arity: i32,
    ) -> Result<(), RedisError> {
        let spec = registration::CommandSpec {
            name,
            flags,
            first_key,
            last_key,
            key_step,
            arity,
        };
        let index = registration::create_command(spec).map_err(RedisError::String)?;
        crate::runtime::add_handler(index, name, handler);
        Ok(())
    }

    /// `RedisModule_CreateDataType`: registers a data type for this guest's values. Types listed
    /// in [`redis_module!`](crate::redis_module)'s `data_types` are registered for you.
    pub fn create_data_type(&self, data_type: &'static DataType) -> Result<(), RedisError> {
        let index = registration::create_data_type(data_type.name(), data_type.encoding_version())
            .map_err(RedisError::String)?;
        data_type.set_index(index);
        Ok(())
    }

    /// Writes a line to the Redis log.
    pub fn log(&self, level: LogLevel, message: &str) {
        Context::new().log(level, message);
    }
}
