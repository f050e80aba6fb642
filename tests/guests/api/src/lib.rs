//! Test guest: exercises the module API piece by piece. `API.KEY <op> <key> [args]` runs one
//! low-level key operation; the other commands each probe one behaviour.

use std::cell::RefCell;

use redis_wasm_sdk::{
    BatchElement, BlockedClient, BlockedPhase, CallFlags, CallReply, Context, HashSetFlags, Key,
    KeyError, ListWhere, NextArg, NotifyEvent, RedisError, RedisResult, RedisString, RedisValue,
    ReplyType, ZaddFlags, redis_module,
};

/// `KeyType::Empty` → `empty`.
fn debug_name(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    text.rsplit("::").next().unwrap_or(&text).to_lowercase()
}

fn bulk(s: impl Into<Vec<u8>>) -> RedisValue {
    RedisValue::StringBuffer(s.into())
}

fn describe_key_error(e: &KeyError) -> String {
    match e {
        KeyError::WrongType => "wrong-type".into(),
        KeyError::NotWritable => "not-writable".into(),
        KeyError::AlreadyOpen => "already-open".into(),
        KeyError::Closed => "closed".into(),
        KeyError::OutOfRange => "out-of-range".into(),
        KeyError::Invalid(m) => format!("invalid: {m}"),
        KeyError::NoRange => "no-range".into(),
    }
}

/// Turns a key result into a reply: the value, or an error naming the key error.
fn key_result(r: Result<RedisValue, KeyError>) -> RedisResult {
    r.map_err(|e| RedisError::String(format!("KEYERR {}", describe_key_error(&e))))
}

/// Describes a call reply as nested arrays: [type, payload...].
fn describe(reply: &CallReply) -> RedisValue {
    let t = reply.reply_type();
    let name = debug_name(&t);
    let mut out = vec![bulk(name)];
    match t {
        ReplyType::String | ReplyType::Error => out.push(RedisValue::BulkRedisString(
            reply.string().unwrap_or_default(),
        )),
        ReplyType::Integer => out.push(RedisValue::Integer(reply.integer())),
        ReplyType::Double => out.push(RedisValue::Double(reply.double().unwrap_or(f64::NAN))),
        ReplyType::Bool => out.push(RedisValue::Integer(i64::from(
            reply.boolean().unwrap_or(false),
        ))),
        ReplyType::BigNumber => out.push(bulk(reply.big_number().unwrap_or_default())),
        ReplyType::VerbatimString => {
            let (format, text) = reply.verbatim().unwrap_or_default();
            out.push(bulk(format));
            out.push(bulk(text));
        }
        ReplyType::Array | ReplyType::Set => out.push(RedisValue::Array(
            reply.iter().map(|e| describe(&e)).collect(),
        )),
        ReplyType::Map => {
            let mut pairs = Vec::new();
            for i in 0..reply.len() {
                if let Some((k, v)) = reply.map_element(i) {
                    pairs.push(describe(&k));
                    pairs.push(describe(&v));
                }
            }
            out.push(RedisValue::Array(pairs));
        }
        _ => {}
    }
    RedisValue::Array(out)
}

fn resp_flags(which: &RedisString) -> Result<CallFlags, RedisError> {
    Ok(match which.as_slice() {
        b"2" => CallFlags::empty(),
        b"3" => CallFlags::RESP3,
        b"auto" => CallFlags::RESP_AUTO,
        _ => return Err(RedisError::Str("ERR protocol must be 2, 3 or auto")),
    })
}

fn call_args(args: &[RedisString]) -> Vec<&dyn redis_wasm_sdk::CallArg> {
    args.iter()
        .map(|a| a as &dyn redis_wasm_sdk::CallArg)
        .collect()
}

fn call_error(e: redis_wasm_sdk::CallError) -> RedisError {
    let kind = match &e {
        redis_wasm_sdk::CallError::UnknownCommand(_) => "unknown-command",
        redis_wasm_sdk::CallError::WrongArity(_) => "wrong-arity",
        redis_wasm_sdk::CallError::NonLocalKey(_) => "non-local-key",
        redis_wasm_sdk::CallError::ClusterDown(_) => "cluster-down",
        redis_wasm_sdk::CallError::NoPermission(_) => "no-permission",
        redis_wasm_sdk::CallError::OutOfMemory(_) => "out-of-memory",
        redis_wasm_sdk::CallError::WriteNotAllowed(_) => "write-not-allowed",
        redis_wasm_sdk::CallError::NotAllowed(_) => "not-allowed",
        redis_wasm_sdk::CallError::Other(_) => "other",
    };
    RedisError::String(format!("CALLERR {kind}: {}", e.message()))
}

/// `API.CALL <2|3|auto> <command> [args]`: calls and describes the reply.
fn api_call(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    Ok(describe(&call_from_args(ctx, &args)?))
}

/// Makes the call `<2|3|auto> <command> [args]` of `args[1..]`.
fn call_from_args(ctx: &Context, args: &[RedisString]) -> Result<CallReply, RedisError> {
    if args.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let flags = resp_flags(&args[1])?;
    ctx.call_ext(args[2].try_as_str()?, &call_args(&args[3..]), flags)
        .map_err(call_error)
}

/// `API.CONVERT <2|3|auto> <command> [args]`: calls, and replies the call's reply converted into
/// a `RedisValue` (`From<&CallReply>`), with whether it was a status reply.
fn api_convert(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let reply = call_from_args(ctx, &args)?;
    Ok(RedisValue::Array(vec![
        RedisValue::from(&reply),
        RedisValue::Bool(reply.is_status()),
    ]))
}

/// `API.ELEMENTS <2|3|auto> <batch size> <command> [args]`: calls, then reads the reply's
/// elements in batches. Replies the batch sizes, the elements as the batches give them
/// (`integer`, `[bulk|status|error, bytes]`, `null`, `other`), and the reply's `iter()` described.
fn api_elements(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() < 4 {
        return Err(RedisError::WrongArity);
    }
    let flags = resp_flags(&args[1])?;
    let max = u32::try_from(args[2].parse_unsigned_integer()?).unwrap_or(u32::MAX);
    let reply = ctx
        .call_ext(args[3].try_as_str()?, &call_args(&args[4..]), flags)
        .map_err(call_error)?;
    let (mut sizes, mut elements, mut start) = (Vec::new(), Vec::new(), 0);
    loop {
        let batch = reply.elements(start, max);
        if batch.is_empty() {
            break;
        }
        sizes.push(RedisValue::Integer(batch.len() as i64));
        start += batch.len();
        elements.extend(batch.iter().map(|element| match element {
            BatchElement::Integer(n) => RedisValue::Integer(n),
            BatchElement::Bulk(b) => {
                RedisValue::Array(vec![bulk("bulk"), RedisValue::StringBuffer(b.to_vec())])
            }
            BatchElement::Status(s) => {
                RedisValue::Array(vec![bulk("status"), RedisValue::StringBuffer(s.to_vec())])
            }
            BatchElement::Error(e) => {
                RedisValue::Array(vec![bulk("error"), RedisValue::StringBuffer(e.to_vec())])
            }
            BatchElement::Null => bulk("null"),
            BatchElement::Other => bulk("other"),
        }));
    }
    Ok(RedisValue::Array(vec![
        RedisValue::Array(sizes),
        RedisValue::Array(elements),
        RedisValue::Array(reply.iter().map(|e| describe(&e)).collect()),
    ]))
}

/// `API.FWDNEST <depth> <2|3|auto> <command> [args]`: calls, and replies with the call's reply
/// inside `depth` arrays of one element each.
fn api_forward_nested(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() < 4 {
        return Err(RedisError::WrongArity);
    }
    let depth = args[1].parse_integer()?;
    let flags = resp_flags(&args[2])?;
    let reply = ctx
        .call_ext(args[3].try_as_str()?, &call_args(&args[4..]), flags)
        .map_err(call_error)?;
    for _ in 0..depth {
        ctx.reply_with_array(1);
    }
    ctx.reply_with_call_reply(&reply);
    Ok(RedisValue::NoReply)
}

/// `API.FORWARD <2|3|auto> <command> [args]`: calls and replies with the call's reply as it is.
fn api_forward(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let flags = resp_flags(&args[1])?;
    let reply = ctx
        .call_ext(args[2].try_as_str()?, &call_args(&args[3..]), flags)
        .map_err(call_error)?;
    ctx.reply_with_call_reply(&reply);
    Ok(RedisValue::NoReply)
}

/// Same as API.CALL, from a command flagged `write`.
fn api_wcall(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    api_call(ctx, args)
}

/// `API.PARSE <value>`: [SDK integer parse, host integer parse, host double parse].
fn api_parse(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let value = args.into_iter().nth(1).ok_or(RedisError::WrongArity)?;
    let show =
        |r: Result<RedisValue, RedisError>| r.unwrap_or_else(|e| RedisValue::Error(e.to_string()));
    let host_int =
        redis_wasm_sdk::wit::redis::module::strings::string_to_long_long(value.as_slice())
            .map(RedisValue::Integer)
            .map_err(RedisError::String);
    Ok(RedisValue::Array(vec![
        show(value.parse_integer().map(RedisValue::Integer)),
        show(host_int),
        show(value.parse_float().map(RedisValue::Double)),
    ]))
}

/// `API.TYPES`: one reply of every RESP3 type.
fn api_types(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::Array(vec![
        RedisValue::Map(vec![(bulk("a"), RedisValue::Integer(1))]),
        RedisValue::Set(vec![bulk("x")]),
        RedisValue::Double(1.5),
        RedisValue::Bool(true),
        RedisValue::Bool(false),
        RedisValue::BigNumber("-12345678901234567890123".into()),
        RedisValue::VerbatimString("txt".into(), b"some text".to_vec()),
        RedisValue::NullArray,
        RedisValue::Null,
        RedisValue::Error("ERR inner".into()),
    ]))
}

/// `API.POSTPONED`: nested postponed aggregates closed innermost first.
fn api_postponed(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    ctx.reply_with_postponed_array();
    ctx.reply_with_long_long(1);
    ctx.reply_with_postponed_map();
    ctx.reply_with_simple_string("k");
    ctx.reply_with_postponed_set();
    ctx.reply_with_long_long(2);
    ctx.reply_with_long_long(3);
    ctx.reply_set_set_length(2);
    ctx.reply_set_map_length(1);
    ctx.reply_with_empty_array();
    ctx.reply_set_array_length(3);
    Ok(RedisValue::NoReply)
}

/// `API.BADPOSTPONED <case>`: postponed-length mistakes.
fn api_bad_postponed(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    match args.get(1).map(RedisString::as_slice) {
        Some(b"never-set") => {
            ctx.reply_with_postponed_array();
            ctx.reply_with_long_long(1);
        }
        Some(b"wrong-count") => {
            ctx.reply_with_postponed_array();
            ctx.reply_with_long_long(1);
            ctx.reply_set_array_length(2);
        }
        Some(b"wrong-kind") => {
            ctx.reply_with_postponed_map();
            ctx.reply_set_array_length(0);
        }
        _ => ctx.reply_set_array_length(0),
    }
    Ok(RedisValue::NoReply)
}

fn where_(arg: &RedisString) -> Result<ListWhere, RedisError> {
    match arg.as_slice() {
        b"head" => Ok(ListWhere::Head),
        b"tail" => Ok(ListWhere::Tail),
        _ => Err(RedisError::Str("ERR where must be head or tail")),
    }
}

fn zflags(arg: &RedisString) -> ZaddFlags {
    let mut flags = ZaddFlags::empty();
    for word in arg.to_string().split(',') {
        match word {
            "nx" => flags |= ZaddFlags::NX,
            "xx" => flags |= ZaddFlags::XX,
            "gt" => flags |= ZaddFlags::GT,
            "lt" => flags |= ZaddFlags::LT,
            _ => {}
        }
    }
    flags
}

fn outcome(o: redis_wasm_sdk::ZaddOutcome) -> &'static str {
    use redis_wasm_sdk::ZaddOutcome;
    if o.contains(ZaddOutcome::ADDED) {
        "ADDED"
    } else if o.contains(ZaddOutcome::UPDATED) {
        "UPDATED"
    } else {
        "NOP"
    }
}

fn opt(s: &RedisString) -> Option<&[u8]> {
    (s.as_slice() != b"-").then_some(s.as_slice())
}

/// Runs one key operation on an open key.
fn key_op(
    ctx: &Context,
    key: &Key,
    op: &str,
    args: &mut impl Iterator<Item = RedisString>,
) -> Result<RedisValue, RedisError> {
    let r: Result<RedisValue, KeyError> = match op {
        "type" => key.key_type().map(|t| bulk(debug_name(&t))),
        "len" => key.value_length().map(RedisValue::from),
        "delete" => key.delete().map(|()| RedisValue::SimpleStringStatic("OK")),
        "unlink" => key.unlink().map(|()| RedisValue::SimpleStringStatic("OK")),
        "get-expire" => key.get_expire().map(RedisValue::Integer),
        "set-expire" => key
            .set_expire(args.next_i64()?)
            .map(|()| RedisValue::SimpleStringStatic("OK")),
        "get-abs-expire" => key.get_abs_expire().map(RedisValue::Integer),
        "set-abs-expire" => key
            .set_abs_expire(args.next_i64()?)
            .map(|()| RedisValue::SimpleStringStatic("OK")),
        "string-set" => key
            .string_set(args.next_arg()?)
            .map(|()| RedisValue::SimpleStringStatic("OK")),
        "string-get" => key.string_get().map(RedisValue::BulkRedisString),
        "string-read" => {
            let (offset, len) = (args.next_u64()? as usize, args.next_u64()? as usize);
            key.string_read(offset, len).map(RedisValue::StringBuffer)
        }
        "string-write" => {
            let offset = args.next_u64()? as usize;
            key.string_write(offset, args.next_arg()?.as_slice())
                .map(|()| RedisValue::SimpleStringStatic("OK"))
        }
        "string-truncate" => key
            .string_truncate(args.next_u64()? as usize)
            .map(|()| RedisValue::SimpleStringStatic("OK")),
        "list-push" => {
            let w = where_(&args.next_arg()?)?;
            key.list_push(w, args.next_arg()?)
                .map(|()| RedisValue::SimpleStringStatic("OK"))
        }
        "list-pop" => key
            .list_pop(where_(&args.next_arg()?)?)
            .map(RedisValue::from),
        "list-get" => key
            .list_get(args.next_i64()?)
            .map(RedisValue::BulkRedisString),
        "list-set" => {
            let i = args.next_i64()?;
            key.list_set(i, args.next_arg()?)
                .map(|()| RedisValue::SimpleStringStatic("OK"))
        }
        "list-insert" => {
            let i = args.next_i64()?;
            key.list_insert(i, args.next_arg()?)
                .map(|()| RedisValue::SimpleStringStatic("OK"))
        }
        "list-delete" => key
            .list_delete(args.next_i64()?)
            .map(|()| RedisValue::SimpleStringStatic("OK")),
        "zset-add" => {
            let (flags, score, member) = (
                zflags(&args.next_arg()?),
                args.next_f64()?,
                args.next_arg()?,
            );
            key.zset_add(score, member, flags).map(|o| bulk(outcome(o)))
        }
        "zset-incrby" => {
            let (flags, incr, member) = (
                zflags(&args.next_arg()?),
                args.next_f64()?,
                args.next_arg()?,
            );
            key.zset_incrby(incr, member, flags).map(|(score, o)| {
                RedisValue::Array(vec![RedisValue::Double(score), bulk(outcome(o))])
            })
        }
        "zset-score" => key
            .zset_score(args.next_arg()?)
            .map(|s| s.map_or(RedisValue::Null, RedisValue::Double)),
        "zset-rem" => key.zset_rem(args.next_arg()?).map(RedisValue::Bool),
        "list-get-then" => {
            // list-get-then <index> <op> [args]: an index-based list read, then `op` on the
            // same open key (Redis keeps a list iterator in the key after the read).
            let got = key.list_get(args.next_i64()?)?;
            let op = args.next_string()?;
            let then = key_op(ctx, key, &op, args)?;
            Ok(RedisValue::Array(vec![
                RedisValue::BulkRedisString(got),
                then,
            ]))
        }
        "write-in-range" => {
            // write-in-range <op> [args]: starts a score range over the whole set, runs the
            // write `op`, then reads the range's current element (the write ends the range).
            key.zset_first_in_score_range(f64::NEG_INFINITY, f64::INFINITY, false, false)?;
            let op = args.next_string()?;
            let written = key_op(ctx, key, &op, args)?;
            let after = match key.zset_range_current_element() {
                Ok(Some((member, _))) => RedisValue::BulkRedisString(member),
                Ok(None) => bulk("none"),
                Err(e) => bulk(describe_key_error(&e)),
            };
            Ok(RedisValue::Array(vec![written, after]))
        }
        "zset-range" => {
            // zset-range <score|lex> <first|last> <min> <max> [minex maxex]
            let by = args.next_string()?;
            let last = args.next_string()? == "last";
            let (min, max) = (args.next_arg()?, args.next_arg()?);
            let started = if by == "lex" {
                if last {
                    key.zset_last_in_lex_range(&min, &max)
                } else {
                    key.zset_first_in_lex_range(&min, &max)
                }
            } else {
                let (lo, hi) = (min.parse_float()?, max.parse_float()?);
                let minex = args.next().is_some_and(|a| a.as_slice() == b"1");
                let maxex = args.next().is_some_and(|a| a.as_slice() == b"1");
                if last {
                    key.zset_last_in_score_range(lo, hi, minex, maxex)
                } else {
                    key.zset_first_in_score_range(lo, hi, minex, maxex)
                }
            };
            started.and_then(|()| {
                let mut out = Vec::new();
                while !key.zset_range_end_reached()? {
                    if let Some((m, s)) = key.zset_range_current_element()? {
                        out.push(RedisValue::BulkRedisString(m));
                        out.push(RedisValue::Double(s));
                    }
                    if last {
                        key.zset_range_prev()?
                    } else {
                        key.zset_range_next()?
                    };
                }
                key.zset_range_stop();
                Ok(RedisValue::Array(out))
            })
        }
        "list-mixed" => {
            // list-mixed: index-based reads around writes through the same key, in one command
            // (reads go on from Redis's cached list iterator until a write); replies what the
            // reads saw, in order.
            let mut seen = Vec::new();
            let mut read = |key: &Key, index: i64| -> Result<(), RedisError> {
                seen.push(RedisValue::BulkRedisString(key.list_get(index)?));
                Ok(())
            };
            read(key, 0)?;
            read(key, 1)?;
            key.list_pop(ListWhere::Head)?;
            read(key, 0)?;
            read(key, 1)?;
            key.list_insert(1, "Y")?;
            read(key, -1)?;
            read(key, 1)?;
            read(key, 2)?;
            key.list_push(ListWhere::Tail, "Z")?;
            read(key, -1)?;
            key.list_set(0, "S")?;
            read(key, 0)?;
            key.list_delete(1)?;
            for element in key.list_range(0, 100)?.iter() {
                seen.push(RedisValue::StringBuffer(element.to_vec()));
            }
            Ok(RedisValue::Array(seen))
        }
        "list-batches" => {
            // list-batches <start> <batch size>: the list from `start` on, read in batches;
            // replies the batch sizes followed by the elements.
            let mut start = args.next_i64()?;
            let max = u32::try_from(args.next_u64()?).unwrap_or(u32::MAX);
            let len = key.value_length()? as i64;
            let (mut sizes, mut elements) = (Vec::new(), Vec::new());
            loop {
                let batch = key.list_range(start, max)?;
                if batch.is_empty() {
                    break;
                }
                sizes.push(RedisValue::Integer(batch.len() as i64));
                elements.extend(batch.iter().map(|e| RedisValue::StringBuffer(e.to_vec())));
                let from = if start < 0 {
                    (start + len).max(0)
                } else {
                    start
                };
                start = from + batch.len() as i64;
            }
            Ok(RedisValue::Array(vec![
                RedisValue::Array(sizes),
                RedisValue::Array(elements),
            ]))
        }
        "zset-batches" => {
            // zset-batches <batch size>: the whole score range, read in batches; replies the
            // batch sizes followed by member, score pairs.
            let max = u32::try_from(args.next_u64()?).unwrap_or(u32::MAX);
            key.zset_first_in_score_range(f64::NEG_INFINITY, f64::INFINITY, false, false)?;
            let (mut sizes, mut elements) = (Vec::new(), Vec::new());
            loop {
                let batch = key.zset_range_next_batch(max)?;
                if batch.is_empty() {
                    break;
                }
                sizes.push(RedisValue::Integer(batch.len() as i64));
                for (member, score) in batch.iter() {
                    elements.push(RedisValue::StringBuffer(member.to_vec()));
                    elements.push(RedisValue::Double(score));
                }
            }
            key.zset_range_stop();
            Ok(RedisValue::Array(vec![
                RedisValue::Array(sizes),
                RedisValue::Array(elements),
            ]))
        }
        "scan-batches" => {
            // scan-batches <batch size> [op args...]: the whole scan, in batches, running `op`
            // once after the first batch; replies the batch sizes followed by the entries.
            let max = u32::try_from(args.next_u64()?).unwrap_or(u32::MAX);
            let (mut sizes, mut entries) = (Vec::new(), Vec::new());
            let mut write = args.next().map(|op| op.to_string_lossy());
            loop {
                let batch = key.scan(max)?;
                sizes.push(RedisValue::Integer(batch.len() as i64));
                for (field, value) in batch.iter() {
                    entries.push(RedisValue::StringBuffer(field.to_vec()));
                    entries.push(RedisValue::StringBuffer(value.to_vec()));
                }
                if batch.is_done() || max == 0 {
                    break;
                }
                if let Some(op) = write.take() {
                    key_op(ctx, key, &op, args)?;
                }
            }
            Ok(RedisValue::Array(vec![
                RedisValue::Array(sizes),
                RedisValue::Array(entries),
            ]))
        }
        "scan-restart" => {
            // scan-restart <batch size>: one batch, then the whole scan again from the start;
            // replies the first batch's size and how many entries the whole scan gave.
            let max = u32::try_from(args.next_u64()?).unwrap_or(u32::MAX);
            let first = key.scan(max)?.len();
            key.scan_restart();
            let mut total = 0;
            loop {
                let batch = key.scan(max)?;
                total += batch.len();
                if batch.is_done() {
                    break;
                }
            }
            Ok(RedisValue::Array(vec![
                RedisValue::Integer(first as i64),
                RedisValue::Integer(total as i64),
            ]))
        }
        "hash-set" => {
            // hash-set <flags> field value|- [field value|-]...
            let words = args.next_string()?;
            let mut flags = HashSetFlags::empty();
            for w in words.split(',') {
                match w {
                    "nx" => flags |= HashSetFlags::NX,
                    "xx" => flags |= HashSetFlags::XX,
                    "count-all" => flags |= HashSetFlags::COUNT_ALL,
                    _ => {}
                }
            }
            let rest: Vec<RedisString> = args.collect();
            let pairs: Vec<(&[u8], Option<&[u8]>)> = rest
                .chunks(2)
                .map(|p| (p[0].as_slice(), p.get(1).and_then(opt)))
                .collect();
            key.hash_set(flags, &pairs)
                .map(|n| RedisValue::Integer(n as i64))
        }
        "hash-get" => {
            let rest: Vec<RedisString> = args.collect();
            let fields: Vec<&[u8]> = rest.iter().map(RedisString::as_slice).collect();
            key.hash_get(&fields).map(RedisValue::from)
        }
        "hash-exists" => {
            let rest: Vec<RedisString> = args.collect();
            let fields: Vec<&[u8]> = rest.iter().map(RedisString::as_slice).collect();
            key.hash_exists(&fields)
                .map(|v| RedisValue::Array(v.into_iter().map(RedisValue::Bool).collect()))
        }
        other => return Err(RedisError::String(format!("ERR unknown op {other}"))),
    };
    let _ = ctx;
    key_result(r)
}

/// `API.KEY <op> <key> [args]`: opens the key for writing and runs one operation.
fn api_key(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let op = args.next_string()?;
    let key = ctx
        .open_key_writable(args.next_arg()?)
        .map_err(|e| RedisError::String(format!("KEYERR {}", describe_key_error(&e))))?;
    key_op(ctx, &key, &op, &mut args)
}

/// `API.RKEY <op> <key> [args]`: the same from a read-only command, opening for reading.
fn api_rkey(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let op = args.next_string()?;
    let key = ctx
        .open_key(args.next_arg()?)
        .map_err(|e| RedisError::String(format!("KEYERR {}", describe_key_error(&e))))?;
    key_op(ctx, &key, &op, &mut args)
}

/// `API.OPEN2 <key> <r|w> <key> <r|w>`: opens two keys; reports what the second open gave.
fn api_open2(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let open = |name: &RedisString, mode: &RedisString| {
        if mode.as_slice() == b"w" {
            ctx.open_key_writable(name)
        } else {
            ctx.open_key(name)
        }
    };
    let _first =
        open(&args[1], &args[2]).map_err(|e| RedisError::String(describe_key_error(&e)))?;
    Ok(match open(&args[3], &args[4]) {
        Ok(_) => bulk("opened"),
        Err(e) => bulk(describe_key_error(&e)),
    })
}

/// `API.READ2 <key> <n>`: opens two read handles on the key, reads the string through the
/// first, opens `n` other keys (reusing freed memory), then reads length and string through the
/// second. Replies [first read, length, second read].
fn api_read2(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let n = args[2].parse_integer()?;
    let first = ctx.open_key(&args[1])?;
    let second = ctx.open_key(&args[1])?;
    let read = first.string_get()?;
    let _others: Vec<_> = (0..n)
        .map(|i| ctx.open_key(format!("{i:0>60}")))
        .collect::<Result<_, _>>()?;
    Ok(RedisValue::Array(vec![
        RedisValue::BulkRedisString(read),
        RedisValue::from(second.value_length()?),
        RedisValue::BulkRedisString(second.string_get()?),
    ]))
}

/// `API.VERBATIMTTL <key> <ms> <before | after>`: sets the key to "v" with a time to live of `ms`
/// through the key API, asking for verbatim replication before or after doing so.
fn api_verbatim_ttl(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let before = args[3].as_slice() == b"before";
    if before {
        ctx.replicate_verbatim()?;
    }
    let key = ctx.open_key_writable(&args[1])?;
    key.string_set("v")?;
    key.set_expire(args[2].parse_integer()?)?;
    if !before {
        ctx.replicate_verbatim()?;
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.EXPIREDEXISTS <key> [verbatim]`: (replicating itself verbatim, with `verbatim`) sets the
/// key to "v" and gives it an expire in the past through a write handle, asks whether the key
/// exists, then reads its length through the handle. Replies [exists, length].
fn api_expired_exists(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.get(2).is_some_and(|a| a.as_slice() == b"verbatim") {
        ctx.replicate_verbatim()?;
    }
    let key = ctx.open_key_writable(&args[1])?;
    key.string_set("v")?;
    key.set_abs_expire(1)?;
    let exists = ctx.key_exists(&args[1]);
    Ok(RedisValue::Array(vec![
        RedisValue::from(i64::from(exists)),
        RedisValue::from(key.value_length()?),
    ]))
}

/// `API.LISTS2 <key> <i> <j> <k> <l>`: two read handles on one list, reading element i through
/// the first, j and k through the second, then l through the first. Replies the four.
fn api_lists2(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let first = ctx.open_key(&args[1])?;
    let second = ctx.open_key(&args[1])?;
    let at = |n: usize| args[n].parse_integer();
    Ok(RedisValue::Array(vec![
        RedisValue::BulkRedisString(first.list_get(at(2)?)?),
        RedisValue::BulkRedisString(second.list_get(at(3)?)?),
        RedisValue::BulkRedisString(second.list_get(at(4)?)?),
        RedisValue::BulkRedisString(first.list_get(at(5)?)?),
    ]))
}

/// `API.DELWHILEOPEN <key>`: pushes through a handle, deletes the key with a call, pushes again
/// through the same handle (reopened after the call). Replies [len before DEL, len after].
fn api_del_while_open(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let key = ctx.open_key_writable(&args[1])?;
    key.list_push(ListWhere::Tail, "a")?;
    let before = key.value_length()?;
    ctx.call("DEL", &[&args[1]])?;
    key.list_push(ListWhere::Tail, "b")?;
    Ok(RedisValue::Array(vec![
        RedisValue::from(before),
        RedisValue::from(key.value_length()?),
    ]))
}

thread_local!(static KEPT: RefCell<Option<Key>> = const { RefCell::new(None) });

/// `API.KEEP <key>`: stores a key handle past the command.
fn api_keep(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    KEPT.with_borrow_mut(|kept| *kept = Some(key));
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.USEKEPT`: uses the stored handle in a later command.
fn api_use_kept(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    KEPT.with_borrow(|kept| match kept {
        Some(key) => key_result(key.key_type().map(|t| bulk(format!("{t:?}")))),
        None => Err(RedisError::Str("ERR nothing kept")),
    })
}

/// `API.RANGECALL <key> [call | open | exists | notify]`: a sorted-set range, then a call, a
/// second read handle on the key, a test whether it exists, or a keyspace notification about
/// it, then the range's next step.
fn api_range_call(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let key = ctx.open_key(&args[1])?;
    key.zset_first_in_score_range(f64::NEG_INFINITY, f64::INFINITY, false, false)?;
    match args.get(2).map(RedisString::as_slice) {
        Some(b"open") => drop(ctx.open_key(&args[1])?),
        Some(b"exists") => drop(ctx.key_exists(&args[1])),
        Some(b"notify") => ctx.notify_keyspace_event(NotifyEvent::GENERIC, "probe", &args[1])?,
        _ => drop(ctx.call("PING", &[])?),
    }
    key_result(key.zset_range_next().map(RedisValue::Bool))
}

/// `API.OPENMANY <n> <i>` (write): opens keys `k0`..`k<n-1>` for reading and holds them, then
/// tries to open `k<i>` for writing (refused: it is open), closes its handle and tries again;
/// answers the two outcomes.
fn api_open_many(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let n = args.next_u64()?;
    let i = args.next_u64()?;
    let mut held: Vec<_> = (0..n)
        .map(|k| ctx.open_key(format!("k{k}")))
        .collect::<Result<_, _>>()?;
    let outcome = |opened: Result<_, KeyError>| match opened {
        Ok(_) => bulk("opened"),
        Err(e) => bulk(describe_key_error(&e)),
    };
    let first = outcome(ctx.open_key_writable(format!("k{i}")));
    held.remove(i as usize);
    let second = outcome(ctx.open_key_writable(format!("k{i}")));
    Ok(RedisValue::Array(vec![first, second]))
}

/// `API.REPLICATE <command> [args]`: explicit replication.
fn api_replicate(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.replicate(args[1].try_as_str()?, &call_args(&args[2..]))?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.ORDER <key>`: explicit replicate first, then a key write, then a call. Replicas get the
/// key write, the call, then the explicit command.
fn api_order(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.replicate("ECHO", &[&"explicit"])?;
    ctx.open_key_writable(&args[1])?
        .list_push(ListWhere::Tail, "low-level")?;
    ctx.call("RPUSH", &[&args[1], &"called"])?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.VERBATIMAFTERCALL <key>`: asks for verbatim replication after a replicated call.
fn api_verbatim_after_call(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.call("INCR", &[&args[1]])?;
    ctx.replicate_verbatim()?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.VERBATIMCALL <command> [args]`: replicates itself verbatim, then makes the call (so a
/// replica replaying it makes the call too) and replies its reply; an error reply of the call
/// is its own.
fn api_verbatim_call(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.replicate_verbatim()?;
    let reply = ctx.call(args[1].try_as_str()?, &[&&args[2..]])?;
    match reply.reply_type() {
        ReplyType::Error => Err(RedisError::String(
            reply.string().unwrap_or_default().to_string_lossy(),
        )),
        _ => Ok(RedisValue::from(&reply)),
    }
}

/// `API.VERBATIMNOREPL <key> <other>`: replicates verbatim, sets `key` by a call kept from
/// replicas (`no-replicas`), then tries to open `other` for writing (its user may not be allowed:
/// the verbatim replication is then abandoned for the effects).
fn api_verbatim_no_replicas(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.replicate_verbatim()?;
    ctx.call_ext("SET", &[&args[1], &"1"], CallFlags::NO_REPLICAS)
        .map_err(call_error)?;
    let other = ctx.open_key_writable(&args[2]).is_ok();
    Ok(RedisValue::Bool(other))
}

/// `API.VERBATIMAFTERWRITE <key>`: a low-level write, a read-only call (which sends the write
/// ahead of it), then replicate-verbatim (refused: the write already went out).
fn api_verbatim_after_write(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.open_key_writable(&args[1])?
        .list_push(ListWhere::Tail, "x")?;
    ctx.call_ext("PING", &[], CallFlags::NO_WRITES)?;
    ctx.replicate_verbatim()?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.VERBATIMINDB <db> <key>`: writes `key` in the current database, moves to `db`, and
/// replicates verbatim: replicas must replay it from the starting database.
fn api_verbatim_in_db(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let db = u32::try_from(args[1].parse_integer()?).unwrap_or(0);
    ctx.replicate_verbatim()?;
    ctx.open_key_writable(&args[2])?.string_set("here")?;
    let start = ctx.get_selected_db();
    ctx.select_db(db)?;
    ctx.open_key_writable(&args[2])?.string_set("there")?;
    ctx.select_db(start)?;
    ctx.select_db(db)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.VERBATIMTRY <key> <other key>`: replicates verbatim, tries to set `other key` by call
/// and by key (ignoring failures), then sets `key`. Replies what the tries gave.
fn api_verbatim_try(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.replicate_verbatim()?;
    let by_call = match ctx.call("SET", &[&args[2], &"tried"]) {
        Ok(_) => "set".to_owned(),
        Err(e) => e.message().to_owned(),
    };
    let by_key = match ctx.open_key_writable(&args[2]) {
        Ok(key) => {
            key.string_set("tried")?;
            "set".to_owned()
        }
        Err(e) => RedisError::from(e).to_string(),
    };
    ctx.call("SET", &[&args[1], &"done"])?;
    Ok(RedisValue::Array(vec![
        RedisValue::BulkString(by_call),
        RedisValue::BulkString(by_key),
    ]))
}

/// `API.FAILAFTERWRITE <key>`: writes, then fails.
fn api_fail_after_write(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.open_key_writable(&args[1])?
        .list_push(ListWhere::Tail, "written")?;
    ctx.call("INCR", &[&"counter"])?;
    Err(RedisError::Str("ERR failed after writing"))
}

/// `API.SELECTWRITE <db> <key> <value>`: selects a database, writes, selects back.
fn api_select_write(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let original = ctx.get_selected_db();
    ctx.select_db(args[1].parse_unsigned_integer()? as u32)?;
    ctx.open_key_writable(&args[2])?.string_set(&args[3])?;
    ctx.select_db(original)?;
    Ok(RedisValue::Integer(i64::from(ctx.get_selected_db())))
}

/// `API.FLAGS`: the context flags, and the time.
fn api_flags(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    let flags = format!("{:?}", ctx.get_context_flags());
    Ok(RedisValue::Array(vec![
        bulk(flags),
        RedisValue::Integer(ctx.milliseconds()),
    ]))
}

/// `API.NOTIFY <class> <event> <key> [<undeclared key>]`: publishes a keyspace event (`class`:
/// `generic`, `string`, `hash`, `module` or `none`) about `key`, or about the undeclared key.
fn api_notify(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let class = match args[1].as_slice() {
        b"generic" => NotifyEvent::GENERIC,
        b"string" => NotifyEvent::STRING,
        b"hash" => NotifyEvent::HASH,
        b"module" => NotifyEvent::MODULE,
        _ => NotifyEvent::empty(),
    };
    let event = String::from_utf8_lossy(args[2].as_slice()).into_owned();
    ctx.notify_keyspace_event(class, &event, args.get(4).unwrap_or(&args[3]))?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `API.POOL <n>`: fills `n` pool allocations and sums them.
fn api_pool(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let n = args[1].parse_unsigned_integer()? as usize;
    let mut total = 0u64;
    for i in 0..n {
        let buf = ctx.pool_alloc(100);
        buf.fill((i % 256) as u8);
        total += buf.iter().map(|&b| u64::from(b)).sum::<u64>();
    }
    Ok(RedisValue::Integer(total as i64))
}

thread_local!(static WAITING: RefCell<Vec<BlockedClient>> = const { RefCell::new(Vec::new()) });

/// `API.WAIT <mode> [timeout-ms]`: blocks the client until `API.WAKE`; woken with `call <command
/// line>`, the reply phase calls it and describes the reply. Modes: `plain`; `abort`
/// (blocks, aborts, replies "aborted"); `replythen` (blocks, then replies "anyway": the reply
/// goes through the block); `replyint` (the same with the integer 7); `twice` (blocks twice: the second is refused); `trap` (blocks, then
/// panics); `bgwrite` (a background job that tries a write and opens a key); `spin` (a
/// background job calling PING until it is cancelled); `bgcall` (`API.WAIT bgcall <timeout>
/// <command> [args]`: a background job that calls the command and describes the reply;
/// `bgforward`, the same replying with the call's reply as it is);
/// `bgtimeout` and `bgfortimeout` (the timeout phase starts a job for its own client, directly
/// or through `API.BGFOR`); `keysreply` and `keystrap` (block on the
/// key `api:never`, then reply "anyway", or panic), `keyswait` (blocks on it until it is
/// signalled). Woken with `API.WAKE loop`, the reply
/// phase loops for ever.
fn api_wait(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    match ctx.blocked_phase() {
        BlockedPhase::Reply => {
            let data = ctx.blocked_client_private_data().unwrap_or_default();
            if data == b"write" {
                let outcome = match ctx.open_key_writable("api:paused") {
                    Ok(key) => key.string_set("x").map(|()| "written".to_owned()),
                    Err(e) => Err(e),
                };
                let call = ctx
                    .call("SET", &[&"api:paused", &"y"])
                    .map(|_| "written".to_owned());
                let text =
                    |r: Result<String, _>| r.unwrap_or_else(|e| RedisError::from(e).to_string());
                return Ok(RedisValue::Array(vec![
                    RedisValue::BulkString(text(outcome)),
                    RedisValue::BulkString(call.unwrap_or_else(|e| e.to_string())),
                ]));
            }
            if data == b"loop" {
                let mut rounds = 0u64;
                loop {
                    rounds = std::hint::black_box(rounds.wrapping_add(1));
                }
            }
            if let Some(line) = data.strip_prefix(b"call ") {
                return call_words(ctx, line);
            }
            return Ok(RedisValue::StringBuffer(data));
        }
        // `bgtimeout`: tries to start a job for the client its timeout answers.
        BlockedPhase::Timeout if args.get(1).is_some_and(|m| m.as_slice() == b"bgtimeout") => {
            let client = ctx
                .blocked_client()
                .ok_or(RedisError::Str("ERR no client"))?;
            return Ok(match ctx.run_in_background(client, &args) {
                Ok(()) => RedisValue::SimpleStringStatic("job started"),
                Err(e) => RedisValue::BulkString(e.to_string()),
            });
        }
        // `bgfortimeout`: the same through a nested command (`API.BGFOR`, which starts jobs
        // for the clients waiting, this one among them).
        BlockedPhase::Timeout if args.get(1).is_some_and(|m| m.as_slice() == b"bgfortimeout") => {
            return Ok(describe(&ctx.call("API.BGFOR", &[]).map_err(call_error)?));
        }
        // `readtimeout <timeout> <key>`: the timeout phase reads a key the command did not
        // declare.
        BlockedPhase::Timeout if args.get(1).is_some_and(|m| m.as_slice() == b"readtimeout") => {
            let key = args.get(3).ok_or(RedisError::WrongArity)?;
            return Ok(match ctx.open_key(key) {
                Ok(key) => RedisValue::BulkRedisString(key.string_get()?),
                Err(e) => RedisValue::BulkString(RedisError::from(e).to_string()),
            });
        }
        BlockedPhase::Timeout => return Ok(RedisValue::SimpleStringStatic("timed out")),
        BlockedPhase::Background if args.get(1).is_some_and(|m| m.as_slice() == b"spin") => loop {
            ctx.call("PING", &[])?;
        },
        BlockedPhase::Background if args.get(1).is_some_and(|m| m.as_slice() == b"bgforward") => {
            let line: Vec<&[u8]> = args[3..].iter().map(RedisString::as_slice).collect();
            let words = line.join(&b' ');
            let words: Vec<&[u8]> = words.split(|&b| b == b' ').collect();
            let command =
                std::str::from_utf8(words[0]).map_err(|_| RedisError::Str("ERR bad name"))?;
            let reply = ctx.call(command, &[&&words[1..]]).map_err(call_error)?;
            ctx.reply_with_call_reply(&reply);
            return Ok(RedisValue::NoReply);
        }
        BlockedPhase::Background if args.get(1).is_some_and(|m| m.as_slice() == b"bgcall") => {
            let line: Vec<&[u8]> = args[3..].iter().map(RedisString::as_slice).collect();
            return call_words(ctx, &line.join(&b' '));
        }
        BlockedPhase::Background => {
            let write = match ctx.call("SET", &[&"api:bg", &"x"]) {
                Ok(_) => "write ran".to_owned(),
                Err(e) => e.message().to_owned(),
            };
            let key = match ctx.open_key("api:bg") {
                Ok(_) => "key opened".to_owned(),
                Err(e) => RedisError::from(e).to_string(),
            };
            let read = ctx.call("PING", &[])?;
            return Ok(RedisValue::Array(vec![
                RedisValue::BulkString(write),
                RedisValue::BulkString(key),
                RedisValue::BulkRedisString(read.string().unwrap_or_default()),
            ]));
        }
        BlockedPhase::Command => {}
    }
    let mode = args.get(1).map(|a| a.to_string_lossy()).unwrap_or_default();
    let timeout = args.get(2).map_or(Ok(0), RedisString::parse_integer)?;
    if let Some(then) = mode.strip_prefix("keys") {
        ctx.block_client_on_keys(&["api:never"], timeout, b"")?;
        return match then {
            "trap" => panic!("trapped after blocking on keys"),
            // Stays blocked until the key is signalled (the reply phase answers "").
            "wait" => Ok(RedisValue::NoReply),
            _ => Ok(RedisValue::SimpleStringStatic("anyway")),
        };
    }
    let client = ctx.block_client(timeout)?;
    match mode.as_str() {
        "abort" => {
            ctx.abort_block(client);
            Ok(RedisValue::SimpleStringStatic("aborted"))
        }
        "replythen" => Ok(RedisValue::SimpleStringStatic("anyway")),
        // An integer, which `invoke` returns rather than sends.
        "replyint" => Ok(RedisValue::Integer(7)),
        "twice" => {
            let second = ctx.block_client(timeout).map(|_| ()).unwrap_err();
            Ok(RedisValue::BulkString(second.to_string()))
        }
        "trap" => panic!("trapped after blocking"),
        "bgwrite" | "spin" | "bgcall" | "bgforward" => {
            ctx.run_in_background(client, &args)?;
            if mode == "spin" {
                WAITING.with_borrow_mut(|w| w.push(client));
            }
            Ok(RedisValue::NoReply)
        }
        _ => {
            WAITING.with_borrow_mut(|w| w.push(client));
            Ok(RedisValue::NoReply)
        }
    }
}

/// Calls the command line `words` (separated by spaces) and describes its reply.
fn call_words(ctx: &Context, words: &[u8]) -> RedisResult {
    let words: Vec<&[u8]> = words.split(|&b| b == b' ').collect();
    let command = std::str::from_utf8(words[0]).map_err(|_| RedisError::Str("ERR bad name"))?;
    Ok(describe(
        &ctx.call(command, &[&&words[1..]]).map_err(call_error)?,
    ))
}

/// `API.WAKE <data>`: unblocks the clients `API.WAIT plain` (or `spin`) blocked; replies how many
/// it woke.
fn api_wake(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let waiting = WAITING.with_borrow_mut(std::mem::take);
    let woken = waiting
        .into_iter()
        .filter(|client| ctx.unblock_client(*client, args[1].as_slice()))
        .count();
    Ok(RedisValue::Integer(woken as i64))
}

/// `API.BGFOR`: starts a background job for every client `API.WAIT plain` blocked; replies how
/// many it started.
fn api_bg_for(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let waiting = WAITING.with_borrow_mut(std::mem::take);
    let started = waiting
        .into_iter()
        .filter(|client| ctx.run_in_background(*client, &args).is_ok())
        .count();
    Ok(RedisValue::Integer(started as i64))
}

redis_module! {
    name: "api",
    version: 1,
    commands: [
        ["api.call", api_call, "readonly", 0, 0, 0],
        ["api.wcall", api_wcall, "write", 0, 0, 0],
        ["api.forward", api_forward, "write", 0, 0, 0],
        ["api.fwdnest", api_forward_nested, "write", 0, 0, 0],
        ["api.elements", api_elements, "readonly", 0, 0, 0],
        ["api.convert", api_convert, "readonly", 0, 0, 0],
        ["api.parse", api_parse, "readonly", 0, 0, 0],
        ["api.types", api_types, "readonly", 0, 0, 0],
        ["api.postponed", api_postponed, "readonly", 0, 0, 0],
        ["api.badpostponed", api_bad_postponed, "readonly", 0, 0, 0],
        ["api.key", api_key, "write", 2, 2, 1],
        ["api.rkey", api_rkey, "readonly", 2, 2, 1],
        ["api.open2", api_open2, "write", 1, 3, 2],
        ["api.delwhileopen", api_del_while_open, "write", 1, 1, 1],
        ["api.keep", api_keep, "readonly", 1, 1, 1],
        ["api.verbatimnorepl", api_verbatim_no_replicas, "write", 1, 1, 1],
        ["api.openmany", api_open_many, "write", 0, 0, 0],
        ["api.usekept", api_use_kept, "readonly", 0, 0, 0],
        ["api.rangecall", api_range_call, "readonly", 1, 1, 1],
        ["api.read2", api_read2, "readonly", 1, 1, 1, arity = 3],
        ["api.expiredexists", api_expired_exists, "write", 1, 1, 1, arity = -2],
        ["api.verbatimttl", api_verbatim_ttl, "write", 1, 1, 1, arity = 4],
        ["api.lists2", api_lists2, "readonly", 1, 1, 1, arity = 6],
        ["api.replicate", api_replicate, "write", 0, 0, 0],
        ["api.order", api_order, "write", 1, 1, 1],
        ["api.verbatimaftercall", api_verbatim_after_call, "write", 1, 1, 1],
        ["api.verbatimcall", api_verbatim_call, "write", 0, 0, 0, arity = -2],
        ["api.verbatimafterwrite", api_verbatim_after_write, "write", 1, 1, 1],
        ["api.verbatimindb", api_verbatim_in_db, "write", 2, 2, 1],
        ["api.verbatimtry", api_verbatim_try, "write", 1, 1, 1],
        ["api.failafterwrite", api_fail_after_write, "write", 1, 1, 1],
        ["api.selectwrite", api_select_write, "write", 2, 2, 1],
        ["api.flags", api_flags, "readonly", 0, 0, 0],
        ["api.notify", api_notify, "write", 3, 3, 1, arity = -4],
        ["api.pool", api_pool, "", 0, 0, 0],
        ["api.wait", api_wait, "write", 0, 0, 0],
        ["api.wake", api_wake, "", 0, 0, 0],
        ["api.bgfor", api_bg_for, "", 0, 0, 0],
    ],
}
