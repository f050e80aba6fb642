//! The guest's init: registering commands (`RedisModule_CreateCommand`).

use crate::context::{Context, LogLevel};
use crate::datatype::DataType;
use crate::string::RedisString;
use crate::value::{RedisError, RedisResult};
use crate::wit::redis::module::registration;

/// A command function: gets the running command's [`Context`] and its arguments (the first is
/// the command name) and returns the reply. The `redis-module` crate's form; where a command
/// does not keep its arguments, [`CommandSliceFn`] is faster.
pub type CommandFn = fn(&Context, Vec<RedisString>) -> RedisResult;

/// A command function that borrows its arguments: the SDK fills one vector, kept from command
/// to command, for every command of this form, where a [`CommandFn`] gets a vector of its own
/// (an allocation and a free in every command: with Rust's default allocator about 240 wasm
/// instructions, a third of what the guest runs for a command that replies an integer).
pub type CommandSliceFn = fn(&Context, &[RedisString]) -> RedisResult;

/// What [`redis_module!`](crate::redis_module) and [`InitContext::create_command`] take as a
/// command's handler: a function (or closure) of either form, [`CommandFn`] (`Form` is
/// [`OwnedArguments`]) or [`CommandSliceFn`] (`Form` is [`BorrowedArguments`]). The compiler
/// picks the form from the function's signature; a closure needs its parameter types written.
///
/// ```no_run
/// use redis_wasm_sdk::{Context, InitContext, RedisError, RedisResult, RedisString, RedisValue};
///
/// fn borrows(_ctx: &Context, args: &[RedisString]) -> RedisResult {
///     Ok(RedisValue::Integer(args[1].parse_integer()? + 1))
/// }
///
/// fn owns(_ctx: &Context, mut args: Vec<RedisString>) -> RedisResult {
///     Ok(RedisValue::BulkRedisString(args.swap_remove(1)))
/// }
///
/// fn init(ctx: &InitContext, _args: &[RedisString]) -> Result<(), RedisError> {
///     ctx.create_command("demo.next", borrows, "readonly", 0, 0, 0)?;
///     ctx.create_command("demo.echo", owns, "readonly", 0, 0, 0)?;
///     let fixed = 7;
///     ctx.create_command(
///         "demo.fixed",
///         move |_: &Context, _: &[RedisString]| -> RedisResult { Ok(fixed.into()) },
///         "readonly",
///         0,
///         0,
///         0,
///     )
/// }
/// ```
pub trait CommandFunction<Form>: 'static {
    /// The form's function pointer type ([`CommandFn`] or [`CommandSliceFn`]).
    #[doc(hidden)]
    type Pointer: FunctionPointer;
    #[doc(hidden)]
    fn into_handler(self) -> CommandHandler;
}

/// The [`CommandFunction`] form of a function that owns its arguments (`Vec<RedisString>`).
#[derive(Debug)]
pub enum OwnedArguments {}

/// The [`CommandFunction`] form of a function that borrows its arguments (`&[RedisString]`).
#[derive(Debug)]
pub enum BorrowedArguments {}

/// A registered command's function, of either form: a function pointer (from
/// `redis_module!`) or any [`CommandFunction`] (from [`InitContext::create_command`]).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum CommandHandler {
    OwnedPointer(CommandFn),
    BorrowedPointer(CommandSliceFn),
    Owned(&'static dyn RunOwned),
    Borrowed(&'static dyn RunBorrowed),
}

/// [`CommandFn`] and [`CommandSliceFn`], which make a [`CommandHandler`] as they are.
#[doc(hidden)]
pub trait FunctionPointer {
    fn into_handler(self) -> CommandHandler;
}

impl FunctionPointer for CommandFn {
    fn into_handler(self) -> CommandHandler {
        CommandHandler::OwnedPointer(self)
    }
}

impl FunctionPointer for CommandSliceFn {
    fn into_handler(self) -> CommandHandler {
        CommandHandler::BorrowedPointer(self)
    }
}

/// A command function that owns its arguments, as a trait object. (Not `dyn Fn`: its vtable
/// has three entries, each a copy of the function.)
#[doc(hidden)]
pub trait RunOwned {
    fn run(&self, ctx: &Context, args: Vec<RedisString>) -> RedisResult;
}

/// A command function that borrows its arguments, as a trait object.
#[doc(hidden)]
pub trait RunBorrowed {
    fn run(&self, ctx: &Context, args: &[RedisString]) -> RedisResult;
}

struct Function<F>(F);

impl<F: Fn(&Context, Vec<RedisString>) -> RedisResult> RunOwned for Function<F> {
    fn run(&self, ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        (self.0)(ctx, args)
    }
}

impl<F: Fn(&Context, &[RedisString]) -> RedisResult> RunBorrowed for Function<F> {
    fn run(&self, ctx: &Context, args: &[RedisString]) -> RedisResult {
        (self.0)(ctx, args)
    }
}

// Kept for the life of the instance: a function item or a closure without captures takes no
// memory (and `Box` allocates nothing for it), a function pointer or a closure its size. A
// function item is compiled into its `Function`'s `run`, where a profile no longer names it:
// `redis_module!` makes function pointers instead (see `runtime::CommandForm`).
impl<F: Fn(&Context, Vec<RedisString>) -> RedisResult + 'static> CommandFunction<OwnedArguments>
    for F
{
    type Pointer = CommandFn;
    fn into_handler(self) -> CommandHandler {
        CommandHandler::Owned(Box::leak(Box::new(Function(self))))
    }
}

impl<F: Fn(&Context, &[RedisString]) -> RedisResult + 'static> CommandFunction<BorrowedArguments>
    for F
{
    type Pointer = CommandSliceFn;
    fn into_handler(self) -> CommandHandler {
        CommandHandler::Borrowed(Box::leak(Box::new(Function(self))))
    }
}

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
    /// `flags` and the key positions `first_key`, `last_key`, `key_step`. (A function item
    /// passed here may be compiled into the SDK's glue, where a profile shows it as
    /// `Function<F>::run`; pass `f as CommandSliceFn` or `f as CommandFn` to keep its name.)
    pub fn create_command<Form>(
        &self,
        name: &str,
        handler: impl CommandFunction<Form>,
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
    pub fn create_command_with_arity<Form>(
        &self,
        name: &str,
        handler: impl CommandFunction<Form>,
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
        self.register(spec, handler.into_handler())
    }

    /// Registers the command `spec` describes, run by `handler`.
    pub(crate) fn register(
        &self,
        spec: registration::CommandSpec<'_>,
        handler: CommandHandler,
    ) -> Result<(), RedisError> {
        let name = spec.name;
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
