//! Test guest that misbehaves on purpose: loops, grows memory (also past its declared maximum),
//! recurses, reads out of bounds, builds huge replies, calls host functions with edge values and
//! forged handles. With the load argument `loop-in-init`, its init never returns; with
//! `init-ms <n>`, it takes n ms.

use std::hint::black_box;

use redis_wasm_sdk::{
    CallFlags, Context, DataType, HashSetFlags, InitContext, ListWhere, NextArg, NotifyEvent,
    RedisError, RedisResult, RedisString, RedisValue, ZaddFlags, redis_module,
};

fn init(_ctx: &InitContext, args: &[RedisString]) -> Result<(), RedisError> {
    if args
        .first()
        .is_some_and(|a| a.as_slice() == b"loop-in-init")
    {
        let mut x = 0u64;
        loop {
            x = black_box(x.wrapping_add(1));
        }
    }
    // `init-ms <n>`: init spins n ms (every time it runs, re-creations after a trap too).
    if args.first().is_some_and(|a| a.as_slice() == b"init-ms") {
        let ms = args
            .get(1)
            .map(|a| a.parse_integer())
            .transpose()?
            .unwrap_or(0);
        let started = std::time::Instant::now();
        while started.elapsed().as_millis() < ms as u128 {
            black_box(started);
        }
    }
    // What needs a client's database, called from init, which also runs while an RDB loads
    // (with a context that has no client): each must answer harmlessly.
    use redis_wasm_sdk::wit::redis::module::{blocking, context, keys};
    black_box(context::get_selected_db());
    black_box(context::get_context_flags());
    black_box(keys::key_exists(b"evil:init"));
    blocking::signal_key_as_ready(b"evil:init");
    Ok(())
}

/// Spins forever without calling the host.
fn spin_forever(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// Calls Redis forever, ignoring every error (it cannot swallow a kill).
fn call_forever(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    loop {
        let _ = ctx.call("PING", &[]);
    }
}

/// Writes once, then spins forever: it cannot be killed.
fn write_then_spin(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ctx.open_key_writable(&args[1])?
        .list_push(ListWhere::Tail, "x")?;
    spin_forever(ctx, args)
}

/// `EVIL.CALLS n`: n calls to Redis, then the count.
fn many_calls(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let n = args.into_iter().skip(1).next_u64()?;
    for _ in 0..n {
        ctx.call("PING", &[])?;
    }
    Ok(RedisValue::Integer(n as i64))
}

/// `EVIL.GROW mb`: allocates and touches `mb` megabytes.
fn grow(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mb = args.into_iter().skip(1).next_u64()? as usize;
    let mut chunks = Vec::new();
    for _ in 0..mb {
        let chunk = vec![1u8; 1 << 20];
        chunks.push(black_box(chunk));
    }
    Ok(RedisValue::Integer(
        chunks.iter().map(|c| c.len() as i64).sum(),
    ))
}

/// The largest its linear memory may become, as declared in the module (`build.rs`), in 64 KiB
/// pages (3 GB): below the highest `wasm.max-memory` (4 GB), so that the host can approve
/// growth that the memory's own maximum then refuses.
const DECLARED_MAXIMUM_PAGES: usize = 49152;

/// `EVIL.GROWPASTMAX times`: asks `times` times for memory past the declared maximum, with
/// `memory.grow` itself (a Rust allocator would abort at the first failure); answers how many
/// failed.
fn grow_past_maximum(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let times = args.into_iter().skip(1).next_u64()?;
    let mut failed = 0;
    for _ in 0..times {
        if !grow_linear_memory_to(DECLARED_MAXIMUM_PAGES + 64) {
            failed += 1;
        }
    }
    Ok(RedisValue::Integer(failed))
}

/// `memory.grow` of linear memory 0 to `pages` pages: whether it grew.
#[cfg(target_arch = "wasm32")]
fn grow_linear_memory_to(pages: usize) -> bool {
    let delta = pages.saturating_sub(core::arch::wasm32::memory_size(0));
    core::arch::wasm32::memory_grow(0, delta) != usize::MAX
}

/// Built for the host (linting the workspace), there is no linear memory.
#[cfg(not(target_arch = "wasm32"))]
fn grow_linear_memory_to(_pages: usize) -> bool {
    false
}

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        0
    } else {
        black_box(recurse(black_box(depth - 1))) + 1
    }
}

/// `EVIL.RECURSE depth`.
fn deep(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let depth = args.into_iter().skip(1).next_u64()?;
    Ok(RedisValue::Integer(recurse(depth) as i64))
}

/// Reads far outside linear memory.
fn out_of_bounds(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    let address = black_box(0xffff_fff0usize) as *const u64;
    // SAFETY: none: this is the point. The sandbox must turn it into a trap.
    let value = unsafe { core::ptr::read_volatile(address) };
    Ok(RedisValue::Integer(value as i64))
}

/// `EVIL.BIGREPLY mb`: a bulk reply of `mb` megabytes.
fn big_reply(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mb = args.into_iter().skip(1).next_u64()? as usize;
    Ok(RedisValue::StringBuffer(vec![b'x'; mb << 20]))
}

/// `EVIL.MANYREPLIES n`: an array of the integers 0..n, one reply call each.
fn many_replies(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let n = args.into_iter().skip(1).next_u64()?;
    ctx.reply_with_array(n as u32);
    for i in 0..n {
        ctx.reply_with_long_long(i as i64);
    }
    Ok(RedisValue::NoReply)
}

/// `EVIL.ARGS n`: calls ECHO-like `DEL` with n arguments, then replies with the count deleted.
fn many_args(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let n = args.into_iter().skip(1).next_u64()? as usize;
    let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let reply = ctx.call_ext("DEL", &[&keys], CallFlags::empty())?;
    Ok(RedisValue::Integer(reply.integer()))
}

/// `EVIL.BIGARG key mb`: sets a key to an `mb`-megabyte value through a call.
fn big_arg(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let key = args.next_arg()?;
    let mb = args.next_u64()? as usize;
    let value = vec![b'v'; mb << 20];
    ctx.call("SET", &[&key, &value])?;
    Ok(RedisValue::Integer((mb << 20) as i64))
}

/// Calls host functions with the edge values of every integer parameter. Every call must come
/// back with a value or an error; none may trap or crash the server.
fn edges(ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    let mut survived = 0i64;
    let key = ctx.open_key_writable("edge:list")?;
    let _ = key.list_push(ListWhere::Tail, "a");
    for i in [i64::MIN, i64::MIN + 1, -2, -1, 0, 1, i64::MAX - 1, i64::MAX] {
        let _ = key.list_get(i);
        let _ = key.list_set(i, "v");
        let _ = key.list_insert(i, "v");
        let _ = key.list_delete(i);
        survived += 4;
    }
    drop(key);
    let s = ctx.open_key_writable("edge:string")?;
    let _ = s.string_set("hello");
    for n in [0usize, 1, u32::MAX as usize, usize::MAX - 1, usize::MAX] {
        let _ = s.string_read(n, n);
        let _ = s.string_read(0, n);
        let _ = s.string_write(n, b"xy");
        survived += 3;
    }
    let _ = s.string_truncate(usize::MAX);
    let _ = s.string_truncate(u32::MAX as usize);
    for ms in [i64::MIN, -2, -1, 0, i64::MAX] {
        let _ = s.set_expire(ms);
        let _ = s.set_abs_expire(ms);
        survived += 2;
    }
    drop(s);
    let z = ctx.open_key_writable("edge:zset")?;
    for score in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        -0.0,
    ] {
        let _ = z.zset_add(score, "m", ZaddFlags::empty());
        let _ = z.zset_add(
            score,
            "m",
            ZaddFlags::NX | ZaddFlags::XX | ZaddFlags::GT | ZaddFlags::LT,
        );
        let _ = z.zset_incrby(score, "m", ZaddFlags::empty());
        let _ = z.zset_first_in_score_range(score, -score, true, true);
        let _ = z.zset_range_next();
        let _ = z.zset_range_prev();
        let _ = z.zset_range_current_element();
        z.zset_range_stop();
        survived += 8;
    }
    for (min, max) in [
        ("", ""),
        ("[", "("),
        ("-", "-"),
        ("+", "-"),
        ("(\0", "[\u{ffff}"),
    ] {
        let _ = z.zset_first_in_lex_range(min, max);
        let _ = z.zset_last_in_lex_range(min, max);
        survived += 2;
    }
    drop(z);
    let h = ctx.open_key_writable("edge:hash")?;
    let _ = h.hash_set(HashSetFlags::all(), &[]);
    let _ = h.hash_set(HashSetFlags::NX | HashSetFlags::XX, &[(b"f", Some(b"v"))]);
    let _ = h.hash_set(HashSetFlags::empty(), &[(b"", None), (b"", Some(b""))]);
    let _ = h.hash_get(&[]);
    let _ = h.hash_exists(&[b""]);
    drop(h);
    for db in [0u32, 15, 16, u32::MAX / 2, u32::MAX] {
        let _ = ctx.select_db(db);
        survived += 1;
    }
    let _ = ctx.select_db(0);
    for count in [0u32, 1, u32::MAX] {
        let _ = ctx.call("LRANGE", &[&"edge:list", &i64::MIN, &i64::MAX]);
        let _ = ctx.call("SETRANGE", &[&"edge:string", &(count as i64), &""]);
        survived += 2;
    }
    let _ = ctx.call("", &[]);
    let _ = ctx.call("\0\r\n", &[&"\0"]);
    let _ = ctx.replicate("", &[]);
    let _ = ctx.replicate("SET", &[&"edge:replicated", &"v"]);
    survived += 4;
    Ok(RedisValue::Integer(survived))
}

/// `EVIL.FUZZ seed n`: n host calls with pseudo-random arguments, on handles that may have been
/// dropped. Returns how many it made (a forged or stale handle traps, which is also fine).
fn fuzz(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let mut state = args.next_u64()?.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let n = args.next_u64()?;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names = ["fz:a", "fz:b", "fz:c"];
    let mut keys = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..n {
        let r = next();
        let int = match r % 5 {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            3 => 0,
            _ => (r >> 8) as i64 % 100,
        };
        let name = names[(r >> 3) as usize % names.len()];
        // Any open handle, not only the newest: several may be open on one key.
        let any = |keys: &Vec<redis_wasm_sdk::Key>| {
            (!keys.is_empty()).then(|| (r >> 44) as usize % keys.len())
        };
        match (r >> 16) % 23 {
            0 => {
                if let Ok(k) = ctx.open_key_writable(name) {
                    keys.push(k);
                }
            }
            1 => {
                if let Ok(k) = ctx.open_key(name) {
                    keys.push(k);
                }
            }
            2 => {
                if !keys.is_empty() {
                    keys.remove((r >> 20) as usize % keys.len());
                }
            }
            3 => {
                if let Some(k) = keys.last() {
                    let _ = k.list_push(
                        if r & 1 == 0 {
                            ListWhere::Head
                        } else {
                            ListWhere::Tail
                        },
                        int.to_string(),
                    );
                }
            }
            4 => {
                if let Some(k) = keys.last() {
                    let _ = k.list_range(int, (r >> 24) as u32);
                    let _ = k.list_insert(int, "i");
                    let _ = k.list_range(-int, r as u32 % 4);
                    let _ = k.list_delete(int);
                }
            }
            5 => {
                if let Some(k) = keys.first() {
                    let _ = k.string_set(vec![b's'; (r % 64) as usize]);
                    let _ = k.string_write((r % 70) as usize, b"w");
                    let _ = k.string_truncate((r % 100) as usize);
                }
            }
            6 => {
                if let Some(k) = keys.last() {
                    let _ = k.zset_add(
                        int as f64,
                        "m",
                        ZaddFlags::from_bits_truncate((r >> 24) as u8),
                    );
                    let _ = k.zset_first_in_score_range(f64::MIN, f64::MAX, r & 2 == 0, r & 4 == 0);
                    let _ = k.zset_range_next();
                    let _ = k.scan((r >> 32) as u32 % 4);
                }
            }
            7 => {
                if let Some(k) = keys.last() {
                    let _ = k.hash_set(
                        HashSetFlags::from_bits_truncate((r >> 24) as u8),
                        &[(
                            format!("f{}", (r >> 40) % 200).as_bytes(),
                            if r & 1 == 0 { None } else { Some(b"v") },
                        )],
                    );
                    let _ = k.scan((r >> 32) as u32 % 4);
                    if r & 8 == 0 {
                        k.scan_restart();
                    }
                }
            }
            8 => {
                if let Some(k) = keys.last() {
                    let _ = k.set_expire(int);
                    let _ = k.delete();
                }
            }
            9 => {
                if let Ok(reply) = ctx.call("LRANGE", &[&name, &int, &-1]) {
                    replies.push(reply);
                }
            }
            10 => {
                if let Some(reply) = replies.last() {
                    let _ = reply.element((r % 8) as usize);
                    let _ = reply.map_element((r % 8) as usize);
                    let _ = reply.elements((r % 8) as usize, (r >> 8) as u32 % 16);
                    let _ = reply.iter().count();
                    let _ = reply.string();
                }
            }
            11 => {
                replies.clear();
            }
            12 => {
                let _ = ctx.call("DEL", &[&name]);
            }
            13 => {
                let command = if r & 1 == 0 { "RPUSH" } else { "SADD" };
                let _ = ctx.call(command, &[&name, &int]);
            }
            14 => {
                if let Some(k) = keys.last() {
                    let _ = k.key_type();
                    let _ = k.value_length();
                    let _ = k.list_get(int);
                    let _ = k.list_get(-int);
                    let _ = k.list_range(int, 3);
                    let _ = k.list_pop(ListWhere::Tail);
                    let _ = k.list_get(int);
                }
            }
            15 => {
                if let Some(k) = keys.last() {
                    let _ = k.set_value(&EVIL_TYPE, vec![b'd'; (r % 40) as usize]);
                    let _ = k.get_value(&EVIL_TYPE);
                }
            }
            16 => {
                ctx.signal_key_as_ready(name);
                if let Some(k) = keys.first() {
                    let _ = k.data_type_name();
                }
                let class = NotifyEvent::from_bits_truncate((r >> 24) as u16);
                let _ = ctx.notify_keyspace_event(class, "fuzz", name);
            }
            // Reads through any handle: a string's (which Redis may re-encode to read it), a
            // list's by index (Redis keeps an iterator in the key), whether the key exists.
            17 => {
                if let Some(i) = any(&keys) {
                    let _ = keys[i].string_read((r % 8) as usize, 100);
                    let _ = keys[i].value_length();
                }
            }
            18 => {
                if let Some(i) = any(&keys) {
                    let _ = keys[i].list_get(int);
                    let _ = keys[i].list_range(int, (r >> 24) as u32 % 8);
                }
                let _ = ctx.key_exists(name);
            }
            // An expire in the past or far ahead, through any handle.
            19 => {
                if let Some(i) = any(&keys) {
                    let _ = keys[i].set_abs_expire(if r & 1 == 0 { 1 } else { i64::MAX / 4 });
                }
            }
            // Values of every encoding: shared and plain integers, short and long strings,
            // and lists long enough for compressed nodes.
            20 => {
                let value = match r % 4 {
                    0 => int.to_string(),
                    1 => format!("{}", r >> 1),
                    2 => "e".repeat((r >> 8) as usize % 40),
                    _ => "r".repeat(45 + (r >> 8) as usize % 100),
                };
                let _ = ctx.call("SET", &[&name, &value]);
            }
            21 => {
                let values: Vec<String> = (0..12).map(|i| format!("{i:x>30}")).collect();
                let _ = ctx.call("RPUSH", &[&name, &values]);
            }
            _ => {
                let _ = ctx.select_db((r % 3) as u32);
            }
        }
    }
    let _ = ctx.select_db(0);
    Ok(RedisValue::Integer(n as i64))
}

/// Handle numbers that must never reach what they were not given for:
/// - `evil.forged key open` opens key `k` and replies with its number, leaving it open;
/// - `evil.forged key N` reads the type of key number N;
/// - `evil.forged reply call` calls `TIME` (an array: a call-reply number) and replies with the
///   number, leaving the reply unfreed;
/// - `evil.forged reply N` replies with the type and length of call-reply number N;
/// - `evil.forged call outside` calls `ECHO` with an argument that points past the end of its
///   memory (the host must trap rather than read it).
fn forged_handle(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    use redis_wasm_sdk::wit::redis::module::{call, keys};
    let mut args = args.into_iter().skip(1);
    let (kind, arg) = match (args.next(), args.next()) {
        (Some(kind), Some(arg)) => (kind, arg),
        _ => return Err(RedisError::WrongArity),
    };
    let number = || -> Result<u32, RedisError> {
        u32::try_from(arg.parse_integer()?).map_err(|_| RedisError::Str("ERR not a u32"))
    };
    match (kind.as_slice(), arg.as_slice()) {
        (b"key", b"open") => Ok(RedisValue::Integer(
            keys::open_key(b"k", keys::OpenMode::READ)?.into(),
        )),
        (b"key", _) => {
            keys::type_of(number()?)?;
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        (b"reply", b"call") => match call::call("TIME", &[], call::CallFlags::empty()) {
            Ok(call::CallValue::Reply(reply)) => Ok(RedisValue::Integer(reply.into())),
            _ => Err(RedisError::Str("ERR TIME gave no call-reply number")),
        },
        (b"call", b"outside") => {
            let address = black_box(0xffff_0000usize) as *const u8;
            // SAFETY: none: the slice is never read here, only its address and length are
            // handed to the host, which must refuse them.
            let outside = unsafe { core::slice::from_raw_parts(address, 64) };
            let _ = call::call("ECHO", &[outside], call::CallFlags::empty());
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        (b"reply", _) => {
            let reply = number()?;
            Ok(RedisValue::Array(vec![
                RedisValue::SimpleString(format!("{:?}", call::call_reply_type(reply))),
                RedisValue::Integer(call::call_reply_length(reply) as i64),
            ]))
        }
        _ => Err(RedisError::Str("ERR unknown kind")),
    }
}

/// A data type, so the fuzzer also writes and reads data type values.
static EVIL_TYPE: DataType = DataType::new("evil-blob", 0);

redis_module! {
    name: "evil",
    version: 1,
    init: init,
    data_types: [EVIL_TYPE],
    commands: [
        ["evil.loop", spin_forever, "readonly", 0, 0, 0],
        ["evil.loopcalls", call_forever, "readonly", 0, 0, 0],
        ["evil.writeloop", write_then_spin, "write", 1, 1, 1],
        ["evil.calls", many_calls, "readonly", 0, 0, 0],
        ["evil.grow", grow, "readonly", 0, 0, 0],
        ["evil.growpastmax", grow_past_maximum, "readonly", 0, 0, 0],
        ["evil.recurse", deep, "readonly", 0, 0, 0],
        ["evil.oob", out_of_bounds, "readonly", 0, 0, 0],
        ["evil.bigreply", big_reply, "readonly", 0, 0, 0],
        ["evil.manyreplies", many_replies, "readonly", 0, 0, 0],
        ["evil.args", many_args, "write", 0, 0, 0],
        ["evil.bigarg", big_arg, "write deny-oom", 1, 1, 1],
        ["evil.edges", edges, "write", 0, 0, 0],
        ["evil.fuzz", fuzz, "write", 0, 0, 0],
        ["evil.forged", forged_handle, "readonly", 0, 0, 0],
    ],
}
