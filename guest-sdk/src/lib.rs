//! # redis-wasm-sdk: Redis commands as WebAssembly guests
//!
//! Write a Redis module in Rust, build it for `wasm32-wasip2`, and load it into a running server
//! with `WASM.LOAD`. The host (`redis-wasm`) runs it sandboxed; this crate gives guest code the
//! shape of a native Redis module written with the `redis-module` crate: a command function
//! gets a [`Context`] and its arguments and returns a [`RedisResult`]. It may borrow its
//! arguments (`&[RedisString]`, [`CommandSliceFn`]: no allocation per command) or own them
//! (`Vec<RedisString>`, [`CommandFn`], the `redis-module` crate's form).
//!
//! ```no_run
//! use redis_wasm_sdk::{redis_module, Context, RedisResult, RedisString, RedisValue, RedisError};
//!
//! fn rand(_ctx: &Context, args: &[RedisString]) -> RedisResult {
//!     if args.len() != 1 {
//!         return Err(RedisError::WrongArity);
//!     }
//!     Ok(RedisValue::Integer(4)) // chosen by fair dice roll
//! }
//!
//! redis_module! {
//!     name: "helloworld",
//!     version: 1,
//!     commands: [
//!         ["helloworld.rand", rand, "readonly fast", 0, 0, 0],
//!     ],
//! }
//! ```
//!
//! ## What lives where
//! - [`Context`] (`context.rs`): the running command — replies, calls, keys, replication,
//!   database, logging, pool allocation.
//! - [`CallReply`], [`CallArg`] (`call.rs`): `RedisModule_Call` and its replies, with
//!   [`CallReplyBatch`] for reading an aggregate's elements many per crossing.
//! - [`Key`] (`key.rs`): low-level key access, with batched reads of lists
//!   ([`ListRangeBatch`]), sorted-set ranges ([`ZsetRangeBatch`]) and scans of hashes, sets
//!   and sorted sets ([`ScanBatch`]).
//! - [`BlockedClient`] (`blocking.rs`): blocking commands and background jobs.
//! - [`InitContext`] (`init.rs`): the guest's init — command registration, load arguments —
//!   and the two forms of command function ([`CommandFunction`]).
//! - [`DataType`], [`DataValue`] (`datatype.rs`): data types whose values live in keys.
//! - [`RedisString`], [`NextArg`], [`parse_integer`], [`parse_float`] (`string.rs`):
//!   binary-safe arguments and their parsing.
//! - [`RedisValue`], [`RedisError`] (`value.rs`): what a command returns.
//! - `runtime.rs`: glue between the WIT exports and your functions (used by [`redis_module!`]):
//!   a guest built with the SDK targets the `module-words` world, so arguments of up to 112 bytes
//!   packed reach it as fourteen words (`word-arguments.invoke`), other short ones packed into
//!   one list (`packed-arguments.invoke`), long ones as a list each (`guest.invoke`).
//! - [`wit`]: the raw generated bindings of the `redis:module` WIT world, for what the friendly
//!   layer does not cover yet.

#![deny(missing_docs)]

// Lets the generated bindings name this crate the same way from inside and from guests.
extern crate self as redis_wasm_sdk;

mod blocking;
mod call;
mod context;
mod datatype;
mod init;
mod key;
mod runtime;
mod string;
mod value;

pub use blocking::{BlockedClient, BlockedPhase};
pub use call::{BatchElement, CallArg, CallError, CallFlags, CallReply, CallReplyBatch, ReplyType};
pub use context::{Context, ContextFlags, LogLevel, NotifyEvent, ReplicateFlags};
pub use datatype::{DataType, DataValue};
pub use init::{
    BorrowedArguments, CommandFn, CommandFunction, CommandSliceFn, InitContext, InitFn,
    OwnedArguments,
};
pub use key::{
    HashSetFlags, Key, KeyError, KeyType, ListRangeBatch, ListWhere, NO_EXPIRE, ScanBatch,
    ZaddFlags, ZaddOutcome, ZsetRangeBatch,
};
pub use string::{NextArg, RedisString, parse_float, parse_integer};
pub use value::{ERRORMSG_WRONGTYPE, RedisError, RedisResult, RedisValue};

/// The API version this SDK speaks (`REDISMODULE_APIVER_1`).
pub const API_VERSION: i32 = 1;

#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::{
        CommandDef, ModuleDef, form_of, init, invoke, invoke_packed, invoke_words,
    };
    pub use wit_bindgen;
}

/// The generated bindings of the `redis:module` WIT world `module-words`.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod wit {
    wit_bindgen::generate!({
        world: "module-words",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_guest",
        default_bindings_module: "redis_wasm_sdk::wit",
        runtime_path: "redis_wasm_sdk::__private::wit_bindgen::rt",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// Declares a guest module: its name, version, commands and optional init function.
///
/// Each command row is `[name, handler, flags, first_key, last_key, key_step]`, as in
/// `RedisModule_CreateCommand`, optionally followed by `arity = N` to let the host check the
/// argument count (N exact, -N at least N, counting the command name). The handler is a
/// [`CommandSliceFn`] or a [`CommandFn`] (see [`CommandFunction`]).
///
/// ```text
/// redis_module! {
///     name: "hello",
///     version: 1,
///     init: my_init,          // optional: fn(&InitContext, &[RedisString]) -> Result<(), RedisError>
///     data_types: [MY_TYPE],  // optional: statics of type DataType, registered before commands
///     commands: [
///         ["hello.simple", hello_simple, "readonly", 0, 0, 0],
///         ["hello.get", hello_get, "readonly", 1, 1, 1, arity = 2],
///     ],
/// }
/// ```
#[macro_export]
macro_rules! redis_module {
    (
        name: $name:expr,
        version: $version:expr,
        $(init: $init:expr,)?
        $(data_types: [$($data_type:expr),* $(,)?],)?
        commands: [
            $([
                $cmd_name:expr,
                $cmd_fn:expr,
                $cmd_flags:expr,
                $first_key:expr,
                $last_key:expr,
                $key_step:expr
                $(, arity = $arity:expr)?
                $(,)?
            ]),* $(,)?
        ] $(,)?
    ) => {
        #[doc(hidden)]
        fn __redis_wasm_module_def() -> $crate::__private::ModuleDef {
            $crate::__private::ModuleDef {
                name: $name,
                version: $version,
                init: { #[allow(unused_mut)] let mut init: Option<$crate::InitFn> = None; $(init = Some($init);)? init },
                data_types: vec![$($(&$data_type),*)?],
                commands: vec![
                    $($crate::__private::CommandDef {
                        name: $cmd_name,
                        handler: {
                            let function = $cmd_fn;
                            $crate::__private::form_of(&function).handler(function)
                        },
                        flags: $cmd_flags,
                        first_key: $first_key,
                        last_key: $last_key,
                        key_step: $key_step,
                        arity: { #[allow(unused_mut)] let mut arity = 0; $(arity = $arity;)? arity },
                    }),*
                ],
            }
        }

        #[doc(hidden)]
        struct __RedisWasmGuest;

        impl $crate::wit::exports::redis::module::guest::Guest for __RedisWasmGuest {
            fn init(args: ::std::vec::Vec<::std::vec::Vec<u8>>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::init(__redis_wasm_module_def(), args)
            }
            fn invoke(command: u32, args: ::std::vec::Vec<::std::vec::Vec<u8>>) -> ::std::option::Option<i64> {
                $crate::__private::invoke(command, args)
            }
        }

        impl $crate::wit::exports::redis::module::packed_arguments::Guest for __RedisWasmGuest {
            fn invoke(command: u32, args: ::std::option::Option<::std::vec::Vec<u8>>) -> ::std::option::Option<i64> {
                $crate::__private::invoke_packed(command, args)
            }
        }

        impl $crate::wit::exports::redis::module::word_arguments::Guest for __RedisWasmGuest {
            fn invoke(command: u32, length: u32, words: (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64)) -> ::std::option::Option<i64> {
                $crate::__private::invoke_words(command, length, words)
            }
        }

        $crate::wit::export_guest!(__RedisWasmGuest with_types_in $crate::wit);
    };
    // Anything else: say what the macro takes rather than which token it did not expect.
    ($($anything:tt)*) => {
        ::std::compile_error!(
            "redis_module! takes, in this order: `name: \"...\",` `version: N,` optionally \
             `init: function,` optionally `data_types: [STATIC, ...],` and `commands: [[name, \
             handler, flags, first key, last key, key step] or [..., arity = N], ...]`"
        );
    };
}
