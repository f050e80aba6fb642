//! # helloworld — the smallest guest
//!
//! The first example of the Redis modules documentation, as a WebAssembly guest:
//! `HELLOWORLD.RAND` replies with a random integer.
//!
//! Build:  `cargo build -p helloworld --target wasm32-wasip2 --profile guest`
//!         (the guest is `target/wasm32-wasip2/guest/helloworld.wasm`)
//! Load:   `redis-cli WASM.LOAD $PWD/target/wasm32-wasip2/guest/helloworld.wasm`
//! Call:   `redis-cli HELLOWORLD.RAND`  →  `(integer) 1068897285` (the first call after a load)

use redis_wasm_sdk::{Context, RedisError, RedisResult, RedisString, RedisValue, redis_module};

/// A small xorshift generator; a guest has no access to OS randomness unless the host grants it.
fn next_random() -> i64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = const { Cell::new(0x2545_f491_4f6c_dd1d) });
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        // Like C's rand(): a non-negative 31-bit value.
        (x >> 33) as i64
    })
}

/// Borrows its arguments (`&[RedisString]`): it keeps none, and the SDK then reuses one
/// argument vector for every call instead of allocating one.
fn helloworld_rand(_ctx: &Context, args: &[RedisString]) -> RedisResult {
    if args.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    Ok(RedisValue::Integer(next_random()))
}

redis_module! {
    name: "helloworld",
    version: 1,
    commands: [
        ["helloworld.rand", helloworld_rand, "readonly fast random", 0, 0, 0],
    ],
}
