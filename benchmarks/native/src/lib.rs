//! # native-baseline — the benchmark cases as a native module
//!
//! The logic of each benchmark case as a native Redis module, written against the raw Modules API
//! the way a C module would be, so `scripts/bench.sh` can compare a guest
//! (`tests/guests/bench`) with the same code running natively and with Lua
//! (`benchmarks/bench.lua`). `NATIVE.CALL` also lets the tests check that guest commands
//! answer another module's `RedisModule_Call`.
//!
//! This is a test and benchmark fixture: like the `redis-module` crate's examples, its command
//! trampolines do not catch panics. Each command checks what a careful C module checks (its
//! arity, a key's type, a call's error reply), so edge inputs get the errors the guest and Lua
//! give rather than crash the server.

use std::ffi::{c_int, c_void};

use redis_module::native_types::RedisType;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue, raw, redis_module};

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

/// Calls a Modules API function filled in by `RedisModule_Init`.
macro_rules! rm {
    ($f:ident) => {
        raw::$f.expect(concat!("Redis exports ", stringify!($f)))
    };
}

/// An open key, closed on drop.
struct Key(*mut raw::RedisModuleKey);

impl Key {
    fn open(ctx: &Context, name: &RedisString, mode: u32) -> Key {
        // SAFETY: a command context and one of its argument strings.
        Key(unsafe { rm!(RedisModule_OpenKey)(ctx.ctx, name.inner, mode as c_int) }.cast())
    }

    /// Opens the key, if it is empty or of type `expected` (`REDISMODULE_KEYTYPE_*`).
    fn open_typed(
        ctx: &Context,
        name: &RedisString,
        mode: u32,
        expected: isize,
    ) -> Result<Key, RedisError> {
        let key = Key::open(ctx, name, mode);
        // SAFETY: a key we opened, or NULL (a missing key opened for reading): type EMPTY.
        let found = unsafe { rm!(RedisModule_KeyType)(key.0) } as isize;
        match found == expected || found == raw::REDISMODULE_KEYTYPE_EMPTY {
            true => Ok(key),
            false => Err(RedisError::WrongType),
        }
    }

    /// Whether the key holds nothing (a missing key opened for reading is NULL).
    fn is_empty(&self) -> bool {
        // SAFETY: a key we opened, or NULL.
        unsafe { rm!(RedisModule_KeyType)(self.0) as isize == raw::REDISMODULE_KEYTYPE_EMPTY }
    }
}

/// What the twins answer for a value that is not an integer (Redis's words for it).
const NOT_AN_INTEGER: RedisError = RedisError::Str("ERR value is not an integer or out of range");

/// What the twins answer for a sum past the 64-bit range (rather than wrapping it).
const SUM_OVERFLOWS: RedisError = RedisError::Str("ERR the sum overflows");

/// `bytes` as an integer by Redis's rules (`string2ll`, which `INCR` and the guest's
/// `parse_integer` follow): an optional `-`, then digits, without a `+`, spaces or a leading
/// zero (but `0` itself).
fn parse_integer(bytes: &[u8]) -> Result<i64, RedisError> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || bytes == b"0");
    canonical
        .then(|| std::str::from_utf8(bytes).ok()?.parse().ok())
        .flatten()
        .ok_or(NOT_AN_INTEGER)
}

/// `sum + value`, or [`SUM_OVERFLOWS`].
fn add(sum: i64, value: i64) -> Result<i64, RedisError> {
    sum.checked_add(value).ok_or(SUM_OVERFLOWS)
}

/// `args` as `argc` arguments (the command name included), or the arity error.
fn expect_args(args: &[RedisString], argc: usize) -> Result<(), RedisError> {
    match args.len() == argc {
        true => Ok(()),
        false => Err(RedisError::WrongArity),
    }
}

/// A call's reply: `Err` for a call that did not run or an error reply (as Lua's `redis.call`
/// raises it). The reply is freed on drop.
struct Reply(*mut raw::RedisModuleCallReply);

impl Reply {
    fn checked(reply: *mut raw::RedisModuleCallReply) -> Result<Reply, RedisError> {
        if reply.is_null() {
            return Err(RedisError::Str("ERR the call did not run"));
        }
        let reply = Reply(reply);
        // SAFETY: a live reply.
        unsafe {
            if rm!(RedisModule_CallReplyType)(reply.0) as isize == raw::REDISMODULE_REPLY_ERROR {
                let mut len = 0;
                let text = rm!(RedisModule_CallReplyStringPtr)(reply.0, &mut len);
                let text = std::slice::from_raw_parts(text.cast::<u8>(), len);
                return Err(RedisError::String(
                    String::from_utf8_lossy(text).into_owned(),
                ));
            }
        }
        Ok(reply)
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // SAFETY: a reply we got from RedisModule_Call, freed once.
        unsafe { rm!(RedisModule_FreeCallReply)(self.0) };
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: a key we opened (NULL is allowed).
        unsafe { rm!(RedisModule_CloseKey)(self.0) };
    }
}

const READ_WRITE: u32 = raw::REDISMODULE_READ | raw::REDISMODULE_WRITE;

fn nb_int(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 1)?;
    Ok(RedisValue::Integer(42))
}

/// How a low-level write reaches replicas and the AOF.
#[derive(Clone, Copy)]
enum Replication {
    /// `RM_ReplicateVerbatim`: the command itself.
    Verbatim,
    /// `RM_Replicate("SET", ...)`: the write's effect, as the host replicates a guest's writes
    /// by default.
    Effect,
}

fn read_modify_write(ctx: &Context, args: &[RedisString], replication: Replication) -> RedisResult {
    expect_args(args, 2)?;
    let key = Key::open_typed(ctx, &args[1], READ_WRITE, raw::REDISMODULE_KEYTYPE_STRING)?;
    let mut len = 0usize;
    // SAFETY: an open key; DMA gives `len` readable bytes (or NULL for another type).
    let bytes = unsafe {
        let p = rm!(RedisModule_StringDMA)(key.0, &mut len, raw::REDISMODULE_READ as c_int);
        if p.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(p.cast::<u8>(), len)
        }
    };
    let current: i64 = if bytes.is_empty() {
        0
    } else {
        parse_integer(bytes)?
    };
    let value = current
        .checked_add(1)
        .ok_or(RedisError::Str("ERR increment or decrement would overflow"))?;
    // SAFETY: an open key and a string created for it, freed after StringSet and Replicate took
    // their own references.
    unsafe {
        let s = rm!(RedisModule_CreateStringFromLongLong)(ctx.ctx, value);
        rm!(RedisModule_StringSet)(key.0, s);
        // A correct module replicates its low-level writes (the host does it for guests).
        match replication {
            Replication::Verbatim => {
                rm!(RedisModule_ReplicateVerbatim)(ctx.ctx);
            }
            Replication::Effect => {
                rm!(RedisModule_Replicate)(
                    ctx.ctx,
                    c"SET".as_ptr(),
                    c"ss".as_ptr(),
                    args[1].inner,
                    s,
                );
            }
        }
        rm!(RedisModule_FreeString)(ctx.ctx, s);
    }
    Ok(RedisValue::Integer(value))
}

fn nb_rmw(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    read_modify_write(ctx, &args, Replication::Verbatim)
}

fn nb_rmwfx(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    read_modify_write(ctx, &args, Replication::Effect)
}

fn nb_incr(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 2)?;
    // SAFETY: a command context and an argument string; `!` replicates the INCR, as a guest's
    // call and Lua's redis.call do.
    let reply = Reply::checked(unsafe {
        rm!(RedisModule_Call)(ctx.ctx, c"INCR".as_ptr(), c"!s".as_ptr(), args[1].inner)
    })?;
    // SAFETY: a live reply (INCR's, an integer).
    Ok(RedisValue::Integer(unsafe {
        rm!(RedisModule_CallReplyInteger)(reply.0)
    }))
}

fn nb_push(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 3)?;
    let key = Key::open_typed(ctx, &args[1], READ_WRITE, raw::REDISMODULE_KEYTYPE_LIST)?;
    // SAFETY: an open key and an argument string.
    let len = unsafe {
        rm!(RedisModule_ListPush)(key.0, raw::REDISMODULE_LIST_TAIL as c_int, args[2].inner);
        rm!(RedisModule_ReplicateVerbatim)(ctx.ctx);
        rm!(RedisModule_ValueLength)(key.0)
    };
    Ok(RedisValue::Integer(len as i64))
}

/// `NB.HSET key field value [field value ...]`: sets the fields with the low-level API,
/// replicates verbatim and replies how many were added (as `HSET` does, for distinct fields).
fn nb_hset(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() < 4 || !args.len().is_multiple_of(2) {
        return Err(RedisError::WrongArity);
    }
    let key = Key::open_typed(ctx, &args[1], READ_WRITE, raw::REDISMODULE_KEYTYPE_HASH)?;
    let mut updated = 0;
    for pair in args[2..].chunks(2) {
        // SAFETY: an open key; the variadic field/value list ends with NULL.
        updated += unsafe {
            rm!(RedisModule_HashSet)(
                key.0,
                raw::REDISMODULE_HASH_NONE as c_int,
                pair[0].inner,
                pair[1].inner,
                std::ptr::null_mut::<raw::RedisModuleString>(),
            )
        };
    }
    // SAFETY: a command context.
    unsafe { rm!(RedisModule_ReplicateVerbatim)(ctx.ctx) };
    Ok(RedisValue::Integer(
        (args.len() as i64 - 2) / 2 - i64::from(updated),
    ))
}

fn nb_zsum(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 2)?;
    let key = Key::open_typed(
        ctx,
        &args[1],
        raw::REDISMODULE_READ,
        raw::REDISMODULE_KEYTYPE_ZSET,
    )?;
    let mut sum = 0.0;
    if key.is_empty() {
        return Ok(RedisValue::Float(sum));
    }
    // SAFETY: an open key; elements returned by the range are freed after use.
    unsafe {
        rm!(RedisModule_ZsetFirstInScoreRange)(key.0, f64::NEG_INFINITY, f64::INFINITY, 0, 0);
        while rm!(RedisModule_ZsetRangeEndReached)(key.0) == 0 {
            let mut score = 0.0;
            let element = rm!(RedisModule_ZsetRangeCurrentElement)(key.0, &mut score);
            rm!(RedisModule_FreeString)(ctx.ctx, element);
            sum += score;
            rm!(RedisModule_ZsetRangeNext)(key.0);
        }
        rm!(RedisModule_ZsetRangeStop)(key.0);
    }
    Ok(RedisValue::Float(sum))
}

fn nb_lsum(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 2)?;
    let key = Key::open_typed(
        ctx,
        &args[1],
        raw::REDISMODULE_READ,
        raw::REDISMODULE_KEYTYPE_LIST,
    )?;
    let mut sum: i64 = 0;
    // SAFETY: an open list key, or NULL for a missing one (length 0); indexes below its length
    // (read in order, so Redis moves its list iterator one step each); every element is freed
    // after use.
    unsafe {
        let len = rm!(RedisModule_ValueLength)(key.0) as i64;
        for index in 0..len {
            let element = rm!(RedisModule_ListGet)(key.0, index);
            let mut value = 0;
            if rm!(RedisModule_StringToLongLong)(element, &mut value)
                != raw::REDISMODULE_OK as c_int
            {
                rm!(RedisModule_FreeString)(ctx.ctx, element);
                return Err(NOT_AN_INTEGER);
            }
            rm!(RedisModule_FreeString)(ctx.ctx, element);
            sum = add(sum, value)?;
        }
    }
    Ok(RedisValue::Integer(sum))
}

/// What `nb_hsum`'s scan callback adds to: the sum, or why there is none (it goes on being
/// called for the rest of the hash).
struct HashSum {
    sum: i64,
    error: Option<RedisError>,
}

extern "C" fn add_hash_value(
    _key: *mut raw::RedisModuleKey,
    _field: *mut raw::RedisModuleString,
    value: *mut raw::RedisModuleString,
    sum: *mut std::ffi::c_void,
) {
    // SAFETY: `sum` is the `HashSum` nb_hsum passed to this scan; `value` is a live string.
    unsafe {
        let sum = &mut *sum.cast::<HashSum>();
        let mut n = 0;
        let parsed =
            rm!(RedisModule_StringToLongLong)(value, &mut n) == raw::REDISMODULE_OK as c_int;
        if sum.error.is_none() {
            match add(sum.sum, n) {
                Ok(total) if parsed => sum.sum = total,
                Ok(_) => sum.error = Some(NOT_AN_INTEGER),
                Err(why) => sum.error = Some(why),
            }
        }
    }
}

fn nb_hsum(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 2)?;
    let key = Key::open_typed(
        ctx,
        &args[1],
        raw::REDISMODULE_READ,
        raw::REDISMODULE_KEYTYPE_HASH,
    )?;
    let mut sum = HashSum {
        sum: 0,
        error: None,
    };
    if key.is_empty() {
        return Ok(RedisValue::Integer(0));
    }
    // SAFETY: an open key and a cursor destroyed after the scan; the callback gets `sum`.
    unsafe {
        let cursor = rm!(RedisModule_ScanCursorCreate)();
        while rm!(RedisModule_ScanKey)(key.0, cursor, Some(add_hash_value), (&raw mut sum).cast())
            != 0
        {}
        rm!(RedisModule_ScanCursorDestroy)(cursor);
    }
    match sum.error {
        Some(why) => Err(why),
        None => Ok(RedisValue::Integer(sum.sum)),
    }
}

fn nb_lrange(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 2)?;
    let mut sum: i64 = 0;
    // SAFETY: a command context and an argument string.
    let reply = Reply::checked(unsafe {
        rm!(RedisModule_Call)(
            ctx.ctx,
            c"LRANGE".as_ptr(),
            c"scc".as_ptr(),
            args[1].inner,
            c"0".as_ptr(),
            c"-1".as_ptr(),
        )
    })?;
    // SAFETY: elements of a live reply (LRANGE's, an array of strings), read while it lives;
    // a NULL string pointer (not a string) is refused.
    unsafe {
        for index in 0..rm!(RedisModule_CallReplyLength)(reply.0) {
            let element = rm!(RedisModule_CallReplyArrayElement)(reply.0, index);
            let mut len = 0;
            let bytes = rm!(RedisModule_CallReplyStringPtr)(element, &mut len);
            if bytes.is_null() {
                return Err(NOT_AN_INTEGER);
            }
            let text = std::slice::from_raw_parts(bytes.cast::<u8>(), len);
            sum = add(sum, parse_integer(text)?)?;
        }
    }
    Ok(RedisValue::Integer(sum))
}

fn nb_loop(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 1)?;
    // black_box: the seed is opaque, so the compiler cannot fold the loop away.
    let mut x: u32 = std::hint::black_box(2_463_534_242);
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
    }
    Ok(RedisValue::Integer(i64::from(x)))
}

fn nb_echo(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 2)?;
    // SAFETY: replies with an argument string, as a C module would (no copy).
    unsafe { rm!(RedisModule_ReplyWithString)(ctx.ctx, args[1].inner) };
    Ok(RedisValue::NoReply)
}

fn nb_array(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    expect_args(&args, 1)?;
    // SAFETY: a command context; exactly 100 elements follow the array header.
    unsafe {
        rm!(RedisModule_ReplyWithArray)(ctx.ctx, 100);
        for i in 0..100 {
            rm!(RedisModule_ReplyWithLongLong)(ctx.ctx, i);
        }
    }
    Ok(RedisValue::NoReply)
}

/// A data type no command uses: a native module's type, so that tests can check a guest that
/// declares the same name (Redis refuses to register it for the host).
static NATIVE_TYPE: RedisType = RedisType::new(
    "nativetyp",
    0,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(load_nothing),
        rdb_save: Some(save_nothing),
        free: Some(free_nothing),
        // SAFETY: the other methods are optional function pointers (all zeros: none) and a
        // trigger mask (0).
        ..unsafe { std::mem::zeroed() }
    },
);

/// No value of `NATIVE_TYPE` is ever made, so none is loaded, saved or freed. These entry points
/// from Redis do nothing, so nothing in them can panic (the module's command trampolines, unlike
/// the host's, do not catch panics: a fixture). `unsafe` only because Redis's method types are.
unsafe extern "C" fn load_nothing(_rdb: *mut raw::RedisModuleIO, _encver: c_int) -> *mut c_void {
    std::ptr::null_mut()
}

unsafe extern "C" fn save_nothing(_rdb: *mut raw::RedisModuleIO, _value: *mut c_void) {}

unsafe extern "C" fn free_nothing(_value: *mut c_void) {}

redis_module! {
    name: "native",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [NATIVE_TYPE],
    commands: [
        ["native.call", native_call, "write", 0, 0, 0, ""],
        ["nb.int", nb_int, "readonly fast", 0, 0, 0, ""],
        ["nb.rmw", nb_rmw, "write deny-oom fast", 1, 1, 1, ""],
        ["nb.rmwfx", nb_rmwfx, "write deny-oom fast", 1, 1, 1, ""],
        ["nb.incr", nb_incr, "write deny-oom fast", 1, 1, 1, ""],
        ["nb.push", nb_push, "write deny-oom fast", 1, 1, 1, ""],
        ["nb.hset", nb_hset, "write deny-oom fast", 1, 1, 1, ""],
        ["nb.zsum", nb_zsum, "readonly", 1, 1, 1, ""],
        ["nb.lsum", nb_lsum, "readonly", 1, 1, 1, ""],
        ["nb.hsum", nb_hsum, "readonly", 1, 1, 1, ""],
        ["nb.lrange", nb_lrange, "readonly", 1, 1, 1, ""],
        ["nb.loop", nb_loop, "readonly", 0, 0, 0, ""],
        ["nb.echo", nb_echo, "readonly", 0, 0, 0, ""],
        ["nb.array", nb_array, "readonly fast", 0, 0, 0, ""],
    ],
}
