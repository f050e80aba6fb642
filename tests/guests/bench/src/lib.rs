//! The benchmark cases as a guest. Each command has the same logic as its twin in
//! `benchmarks/native` (a native module) and in `benchmarks/bench.lua` (Lua), so
//! `scripts/bench.sh` compares runtimes, not algorithms. The commands borrow their arguments
//! (`&[RedisString]`), as a guest author would write them, except `BG.ECHO`, which keeps its
//! argument as the reply and so takes them owned.

use redis_wasm_sdk::{
    BatchElement, Context, HashSetFlags, ListWhere, RedisError, RedisResult, RedisString,
    RedisValue, parse_integer, redis_module,
};

/// `sum + value`, or an error rather than a wrapped sum (as the native twin answers).
fn add(sum: i64, value: i64) -> Result<i64, RedisError> {
    sum.checked_add(value)
        .ok_or(RedisError::Str("ERR the sum overflows"))
}

/// `BG.INT`: replies an integer.
fn int(_ctx: &Context, _args: &[RedisString]) -> RedisResult {
    Ok(RedisValue::Integer(42))
}

/// `BG.RMW key`: reads a counter with the low-level API, adds one, writes it back, and
/// replicates the command verbatim (as its native twin does).
fn rmw(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let value = read_modify_write(ctx, args)?;
    ctx.replicate_verbatim()?;
    Ok(RedisValue::Integer(value))
}

/// `BG.RMWFX key`: the same, with the write replicated as its effect (`SET`), the host's default.
fn rmw_effects(ctx: &Context, args: &[RedisString]) -> RedisResult {
    Ok(RedisValue::Integer(read_modify_write(ctx, args)?))
}

fn read_modify_write(ctx: &Context, args: &[RedisString]) -> Result<i64, RedisError> {
    let key = ctx.open_key_writable(&args[1])?;
    let current = key.string_get()?;
    let value = if current.is_empty() {
        0
    } else {
        current.parse_integer()?
    }
    .checked_add(1)
    .ok_or(RedisError::Str("ERR increment or decrement would overflow"))?;
    key.string_set(RedisString::from_i64(value))?;
    Ok(value)
}

/// `BG.INCR key`: INCR through a call.
fn incr(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let reply = ctx.call("INCR", &[&args[1]])?.into_result()?;
    Ok(RedisValue::Integer(reply.integer()))
}

/// `BG.PUSH key value`: pushes with the low-level API, replicates verbatim (as its native twin
/// does) and replies the length.
fn push(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let key = ctx.open_key_writable(&args[1])?;
    key.list_push(ListWhere::Tail, &args[2])?;
    ctx.replicate_verbatim()?;
    Ok(RedisValue::from(key.value_length()?))
}

/// `BG.HSET key field value [field value ...]`: sets the fields with the low-level API,
/// replicates verbatim (as its native twin does) and replies how many were added.
fn hset(ctx: &Context, args: &[RedisString]) -> RedisResult {
    if !args.len().is_multiple_of(2) {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key_writable(&args[1])?;
    let fields: Vec<(&[u8], Option<&[u8]>)> = args[2..]
        .chunks(2)
        .map(|pair| (pair[0].as_slice(), Some(pair[1].as_slice())))
        .collect();
    let updated = key.hash_set(HashSetFlags::empty(), &fields)?;
    ctx.replicate_verbatim()?;
    Ok(RedisValue::Integer(fields.len() as i64 - updated as i64))
}

/// `BG.ZSUM key`: the sum of every score, iterating a range (read in batches: one crossing per
/// 128 members instead of three per member).
fn zsum(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    let mut sum = 0.0;
    key.zset_first_in_score_range(f64::NEG_INFINITY, f64::INFINITY, false, false)?;
    loop {
        let batch = key.zset_range_next_batch(128)?;
        if batch.is_empty() {
            break;
        }
        sum += batch.scores().iter().sum::<f64>();
    }
    Ok(RedisValue::Double(sum))
}

/// `BG.LSUM key`: the sum of a list of integers, read in batches (one crossing per 128
/// elements instead of one per element).
fn lsum(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    let mut sum: i64 = 0;
    let mut start = 0;
    loop {
        let batch = key.list_range(start, 128)?;
        if batch.is_empty() {
            break;
        }
        for element in batch.iter() {
            sum = add(sum, parse_integer(element)?)?;
        }
        start += batch.len() as i64;
    }
    Ok(RedisValue::Integer(sum))
}

/// `BG.HSUM key`: the sum of a hash's values, scanned in batches (one crossing per 128
/// fields).
fn hsum(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    let mut sum: i64 = 0;
    loop {
        let batch = key.scan(128)?;
        for (_field, value) in batch.iter() {
            sum = add(sum, parse_integer(value)?)?;
        }
        if batch.is_done() {
            return Ok(RedisValue::Integer(sum));
        }
    }
}

/// `BG.CALLS-DB n`: `n` calls of the cheapest host function (no arguments, a number back), for
/// the cost of one crossing.
fn calls_db(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let mut sum = 0;
    for _ in 0..args[1].parse_integer()? {
        sum += i64::from(ctx.get_selected_db());
    }
    Ok(RedisValue::Integer(sum))
}

/// `BG.CALLS-LEN key n`: `n` calls of a key function (`value-length` of one open key).
fn calls_len(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    let mut sum = 0;
    for _ in 0..args[2].parse_integer()? {
        sum += key.value_length()? as i64;
    }
    Ok(RedisValue::Integer(sum))
}

/// `BG.CALLS-GET key n`: `n` calls of a key function that returns bytes (`string-read`).
fn calls_get(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    let mut sum = 0;
    for _ in 0..args[2].parse_integer()? {
        sum += key.string_get()?.len() as i64;
    }
    Ok(RedisValue::Integer(sum))
}

/// `BG.CALLS-OPEN key n`: `n` times opening a key and closing it (two host calls).
fn calls_open(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let n = args[2].parse_integer()?;
    for _ in 0..n {
        ctx.open_key(&args[1])?;
    }
    Ok(RedisValue::Integer(n))
}

/// `BG.LRANGE key`: the sum of a list of integers, through a call of `LRANGE` (its elements
/// read in batches, without copying).
fn lrange(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let reply = ctx.call("LRANGE", &[&args[1], &0, &-1])?.into_result()?;
    let mut sum: i64 = 0;
    let mut start = 0;
    loop {
        let batch = reply.elements(start, 128);
        if batch.is_empty() {
            break;
        }
        for element in batch.iter() {
            let BatchElement::Bulk(text) = element else {
                return Err(RedisError::Str(
                    "ERR value is not an integer or out of range",
                ));
            };
            sum = add(sum, parse_integer(text)?)?;
        }
        start += batch.len();
    }
    Ok(RedisValue::Integer(sum))
}

/// `BG.LOOP`: 10,000 rounds of xorshift.
fn xorshift(_ctx: &Context, _args: &[RedisString]) -> RedisResult {
    // black_box: the seed is opaque, so the compiler cannot fold the loop away.
    let mut x: u32 = std::hint::black_box(2_463_534_242);
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
    }
    Ok(RedisValue::Integer(i64::from(x)))
}

/// `BG.ECHO value`: replies its argument.
fn echo(_ctx: &Context, mut args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::BulkRedisString(args.swap_remove(1)))
}

/// `BG.ARRAY`: a 100-element array.
fn array(_ctx: &Context, _args: &[RedisString]) -> RedisResult {
    Ok(RedisValue::Array(
        (0..100).map(RedisValue::Integer).collect(),
    ))
}

redis_module! {
    name: "bench",
    version: 1,
    commands: [
        ["bg.int", int, "readonly fast", 0, 0, 0, arity = 1],
        ["bg.rmw", rmw, "write deny-oom fast", 1, 1, 1, arity = 2],
        ["bg.rmwfx", rmw_effects, "write deny-oom fast", 1, 1, 1, arity = 2],
        ["bg.incr", incr, "write deny-oom fast", 1, 1, 1, arity = 2],
        ["bg.push", push, "write deny-oom fast", 1, 1, 1, arity = 3],
        ["bg.hset", hset, "write deny-oom fast", 1, 1, 1, arity = -4],
        ["bg.zsum", zsum, "readonly", 1, 1, 1, arity = 2],
        ["bg.lsum", lsum, "readonly", 1, 1, 1, arity = 2],
        ["bg.hsum", hsum, "readonly", 1, 1, 1, arity = 2],
        ["bg.calls-db", calls_db, "readonly", 0, 0, 0, arity = 2],
        ["bg.calls-len", calls_len, "readonly", 1, 1, 1, arity = 3],
        ["bg.calls-get", calls_get, "readonly", 1, 1, 1, arity = 3],
        ["bg.calls-open", calls_open, "readonly", 1, 1, 1, arity = 3],
        ["bg.lrange", lrange, "readonly", 1, 1, 1, arity = 2],
        ["bg.loop", xorshift, "readonly", 0, 0, 0, arity = 1],
        ["bg.echo", echo, "readonly", 0, 0, 0, arity = 2],
        ["bg.array", array, "readonly fast", 0, 0, 0, arity = 1],
    ],
}
