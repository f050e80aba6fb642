//! # native-baseline — a native Redis module for comparison
//!
//! The logic of the benchmark cases as a native module built with the `redis-module` crate, so
//! benchmarks can compare a guest with the same code running natively. The tests also use
//! `NATIVE.CALL` to check that guest commands answer another module's `RedisModule_Call`.
//!
//! This is a test and benchmark fixture: like the crate's examples, its command trampolines do
//! not catch panics.

use redis_module::{Context, RedisError, RedisResult, RedisString, redis_module};

/// `NATIVE.CALL <command> [arg ...]`: runs a command through `RedisModule_Call` and replies with
/// its result.
fn native_call(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let command = args[1].try_as_str()?;
    let rest: Vec<&RedisString> = args[2..].iter().collect();
    ctx.call(command, rest.as_slice())
}

redis_module! {
    name: "native",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    commands: [
        ["native.call", native_call, "write", 0, 0, 0, ""],
    ],
}
