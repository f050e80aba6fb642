//! Test guest: replies of every kind, mistakes on purpose, panics, printing, key positions.

use std::cell::RefCell;

use redis_wasm_sdk::{
    Context, InitContext, RedisError, RedisResult, RedisString, RedisValue, redis_module,
};

thread_local!(static LOAD_ARGS: RefCell<Vec<RedisString>> = const { RefCell::new(Vec::new()) });

fn init(_ctx: &InitContext, args: &[RedisString]) -> Result<(), RedisError> {
    LOAD_ARGS.with_borrow_mut(|saved| *saved = args.to_vec());
    Ok(())
}

fn echo(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::Array(
        args.into_iter()
            .skip(1)
            .map(RedisValue::BulkRedisString)
            .collect(),
    ))
}

/// `BASICS.ECHO` as a command that borrows its arguments (`&[RedisString]`).
fn echo_borrowed(_ctx: &Context, args: &[RedisString]) -> RedisResult {
    Ok(RedisValue::Array(
        args[1..]
            .iter()
            .cloned()
            .map(RedisValue::BulkRedisString)
            .collect(),
    ))
}

fn load_args(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(LOAD_ARGS.with_borrow(|saved| {
        RedisValue::Array(
            saved
                .iter()
                .cloned()
                .map(RedisValue::BulkRedisString)
                .collect(),
        )
    }))
}

fn panic(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let what = args.get(1).map(|a| a.to_string()).unwrap_or_default();
    panic!("boom {what}");
}

fn fail(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    match args.get(1) {
        Some(message) => Err(RedisError::String(message.to_string())),
        None => Err(RedisError::Str("ERR my failure")),
    }
}

fn bad_array(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    ctx.reply_with_array(3);
    ctx.reply_with_long_long(1);
    ctx.reply_with_long_long(2);
    Ok(RedisValue::NoReply)
}

/// A `RedisValue` array with a hole: sent in one `reply-with-values`, it lacks an element.
fn hollow_array(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::Array(vec![
        RedisValue::Integer(1),
        RedisValue::NoReply,
    ]))
}

fn twice(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    ctx.reply_with_long_long(1);
    ctx.reply_with_long_long(2);
    Ok(RedisValue::NoReply)
}

/// `BASICS.PARTIAL-THEN-ERROR [arity]`: half a reply, then an error (the arity error with
/// `arity`).
fn partial_then_error(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.reply_with_array(2);
    ctx.reply_with_long_long(1);
    if args.len() > 1 {
        return Err(RedisError::WrongArity);
    }
    Err(RedisError::Str("ERR gave up half-way"))
}

fn silent(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::NoReply)
}

fn crlf(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::SimpleString("OK\r\n+INJECTED".to_owned()))
}

fn print(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let text = args.get(1).map(|a| a.to_string()).unwrap_or_default();
    println!("stdout says {text}");
    eprintln!("stderr says {text}");
    ctx.log_warning(&format!("log says {text}"));
    Ok(RedisValue::SimpleStringStatic("OK"))
}

fn ok(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::SimpleStringStatic("OK"))
}

fn nested(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let depth = args
        .get(1)
        .map(|a| a.parse_integer())
        .transpose()?
        .unwrap_or(1);
    let mut value = RedisValue::Integer(depth);
    for _ in 0..depth {
        value = RedisValue::Array(vec![value]);
    }
    Ok(value)
}

/// `BASICS.PEEK <key>` (declares no keys): [whether the key exists, what opening it gave].
fn peek(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let key = args.get(1).ok_or(RedisError::WrongArity)?;
    let exists = ctx.key_exists(key);
    let opened = match ctx.open_key(key) {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    Ok(RedisValue::Array(vec![
        RedisValue::Integer(i64::from(exists)),
        RedisValue::BulkString(opened),
    ]))
}

/// `BASICS.POKE <key>` (write, declares no keys): what opening the key for writing gave.
fn poke(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let key = args.get(1).ok_or(RedisError::WrongArity)?;
    Ok(RedisValue::BulkString(match ctx.open_key_writable(key) {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    }))
}

/// `BASICS.TRYWRITE <key> <other>` (declares `key`): tries to set `other`, then sets `key`;
/// answers what setting `other` gave.
fn try_write(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, key, other] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let tried = match ctx.open_key_writable(other) {
        Ok(opened) => {
            opened.string_set("tried")?;
            "set".to_owned()
        }
        Err(e) => RedisError::from(e).to_string(),
    };
    ctx.open_key_writable(key)?.string_set("done")?;
    Ok(RedisValue::BulkString(tried))
}

fn mixed(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::Array(vec![
        RedisValue::Integer(-7),
        RedisValue::SimpleStringStatic("fine"),
        RedisValue::BulkString("bulk".into()),
        RedisValue::StringBuffer(vec![0, 255, b'\r', b'\n']),
        RedisValue::Null,
        RedisValue::Array(vec![]),
    ]))
}

/// Every RESP3 type, for calls and forwarding from other guests.
fn types(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::Array(vec![
        RedisValue::Map(vec![(
            RedisValue::BulkString("a".into()),
            RedisValue::Integer(1),
        )]),
        RedisValue::Set(vec![RedisValue::BulkString("x".into())]),
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

redis_module! {
    name: "basics",
    version: 3,
    init: init,
    commands: [
        ["basics.echo", echo, "readonly", 0, 0, 0],
        ["basics.echo-borrowed", echo_borrowed, "readonly", 0, 0, 0],
        ["basics.loadargs", load_args, "readonly", 0, 0, 0],
        ["basics.panic", panic, "readonly", 0, 0, 0],
        ["basics.fail", fail, "readonly", 0, 0, 0],
        ["basics.bad-array", bad_array, "readonly", 0, 0, 0],
        ["basics.twice", twice, "readonly", 0, 0, 0],
        ["basics.partial-then-error", partial_then_error, "readonly", 0, 0, 0],
        ["basics.silent", silent, "readonly", 0, 0, 0],
        ["basics.hollow-array", hollow_array, "readonly", 0, 0, 0],
        ["basics.crlf", crlf, "readonly", 0, 0, 0],
        ["basics.print", print, "readonly", 0, 0, 0],
        ["basics.keys", ok, "readonly", 1, -1, 2, arity = -2],
        ["basics.arity", ok, "readonly", 0, 0, 0, arity = 2],
        ["basics.write", ok, "write deny-oom", 1, 1, 1],
        ["basics.plain", ok, "", 0, 0, 0],
        ["basics.noscript", ok, "readonly deny-script", 0, 0, 0],
        ["basics.nested", nested, "readonly", 0, 0, 0],
        ["basics.peek", peek, "readonly", 0, 0, 0],
        ["basics.poke", poke, "write", 0, 0, 0],
        ["basics.rpoke", poke, "readonly", 0, 0, 0],
        ["basics.trywrite", try_write, "write deny-oom", 1, 1, 1],
        ["basics.mixed", mixed, "readonly", 0, 0, 0],
        ["basics.types", types, "readonly", 0, 0, 0],
    ],
}
