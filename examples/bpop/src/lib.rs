//! # bpop — a blocking pop on keys, as a guest
//!
//! BPOP.BLPOP behaves like Redis's BLPOP: it pops the first element of the first non-empty list
//! among its keys, or blocks the client until one of them gets an element (Redis signals lists
//! as ready when they are pushed to) or the timeout passes.
//!
//! It shows `Context::block_client_on_keys`: the command runs again in phase `Reply` for each
//! key that becomes ready, and serves the client by replying — or, when another client was
//! faster and the list is empty again, replies nothing and keeps waiting.
//!
//! Build:  `cargo build -p bpop --target wasm32-wasip2 --profile guest`
//! Load:   `redis-cli WASM.LOAD $PWD/target/wasm32-wasip2/guest/bpop.wasm`
//! Call:   `redis-cli BPOP.BLPOP jobs 5` (blocks), then from another client `RPUSH jobs a` →
//!         the first gets `1) "jobs" 2) "a"`

use redis_wasm_sdk::{
    BlockedPhase, Context, ListWhere, RedisError, RedisResult, RedisString, RedisValue,
    redis_module,
};

/// Pops the head of `key` if it is a non-empty list: `[key, element]`.
fn pop(ctx: &Context, key: &RedisString) -> Result<Option<RedisValue>, RedisError> {
    let list = ctx.open_key_writable(key)?;
    Ok(list.list_pop(ListWhere::Head)?.map(|element| {
        RedisValue::Array(vec![
            RedisValue::BulkRedisString(key.clone()),
            RedisValue::BulkRedisString(element),
        ])
    }))
}

/// BPOP.BLPOP key [key ...] timeout — `timeout` in seconds (decimals allowed, 0 waits forever).
fn blpop(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    match ctx.blocked_phase() {
        BlockedPhase::Reply => {
            let Some(ready) = ctx.blocked_client_ready_key() else {
                return Ok(RedisValue::NoReply);
            };
            // Empty again (another client popped first), or no longer a list (BLPOP ignores
            // other types a waited-on key takes): keep waiting.
            return match pop(ctx, &ready) {
                Err(RedisError::WrongType) => Ok(RedisValue::NoReply),
                popped => Ok(popped?.unwrap_or(RedisValue::NoReply)),
            };
        }
        BlockedPhase::Timeout => {
            ctx.reply_with_null_array();
            return Ok(RedisValue::NoReply);
        }
        _ => {}
    }
    if args.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    // Checked before anything is popped, with BLPOP's messages.
    let seconds = args[args.len() - 1]
        .parse_float()
        .ok()
        .filter(|s| !s.is_nan())
        .ok_or(RedisError::Str(
            "ERR timeout is not a float or out of range",
        ))?;
    if seconds < 0.0 {
        return Err(RedisError::Str("ERR timeout is negative"));
    }
    // The host's longest timeout (2^40 ms, about 34 years; BLPOP's own limit is far higher).
    let timeout_ms = (seconds * 1000.0).ceil();
    if timeout_ms > (1u64 << 40) as f64 {
        return Err(RedisError::Str("ERR timeout is out of range"));
    }
    let keys = &args[1..args.len() - 1];
    for key in keys {
        if let Some(popped) = pop(ctx, key)? {
            return Ok(popped);
        }
    }
    match ctx.block_client_on_keys(keys, timeout_ms as i64, &[]) {
        Ok(_) => Ok(RedisValue::NoReply),
        // Where a client cannot block (MULTI, scripts), answer as if the timeout passed.
        Err(_) => {
            ctx.reply_with_null_array();
            Ok(RedisValue::NoReply)
        }
    }
}

redis_module! {
    name: "bpop",
    version: 1,
    commands: [
        ["bpop.blpop", blpop, "write", 1, -2, 1],
    ],
}
