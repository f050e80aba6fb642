//! # hello — Redis's example module, as a guest
//!
//! A port of `src/modules/helloworld.c` from Redis 7.0.15: the same 16 commands, names, flags and
//! replies, written with the guest SDK. Each command says which part of the module API it shows.
//!
//! Where the C module crashes the server (`HELLO.LIST.SUM.LEN` on a key of another type,
//! `HELLO.LIST.SPLICE k k 3` with the same key twice) this port answers an error. Where the C
//! module forgets to replicate its low-level writes, the host replicates them.
//!
//! Build:  `cargo build -p hello --target wasm32-wasip2 --profile guest`
//! Load:   `redis-cli WASM.LOAD $PWD/target/wasm32-wasip2/guest/hello.wasm`
//! Call:   `redis-cli HELLO.PUSH.NATIVE mylist a` → `(integer) 1`

use std::cell::Cell;

use redis_wasm_sdk::{
    Context, KeyType, ListWhere, NO_EXPIRE, RedisError, RedisResult, RedisString, RedisValue,
    redis_module,
};

/// `HELLO.SIMPLE`: the selected database (`RedisModule_GetSelectedDb`).
fn hello_simple(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::Integer(i64::from(ctx.get_selected_db())))
}

/// `HELLO.PUSH.NATIVE key value`: RPUSH with the low-level list API.
fn hello_push_native(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 3 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key_writable(&args[1])?;
    // Like the C module, a failed push (the key holds another type) is not reported: the reply is
    // the value's length either way.
    let _ = key.list_push(ListWhere::Tail, &args[2]);
    Ok(RedisValue::from(key.value_length()?))
}

/// `HELLO.PUSH.CALL key value`: RPUSH through `call`. Like the C module, a failed RPUSH replies
/// with `RedisModule_CallReplyInteger`'s value for a non-integer: the smallest integer.
fn hello_push_call(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 3 {
        return Err(RedisError::WrongArity);
    }
    let reply = ctx.call("RPUSH", &[&args[1], &args[2]])?;
    Ok(RedisValue::Integer(reply.integer()))
}

/// `HELLO.PUSH.CALL2 key value`: like HELLO.PUSH.CALL, replying with the call's reply as it is.
fn hello_push_call2(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 3 {
        return Err(RedisError::WrongArity);
    }
    let reply = ctx.call("RPUSH", &[&args[1], &args[2]])?;
    ctx.reply_with_call_reply(&reply);
    Ok(RedisValue::NoReply)
}

/// `HELLO.LIST.SUM.LEN key`: total length of a list's elements, reading an array call reply.
fn hello_list_sum_len(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 2 {
        return Err(RedisError::WrongArity);
    }
    let reply = ctx.call("LRANGE", &[&args[1], &0i64, &-1i64])?;
    if reply.is_error() {
        // The C module walks the error as if it were an array and crashes; pass the error on.
        ctx.reply_with_call_reply(&reply);
        return Ok(RedisValue::NoReply);
    }
    let total: usize = reply.iter().map(|element| element.len()).sum();
    Ok(RedisValue::from(total))
}

/// Shared by both splice commands: moves `count` elements from the tail of `src` to the head of
/// `dst`.
fn splice(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let src = ctx.open_key_writable(&args[1])?;
    // The same key twice crashes the C module; here the host refuses the second handle.
    let dst = ctx.open_key_writable(&args[2]).map_err(|e| match e {
        redis_wasm_sdk::KeyError::AlreadyOpen => {
            RedisError::Str("ERR source and destination must be different keys")
        }
        other => other.into(),
    })?;
    let is_list_or_empty = |key: &redis_wasm_sdk::Key| -> Result<bool, RedisError> {
        Ok(matches!(key.key_type()?, KeyType::List | KeyType::Empty))
    };
    if !is_list_or_empty(&src)? || !is_list_or_empty(&dst)? {
        return Err(RedisError::WrongType);
    }
    let count = match args[3].parse_integer() {
        Ok(count) if count >= 0 => count,
        _ => return Err(RedisError::Str("ERR invalid count")),
    };
    for _ in 0..count {
        let Some(element) = src.list_pop(ListWhere::Tail)? else {
            break;
        };
        dst.list_push(ListWhere::Head, &element)?;
    }
    Ok(RedisValue::from(src.value_length()?))
}

/// `HELLO.LIST.SPLICE src dst count`.
fn hello_list_splice(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    splice(ctx, &args)
}

/// `HELLO.LIST.SPLICE.AUTO src dst count`: the C version shows automatic memory management,
/// which every guest always has.
fn hello_list_splice_auto(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    splice(ctx, &args)
}

/// A stand-in for C's `rand()`: a non-negative 31-bit pseudo-random number.
fn rand() -> i64 {
    thread_local!(static STATE: Cell<u64> = const { Cell::new(0x853c_49e6_748f_ea9b) });
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 33) as i64
    })
}

/// `HELLO.RAND.ARRAY count`: an array reply of `count` random numbers.
fn hello_rand_array(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 2 {
        return Err(RedisError::WrongArity);
    }
    let count = match args[1].parse_integer() {
        Ok(count) if count >= 0 => count,
        _ => return Err(RedisError::Str("ERR invalid count")),
    };
    let len = u32::try_from(count).map_err(|_| RedisError::Str("ERR invalid count"))?;
    ctx.reply_with_array(len);
    for _ in 0..len {
        ctx.reply_with_long_long(rand());
    }
    Ok(RedisValue::NoReply)
}

/// `HELLO.REPL1`: replication of calls and of an explicitly replicated command. The replicas
/// receive `MULTI, INCR foo, INCR bar, ECHO foo, EXEC`.
fn hello_repl1(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    ctx.replicate("ECHO", &[&"foo"])?;
    ctx.call("INCR", &[&"foo"])?;
    ctx.call("INCR", &[&"bar"])?;
    Ok(RedisValue::Integer(0))
}

/// `HELLO.REPL2 key`: increments every element of a list with the low-level API and replicates
/// the command verbatim. Replies with the sum of the new values.
fn hello_repl2(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 2 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key_writable(&args[1])?;
    if key.key_type()? != KeyType::List {
        return Err(RedisError::WrongType);
    }
    let mut sum: i64 = 0;
    for _ in 0..key.value_length()? {
        let element = key.list_pop(ListWhere::Tail)?.unwrap_or_default();
        let value = element.parse_integer().unwrap_or(0).wrapping_add(1);
        sum = sum.wrapping_add(value);
        key.list_push(ListWhere::Head, RedisString::from_i64(value))?;
    }
    ctx.replicate_verbatim()?;
    Ok(RedisValue::Integer(sum))
}

/// `HELLO.TOGGLE.CASE key`: flips the case of a string's ASCII letters in place (the C version
/// uses `RedisModule_StringDMA`; guests read and write byte ranges) and replicates verbatim.
fn hello_toggle_case(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 2 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key_writable(&args[1])?;
    match key.key_type()? {
        KeyType::String => {
            let mut bytes = key.string_read(0, key.value_length()?)?;
            for b in &mut bytes {
                *b = if b.is_ascii_uppercase() {
                    b.to_ascii_lowercase()
                } else {
                    b.to_ascii_uppercase()
                };
            }
            key.string_write(0, &bytes)?;
        }
        KeyType::Empty => {}
        _ => return Err(RedisError::WrongType),
    }
    ctx.replicate_verbatim()?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `HELLO.MORE.EXPIRE key milliseconds`: extends an existing expire.
fn hello_more_expire(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 3 {
        return Err(RedisError::WrongArity);
    }
    let add = args[2]
        .parse_integer()
        .map_err(|_| RedisError::Str("ERR invalid expire time"))?;
    let key = ctx.open_key_writable(&args[1])?;
    let expire = key.get_expire()?;
    if expire != NO_EXPIRE {
        // As in C, a resulting negative time is refused by Redis and ignored here.
        let _ = key.set_expire(expire.wrapping_add(add));
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `HELLO.ZSUMRANGE key min max`: sums the scores in a range forward and backward.
fn hello_zsumrange(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    let (Ok(start), Ok(end)) = (args[2].parse_float(), args[3].parse_float()) else {
        return Err(RedisError::Str("ERR invalid range"));
    };
    // The C version opens the key for writing although it only reads (and the command is
    // read-only); guests may only write from `write` commands, so this opens it for reading.
    let key = ctx.open_key(&args[1])?;
    if key.key_type()? != KeyType::Zset {
        return Err(RedisError::WrongType);
    }
    let mut forward = 0.0;
    key.zset_first_in_score_range(start, end, false, false)?;
    while !key.zset_range_end_reached()? {
        if let Some((_, score)) = key.zset_range_current_element()? {
            forward += score;
        }
        key.zset_range_next()?;
    }
    key.zset_range_stop();
    let mut backward = 0.0;
    key.zset_last_in_score_range(start, end, false, false)?;
    while !key.zset_range_end_reached()? {
        if let Some((_, score)) = key.zset_range_current_element()? {
            backward += score;
        }
        key.zset_range_prev()?;
    }
    key.zset_range_stop();
    Ok(RedisValue::Array(vec![
        RedisValue::Double(forward),
        RedisValue::Double(backward),
    ]))
}

/// `HELLO.LEXRANGE key min_lex max_lex min_age max_age`: members in a lex range, with a
/// postponed-length array reply. (Like the C version, the ages are not used.)
fn hello_lexrange(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 6 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key(&args[1])?;
    if key.key_type()? != KeyType::Zset {
        return Err(RedisError::WrongType);
    }
    if key.zset_first_in_lex_range(&args[2], &args[3]).is_err() {
        // The C module's error has no error code.
        return Err(RedisError::Str("invalid range"));
    }
    let mut len = 0;
    ctx.reply_with_postponed_array();
    while !key.zset_range_end_reached()? {
        if let Some((member, _)) = key.zset_range_current_element()? {
            ctx.reply_with_string(&member);
            len += 1;
        }
        key.zset_range_next()?;
    }
    key.zset_range_stop();
    ctx.reply_set_array_length(len);
    Ok(RedisValue::NoReply)
}

/// `HELLO.HCOPY key srcfield dstfield`: copies a hash field; 1 if it existed, else 0.
fn hello_hcopy(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key_writable(&args[1])?;
    if !matches!(key.key_type()?, KeyType::Hash | KeyType::Empty) {
        return Err(RedisError::WrongType);
    }
    let old = key.hash_get(&[args[2].as_slice()])?.pop().flatten();
    if let Some(value) = &old {
        key.hash_set(
            redis_wasm_sdk::HashSetFlags::empty(),
            &[(args[3].as_slice(), Some(value.as_slice()))],
        )?;
    }
    Ok(RedisValue::Integer(i64::from(old.is_some())))
}

/// `HELLO.LEFTPAD str len ch`: left-pads a string, building it in the per-command pool.
fn hello_leftpad(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    let padlen = match args[2].parse_integer() {
        Ok(len) if len >= 0 => len as u64,
        _ => return Err(RedisError::Str("ERR invalid padding length")),
    };
    let text = args[1].as_slice();
    if text.len() as u64 >= padlen {
        return Ok(RedisValue::BulkRedisString(args[1].clone()));
    }
    let [pad] = args[3].as_slice() else {
        return Err(RedisError::Str("ERR padding must be a single char"));
    };
    let total =
        usize::try_from(padlen).map_err(|_| RedisError::Str("ERR invalid padding length"))?;
    let buffer = ctx.pool_alloc(total);
    let fill = total - text.len();
    buffer[..fill].fill(*pad);
    buffer[fill..].copy_from_slice(text);
    ctx.reply_with_string_buffer(buffer);
    Ok(RedisValue::NoReply)
}

/// Logs the load arguments, as the C module prints them.
fn init(ctx: &redis_wasm_sdk::InitContext, args: &[RedisString]) -> Result<(), RedisError> {
    for (j, arg) in args.iter().enumerate() {
        ctx.log(
            redis_wasm_sdk::LogLevel::Notice,
            &format!("Module loaded with ARGV[{j}] = {arg}"),
        );
    }
    Ok(())
}

// The C module is named "helloworld"; this guest is "hello" so it can be loaded next to the
// `helloworld` example.
redis_module! {
    name: "hello",
    version: 1,
    init: init,
    commands: [
        ["hello.simple", hello_simple, "readonly", 0, 0, 0],
        ["hello.push.native", hello_push_native, "write deny-oom", 1, 1, 1],
        ["hello.push.call", hello_push_call, "write deny-oom", 1, 1, 1],
        ["hello.push.call2", hello_push_call2, "write deny-oom", 1, 1, 1],
        ["hello.list.sum.len", hello_list_sum_len, "readonly", 1, 1, 1],
        ["hello.list.splice", hello_list_splice, "write deny-oom", 1, 2, 1],
        ["hello.list.splice.auto", hello_list_splice_auto, "write deny-oom", 1, 2, 1],
        ["hello.rand.array", hello_rand_array, "readonly", 0, 0, 0],
        ["hello.repl1", hello_repl1, "write", 0, 0, 0],
        ["hello.repl2", hello_repl2, "write", 1, 1, 1],
        ["hello.toggle.case", hello_toggle_case, "write", 1, 1, 1],
        ["hello.more.expire", hello_more_expire, "write", 1, 1, 1],
        ["hello.zsumrange", hello_zsumrange, "readonly", 1, 1, 1],
        ["hello.lexrange", hello_lexrange, "readonly", 1, 1, 1],
        ["hello.hcopy", hello_hcopy, "write deny-oom", 1, 1, 1],
        ["hello.leftpad", hello_leftpad, "", 1, 1, 1],
    ],
}
