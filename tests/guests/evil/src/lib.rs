//! Test guest that misbehaves on purpose: loops, grows memory (also past its declared maximum),
//! recurses, reads out of bounds, builds huge replies, calls host functions with edge values and
//! forged handles. With the load argument `loop-in-init`, its init never returns; with
//! `init-ms <n>`, it takes n ms.

use std::hint::black_box;

use redis_wasm_sdk::{
    CallFlags, Context, DataType, HashSetFlags, InitContext, ListWhere, NextArg, NotifyEvent,
    RedisError, RedisResult, RedisString, RedisValue, ReplicateFlags, ZaddFlags, redis_module,
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
/// `EVIL.FUZZ seed n verbatim` also replicates verbatim at times (see below).
fn fuzz(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let mut state = args.next_u64()?.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let n = args.next_u64()?;
    // `EVIL.FUZZ seed n verbatim`: also asks for replicate-verbatim now and then (off by
    // default: a replica replaying the command does not expire keys, so one given an expire
    // in the past reads differently there — the master/replica divergence reported for it).
    let verbatim = args.next().is_some_and(|a| a.as_slice() == b"verbatim");
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
        let other = names[(r >> 50) as usize % names.len()];
        let db = ((r >> 6) % 3) as u32;
        // A call with string arguments (replies are read, then dropped).
        let call = |command: &str, args: Vec<String>| {
            if let Ok(reply) = ctx.call(command, &[&args]) {
                let _ = reply.iter().count();
            }
        };
        // Members and fields from a small set, some long (past the listpack value limits).
        let member = |x: u64| {
            if x.is_multiple_of(16) {
                format!("{:m>70}", x % 7)
            } else {
                format!("m{}", x % 40)
            }
        };
        match (r >> 16) % 41 {
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

            // Sorted-set ranges, by score or lex, from either end, on any handle; then steps
            // both ways (another handle may have started its own range on the key).
            23 => {
                if let Some(i) = any(&keys) {
                    let k = &keys[i];
                    let lo = ((r >> 8) % 60) as f64 - 30.0;
                    let hi = lo + ((r >> 12) % 50) as f64;
                    let lex = ["-", "[m1", "(m2", "[m", "(m39", "+"];
                    let (a, b) = (lex[(r >> 20) as usize % 6], lex[(r >> 24) as usize % 6]);
                    let _ = match r % 4 {
                        0 => k.zset_first_in_score_range(lo, hi, r & 16 == 0, r & 32 == 0),
                        1 => k.zset_last_in_score_range(lo, hi, r & 16 == 0, r & 32 == 0),
                        2 => k.zset_first_in_lex_range(a, b),
                        _ => k.zset_last_in_lex_range(a, b),
                    };
                    for step in 0..(r >> 28) % 6 {
                        let _ = match (r >> (32 + 2 * step)) % 4 {
                            0 => k.zset_range_next(),
                            1 => k.zset_range_prev(),
                            2 => k.zset_range_end_reached(),
                            _ => k
                                .zset_range_next_batch((r >> 40) as u32 % 5)
                                .map(|b| !b.is_empty()),
                        };
                        let _ = k.zset_range_current_element();
                    }
                }
            }
            // A range already started goes on while another handle (or a call) changes the set.
            24 => {
                if let (Some(i), Some(j)) = (
                    any(&keys),
                    (!keys.is_empty()).then(|| (r >> 36) as usize % keys.len()),
                ) {
                    let _ = keys[i].zset_range_current_element();
                    match r % 5 {
                        0 => {
                            let _ = keys[j].zset_rem(member(r >> 9));
                        }
                        1 => {
                            let _ =
                                keys[j].zset_incrby(int as f64, member(r >> 9), ZaddFlags::empty());
                        }
                        2 => {
                            let _ = keys[j].zset_score(member(r >> 9));
                        }
                        3 => call("ZREM", vec![name.into(), member(r >> 9), member(r >> 13)]),
                        _ => call("ZADD", vec![name.into(), "0".into(), member(r >> 9)]),
                    }
                    let _ = keys[i].zset_range_next();
                    let _ = keys[i].zset_range_prev();
                    let _ = keys[i].zset_range_current_element();
                    let _ = keys[i].zset_range_next_batch(3);
                    if r & 64 == 0 {
                        keys[i].zset_range_stop();
                    }
                }
            }
            // Sorted sets through calls: many members at once (crossing listpack -> skiplist),
            // all at one score (for lex ranges), removals by range, pops.
            25 => match r % 6 {
                0 | 1 => {
                    let n = (r >> 8) % 200;
                    let mut args = vec![name.to_string()];
                    for x in 0..n {
                        args.push(if r & 1 == 0 {
                            "0".into()
                        } else {
                            (x % 17).to_string()
                        });
                        args.push(member(x + (r >> 20)));
                    }
                    call("ZADD", args);
                }
                2 => call(
                    "ZREMRANGEBYLEX",
                    vec![name.into(), "[m1".into(), "(m3".into()],
                ),
                3 => call(
                    "ZREMRANGEBYSCORE",
                    vec![name.into(), "-inf".into(), ((r >> 8) % 20).to_string()],
                ),
                4 => call(
                    if r & 8 == 0 { "ZPOPMIN" } else { "ZPOPMAX" },
                    vec![name.into(), ((r >> 8) % 4).to_string()],
                ),
                _ => call(
                    "ZRANGESTORE",
                    vec![other.into(), name.into(), "0".into(), "-1".into()],
                ),
            },
            // Many members through a handle, some long.
            26 => {
                if let Some(i) = any(&keys) {
                    for x in 0..(r >> 8) % 150 {
                        let _ = keys[i].zset_add(
                            (x % 9) as f64,
                            member(x ^ (r >> 30)),
                            ZaddFlags::empty(),
                        );
                    }
                }
            }
            // Hashes through calls: many fields (past 128 entries or 64-byte values), deletes.
            27 => match r % 4 {
                0 | 1 => {
                    let mut args = vec![name.to_string()];
                    for x in 0..(r >> 8) % 300 {
                        args.push(member(x + (r >> 40)));
                        args.push(if x % 50 == 7 {
                            "v".repeat(80)
                        } else {
                            x.to_string()
                        });
                    }
                    if args.len() > 1 {
                        call("HSET", args);
                    }
                }
                2 => call(
                    "HDEL",
                    (0..(r >> 8) % 100)
                        .map(&member)
                        .chain([name.to_string()])
                        .rev()
                        .collect(),
                ),
                _ => call(
                    "HINCRBY",
                    vec![name.into(), member(r >> 8), int.to_string()],
                ),
            },
            // Sets through calls: integers past the intset limit (512), strings, removals, pops.
            28 => match r % 5 {
                0 | 1 => {
                    let mut args = vec![name.to_string()];
                    args.extend((0..(r >> 8) % 700).map(|x| x.to_string()));
                    if r & 4 == 0 {
                        args.push(member(r >> 20));
                    }
                    if args.len() > 1 {
                        call("SADD", args);
                    }
                }
                2 => call(
                    "SREM",
                    (0..(r >> 8) % 600)
                        .map(|x| x.to_string())
                        .chain([name.to_string()])
                        .rev()
                        .collect(),
                ),
                3 => call("SPOP", vec![name.into(), ((r >> 8) % 10).to_string()]),
                _ => call(
                    "SMOVE",
                    vec![name.into(), other.into(), ((r >> 8) % 700).to_string()],
                ),
            },
            // Scans interleaved with writes to the same key, through another handle or a call.
            29 => {
                if let Some(i) = any(&keys) {
                    let j = (r >> 36) as usize % keys.len();
                    for round in 0..1 + (r >> 8) % 4 {
                        let _ = keys[i].scan(1 + (r >> 12) as u32 % 16);
                        let x = (r >> (20 + round)) ^ round;
                        match (r >> 24) % 6 {
                            0 => {
                                let _ = keys[j].hash_set(
                                    HashSetFlags::empty(),
                                    &[(
                                        member(x).as_bytes(),
                                        if x & 1 == 0 { None } else { Some(b"v") },
                                    )],
                                );
                            }
                            1 => {
                                let _ = keys[j].zset_add(x as f64, member(x), ZaddFlags::empty());
                            }
                            2 => {
                                let _ = keys[j].zset_rem(member(x));
                            }
                            3 => call(
                                "SADD",
                                (0..x % 300)
                                    .map(|y| y.to_string())
                                    .chain([name.to_string()])
                                    .rev()
                                    .collect(),
                            ),
                            4 => call("HDEL", vec![name.into(), member(x), member(x + 1)]),
                            _ => call("SREM", vec![name.into(), (x % 300).to_string()]),
                        }
                    }
                    if r & 128 == 0 {
                        keys[i].scan_restart();
                    }
                    let _ = keys[i].scan(1000);
                }
            }
            // Lists by index, through any handle, mixed with pops and ranges through another.
            30 => {
                if let Some(i) = any(&keys) {
                    let j = (r >> 36) as usize % keys.len();
                    for step in 0..1 + (r >> 8) % 6 {
                        let index = ((r >> (12 + step)) % 9) as i64 - 4;
                        let _ = match (r >> (20 + 2 * step)) % 6 {
                            0 => keys[i].list_set(index, "S"),
                            1 => keys[i].list_insert(index, "I"),
                            2 => keys[i].list_delete(index),
                            3 => keys[j]
                                .list_pop(if step & 1 == 0 {
                                    ListWhere::Head
                                } else {
                                    ListWhere::Tail
                                })
                                .map(|_| ()),
                            4 => keys[j].list_range(index, 3).map(|_| ()),
                            _ => keys[i].list_get(index).map(|_| ()),
                        };
                    }
                }
            }
            // Lists through calls, by index and value.
            31 => match r % 6 {
                0 => call(
                    "LINSERT",
                    vec![
                        name.into(),
                        if r & 8 == 0 {
                            "BEFORE".into()
                        } else {
                            "AFTER".into()
                        },
                        "i".into(),
                        "J".into(),
                    ],
                ),
                1 => call(
                    "LSET",
                    vec![name.into(), (int % 10).to_string(), "L".into()],
                ),
                2 => call("LREM", vec![name.into(), (int % 3).to_string(), "i".into()]),
                3 => call(
                    "LTRIM",
                    vec![
                        name.into(),
                        ((r >> 8) % 5).to_string(),
                        (-1 - (r >> 12) as i64 % 5).to_string(),
                    ],
                ),
                4 => call(
                    "LMOVE",
                    vec![name.into(), other.into(), "LEFT".into(), "RIGHT".into()],
                ),
                _ => {
                    let values: Vec<String> = (0..(r >> 8) % 300)
                        .map(|x| {
                            if x % 40 == 0 {
                                "z".repeat(100)
                            } else {
                                x.to_string()
                            }
                        })
                        .collect();
                    if !values.is_empty() {
                        call(
                            if r & 8 == 0 { "LPUSH" } else { "RPUSH" },
                            [name.to_string()].into_iter().chain(values).collect(),
                        );
                    }
                }
            },
            // Data type values with expires, read back through another handle. (Expires are in
            // the past or far ahead: the suite compares datasets across restarts, and a key
            // expiring meanwhile would make them differ.)
            32 => {
                if let Some(i) = any(&keys) {
                    let j = (r >> 36) as usize % keys.len();
                    let _ = keys[i].set_value(&EVIL_TYPE, vec![b't'; (r % 30) as usize]);
                    let _ = match (r >> 8) % 4 {
                        0 => keys[i].set_expire(1_000_000_000 + (r >> 12) as i64 % 5),
                        1 => keys[i].set_abs_expire(1),
                        2 => keys[i].set_expire(i64::MAX / 8),
                        _ => keys[i].set_expire(-1),
                    };
                    let _ = keys[j].get_value(&EVIL_TYPE);
                    let _ = keys[j].data_type_name();
                    let _ = keys[j].get_expire();
                    let _ = keys[j].get_abs_expire();
                    let _ = keys[j].value_length();
                }
            }
            // Calls that change the type of (or move, rename, replace) keys that may be open,
            // then reads through any handle.
            33 => {
                match r % 12 {
                    0 => call("SET", vec![name.into(), "x".into()]),
                    1 => call("HSET", vec![name.into(), "f".into(), "v".into()]),
                    2 => call("ZADD", vec![name.into(), "1".into(), "m1".into()]),
                    3 => call("SADD", vec![name.into(), "5".into()]),
                    4 => call("RPUSH", vec![name.into(), "i".into()]),
                    5 => call("RENAME", vec![name.into(), other.into()]),
                    6 => call(
                        "COPY",
                        vec![
                            name.into(),
                            other.into(),
                            "DB".into(),
                            db.to_string(),
                            "REPLACE".into(),
                        ],
                    ),
                    7 => call("MOVE", vec![name.into(), db.to_string()]),
                    8 => call("GETDEL", vec![name.into()]),
                    9 => call("SETEX", vec![name.into(), "100".into(), "e".into()]),
                    10 => call("UNLINK", vec![name.into(), other.into()]),
                    _ => call(
                        "SORT",
                        vec![name.into(), "ALPHA".into(), "STORE".into(), other.into()],
                    ),
                }
                if let Some(i) = any(&keys) {
                    let k = &keys[i];
                    let _ = k.key_type();
                    let _ = k.value_length();
                    let _ = k.string_read(0, 4);
                    let _ = k.list_get(0);
                    let _ = k.hash_get(&[b"f", b"m1"]);
                    let _ = k.zset_score("m1");
                    let _ = k.zset_range_next();
                    let _ = k.scan(2);
                    let _ = k.get_value(&EVIL_TYPE);
                }
            }
            // Explicit and verbatim replication, and databases switched between writes.
            34 => {
                match r % 6 {
                    0 => {
                        let _ = ctx.replicate("PING", &[]);
                    }
                    1 => {
                        let _ = ctx.replicate("DEL", &[&"fz:never"]);
                    }
                    // (Only what leaves the master's dataset as it is: an explicit write the
                    // master did not make would rightly make the AOF or replicas differ.)
                    2 => {
                        let _ =
                            ctx.replicate_ext("DEL", &[&"fz:never"], ReplicateFlags::NO_REPLICAS);
                    }
                    3 if verbatim => {
                        let _ = ctx.replicate_verbatim();
                    }
                    4 => {
                        let _ = ctx.replicate_ext("PING", &[], ReplicateFlags::NO_AOF);
                    }
                    _ => {}
                }
                let _ = ctx.select_db(db);
                if let Some(k) = keys.last() {
                    let _ = k.list_push(ListWhere::Tail, "db");
                }
                if r & 8 == 0 {
                    let _ = ctx.call("INCR", &[&"fz:c"]);
                }
                let _ = ctx.select_db(((r >> 9) % 3) as u32);
                if let Some(i) = any(&keys) {
                    let _ = keys[i].hash_set(HashSetFlags::empty(), &[(b"db", Some(b"1"))]);
                }
            }
            // An expire in the past, then writes to the key (through the handle, another, a call).
            35 => {
                if let Some(i) = any(&keys) {
                    let j = (r >> 36) as usize % keys.len();
                    let _ = if r & 1 == 0 {
                        keys[i].set_abs_expire(1)
                    } else {
                        keys[i].set_expire(0)
                    };
                    let _ = match (r >> 8) % 7 {
                        0 => keys[i].list_push(ListWhere::Head, "p"),
                        1 => keys[j].string_set("p"),
                        2 => keys[j]
                            .hash_set(HashSetFlags::empty(), &[(b"p", Some(b"p"))])
                            .map(|_| ()),
                        3 => keys[i].zset_add(1.0, "p", ZaddFlags::empty()).map(|_| ()),
                        4 => keys[j].set_value(&EVIL_TYPE, b"p"),
                        5 => {
                            call("APPEND", vec![name.into(), "p".into()]);
                            Ok(())
                        }
                        _ => keys[i].string_write(2, b"p"),
                    };
                    let _ = keys[j].value_length();
                    let _ = keys[i].key_type();
                }
                if r & 2 == 0 {
                    call("PEXPIREAT", vec![name.into(), "1".into()]);
                    call("LPUSH", vec![name.into(), "q".into()]);
                }
            }
            // Reads of keys that do not exist, through a handle and calls.
            36 => {
                if let Ok(k) = ctx.open_key("fz:none") {
                    let _ = k.key_type();
                    let _ = k.value_length();
                    let _ = k.string_read(0, 10);
                    let _ = k.list_get(0);
                    let _ = k.list_range(0, 5);
                    let _ = k.hash_get(&[b"f"]);
                    let _ = k.hash_exists(&[b"f"]);
                    let _ = k.zset_score("m");
                    let _ = k.zset_first_in_lex_range("-", "+");
                    let _ = k.zset_range_next();
                    let _ = k.scan(4);
                    let _ = k.get_value(&EVIL_TYPE);
                    let _ = k.get_expire();
                    keys.push(k);
                }
                for c in [
                    "GET", "HGETALL", "SMEMBERS", "LLEN", "ZCARD", "TTL", "TYPE", "OBJECT",
                ] {
                    if c == "OBJECT" {
                        call(c, vec!["ENCODING".into(), name.into()]);
                    } else {
                        call(c, vec!["fz:none".into()]);
                    }
                }
                let _ = ctx.key_exists("fz:none");
            }
            // Whole databases: flush and swap (rarely), or look at types and encodings.
            37 => match r % 16 {
                0 => call("FLUSHDB", vec![]),
                1 | 2 => call("SWAPDB", vec![db.to_string(), ((r >> 12) % 3).to_string()]),
                _ => {
                    call("OBJECT", vec!["ENCODING".into(), name.into()]);
                    call("TYPE", vec![name.into()]);
                    call("DBSIZE", vec![]);
                }
            },
            // Hash fields through handles, many at once.
            38 => {
                if let Some(i) = any(&keys) {
                    let j = (r >> 36) as usize % keys.len();
                    let fields: Vec<String> =
                        (0..(r >> 8) % 140).map(|x| member(x + (r >> 30))).collect();
                    let pairs: Vec<(&[u8], Option<&[u8]>)> = fields
                        .iter()
                        .map(|f| {
                            (
                                f.as_bytes(),
                                if r & 1 == 0 { Some(&b"hv"[..]) } else { None },
                            )
                        })
                        .collect();
                    let _ =
                        keys[i].hash_set(HashSetFlags::from_bits_truncate((r >> 24) as u8), &pairs);
                    let names: Vec<&[u8]> = fields.iter().take(10).map(|f| f.as_bytes()).collect();
                    let _ = keys[j].hash_get(&names);
                    let _ = keys[j].hash_exists(&names);
                }
            }
            // Expires through calls: past, future, removed.
            39 => match r % 4 {
                0 => call(
                    "PEXPIRE",
                    vec![name.into(), int.saturating_mul(1_000_000).to_string()],
                ),
                1 => call("EXPIRE", vec![name.into(), "-1".into()]),
                2 => call("PERSIST", vec![name.into()]),
                _ => call(
                    "PEXPIRE",
                    vec![name.into(), ((r >> 8) % 2 * 1_000_000_000).to_string()],
                ),
            },
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
