//! # helloblock — Redis's blocking-command example, as a guest
//!
//! A port of `src/modules/helloblock.c` from Redis 7.0.15: HELLO.BLOCK and HELLO.KEYS block
//! their client and do the work on a background thread while Redis keeps serving others.
//!
//! The C module starts a pthread; a guest asks the host to run the same command again as a
//! background job (`Context::run_in_background`), in a separate instance of the guest on its own
//! thread. C's reply, timeout and free callbacks become phases of the same command
//! (`Context::blocked_phase`); private data is bytes the host keeps and frees.
//!
//! Build:  `cargo build -p helloblock --target wasm32-wasip2 --profile guest`
//! Load:   `redis-cli WASM.LOAD $PWD/target/wasm32-wasip2/guest/helloblock.wasm`
//! Call:   `redis-cli HELLO.BLOCK 1 5000` → a random integer after one second;
//!         `redis-cli HELLO.BLOCK 2 1000` → `Request timedout`; `redis-cli HELLO.KEYS` → all keys

use redis_wasm_sdk::{
    BlockedPhase, Context, RedisError, RedisResult, RedisString, RedisValue, redis_module,
};

/// Like C's rand(): a non-negative 31-bit value. Each background job runs in a fresh instance,
/// so the generator is seeded from the clock.
fn rand() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos | 1;
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    (x >> 33) as i64
}

/// HELLO.BLOCK delay timeout: blocks the client; a background job sleeps `delay` seconds and
/// unblocks it with a random number, unless `timeout` (milliseconds) passes first.
fn hello_block(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    match ctx.blocked_phase() {
        // HelloBlock_Reply: the private data is the number the job chose.
        BlockedPhase::Reply => {
            let data = ctx.blocked_client_private_data().unwrap_or_default();
            let number = data
                .try_into()
                .map(i64::from_le_bytes)
                .map_err(|_| RedisError::Str("ERR bad private data"))?;
            return Ok(RedisValue::Integer(number));
        }
        // HelloBlock_Timeout.
        BlockedPhase::Timeout => return Ok(RedisValue::SimpleStringStatic("Request timedout")),
        // HelloBlock_ThreadMain: sleep, then unblock with the number.
        BlockedPhase::Background => {
            // At most an hour; a negative delay is C's unsigned sleep of ages, so an hour too
            // (the timeout, if any, comes first; the job stops when the client is answered).
            let delay = args[1].parse_integer()?;
            let seconds = if delay < 0 { 3600 } else { delay.min(3600) } as u32;
            for _ in 0..seconds {
                ctx.sleep_ms(1000);
            }
            if let Some(client) = ctx.blocked_client() {
                ctx.unblock_client(client, &rand().to_le_bytes());
            }
            return Ok(RedisValue::NoReply);
        }
        BlockedPhase::Command => {}
    }
    if args.len() != 3 {
        return Err(RedisError::WrongArity);
    }
    let (Ok(_delay), Ok(timeout)) = (args[1].parse_integer(), args[2].parse_integer()) else {
        return Err(RedisError::Str("ERR invalid count"));
    };
    // The C module blocks with a timeout already past, which times out at once.
    if timeout < 0 {
        return Ok(RedisValue::SimpleStringStatic("Request timedout"));
    }
    let client = ctx.block_client(timeout)?;
    if ctx.run_in_background(client, &args).is_err() {
        ctx.abort_block(client);
        return Err(RedisError::Str("ERR Can't start thread"));
    }
    Ok(RedisValue::NoReply)
}

/// HELLO.KEYS: every key, collected with SCAN by a background job that takes Redis's lock for
/// each call, so other clients are served between the SCAN steps.
fn hello_keys(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    // Only `CLIENT UNBLOCK <id>` (or `... TIMEOUT`) gets here (the command blocks with no
    // timeout; `... ERROR` answers the client itself); the C original has no timeout callback, so
    // Redis refuses all three there.
    if ctx.blocked_phase() == BlockedPhase::Timeout {
        return Ok(RedisValue::SimpleStringStatic("Request timedout"));
    }
    if ctx.in_background_job() {
        // HelloKeys_ThreadMain.
        let mut cursor = b"0".to_vec();
        let mut count = 0;
        ctx.reply_with_postponed_array();
        loop {
            let reply = ctx.call("SCAN", &[&cursor])?;
            let (Some(next), Some(keys)) = (reply.element(0), reply.element(1)) else {
                return Err(RedisError::Str("ERR unexpected SCAN reply"));
            };
            for key in keys.iter() {
                ctx.reply_with_call_reply(&key);
                count += 1;
            }
            cursor = next.bytes().map(|c| c.into_owned()).unwrap_or_default();
            if cursor == b"0" || cursor.is_empty() {
                break;
            }
        }
        ctx.reply_set_array_length(count);
        return Ok(RedisValue::NoReply);
    }
    if args.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    // No timeout; the job's reply is the client's.
    let client = ctx.block_client(0)?;
    if ctx.run_in_background(client, &args).is_err() {
        ctx.abort_block(client);
        return Err(RedisError::Str("ERR Can't start thread"));
    }
    Ok(RedisValue::NoReply)
}

redis_module! {
    name: "helloblock",
    version: 1,
    commands: [
        ["hello.block", hello_block, "", 0, 0, 0],
        ["hello.keys", hello_keys, "", 0, 0, 0],
    ],
}
