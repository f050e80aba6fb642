//! # hellotype — Redis's data type example, as a guest
//!
//! A port of `src/modules/hellotype.c` from Redis 7.0.15: a data type, `hellotype`, whose
//! values are sorted lists of 64-bit integers, and the commands HELLOTYPE.INSERT,
//! HELLOTYPE.RANGE, HELLOTYPE.LEN and HELLOTYPE.BRANGE, with the same names, flags and replies.
//!
//! The C module keeps a linked list in memory and gives Redis callbacks to save, load, rewrite,
//! digest, measure and free it. A guest's value is the bytes it encodes — here the integers in
//! order, 8 bytes each, little-endian — and the host does all of that with those bytes (see
//! `docs/data-types.md`). What the guest does is what the C commands do.
//!
//! One quirk is kept on purpose: like the C module, HELLOTYPE.RANGE parses `first` but always
//! starts at the first element.
//!
//! Build:  `cargo build -p hellotype --target wasm32-wasip2 --profile guest`
//! Load:   `redis-cli WASM.LOAD $PWD/target/wasm32-wasip2/guest/hellotype.wasm`
//! Call:   `redis-cli HELLOTYPE.INSERT k 10` → `(integer) 1`; `redis-cli TYPE k` → `hellotype`

use redis_wasm_sdk::{
    BlockedPhase, Context, DataType, Key, RedisError, RedisResult, RedisString, RedisValue,
    redis_module,
};

/// The type: values written by this version use encoding 0 (as the C module's `encver`).
static HELLOTYPE: DataType = DataType::new("hellotype", 0);

/// A value of the type: the integers, in ascending order.
struct HelloTypeObject(Vec<i64>);

impl HelloTypeObject {
    /// The bytes are untrusted (`WASM.SETVALUE` and `RESTORE` store anything): a length that is
    /// not a whole number of integers is an error, not a guess.
    fn decode(data: &[u8]) -> Result<Self, RedisError> {
        if !data.len().is_multiple_of(8) {
            return Err(RedisError::Str("ERR corrupt hellotype value"));
        }
        Ok(HelloTypeObject(
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8 bytes")))
                .collect(),
        ))
    }

    fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Inserts before the first element not smaller than `value` (as the C linked list does).
    fn insert(&mut self, value: i64) {
        let at = self.0.partition_point(|&v| v < value);
        self.0.insert(at, value);
    }
}

/// Reads the key's value: `None` when the key is empty, WRONGTYPE when it holds something else.
fn load(key: &Key) -> Result<Option<HelloTypeObject>, RedisError> {
    key.get_value(&HELLOTYPE)?
        .map(|value| HelloTypeObject::decode(&value.data))
        .transpose()
}

/// HELLOTYPE.INSERT key value
fn hellotype_insert(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 3 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key_writable(&args[1])?;
    let current = load(&key)?;
    let Ok(value) = args[2].parse_integer() else {
        return Err(RedisError::Str(
            "ERR invalid value: must be a signed 64 bit integer",
        ));
    };
    let mut object = current.unwrap_or(HelloTypeObject(Vec::new()));
    object.insert(value);
    key.set_value(&HELLOTYPE, object.encode())?;
    ctx.signal_key_as_ready(&args[1]);
    ctx.replicate_verbatim()?;
    Ok(RedisValue::Integer(object.0.len() as i64))
}

/// HELLOTYPE.RANGE key first count
fn hellotype_range(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key(&args[1])?;
    let object = load(&key)?;
    let (Ok(first), Ok(count)) = (args[2].parse_integer(), args[3].parse_integer()) else {
        return Err(RedisError::Str("ERR invalid first or count parameters"));
    };
    if first < 0 || count < 0 {
        return Err(RedisError::Str("ERR invalid first or count parameters"));
    }
    let elements = object.map(|o| o.0).unwrap_or_default();
    ctx.reply_with_postponed_array();
    let mut sent = 0;
    for value in elements.iter().take(count as usize) {
        ctx.reply_with_long_long(*value);
        sent += 1;
    }
    ctx.reply_set_array_length(sent);
    Ok(RedisValue::NoReply)
}

/// HELLOTYPE.LEN key
fn hellotype_len(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 2 {
        return Err(RedisError::WrongArity);
    }
    let key = ctx.open_key(&args[1])?;
    let len = load(&key)?.map_or(0, |o| o.0.len());
    Ok(RedisValue::Integer(len as i64))
}

/// HELLOTYPE.BRANGE key first count timeout: like RANGE, but waits (up to `timeout`
/// milliseconds) for the key to get a value.
fn hellotype_brange(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    match ctx.blocked_phase() {
        // HelloBlock_Reply: serve the client if the ready key holds our type, else keep waiting.
        BlockedPhase::Reply => {
            let Some(ready) = ctx.blocked_client_ready_key() else {
                return Ok(RedisValue::NoReply);
            };
            let holds_ours = ctx
                .open_key(&ready)?
                .data_type_name()?
                .is_some_and(|name| name == HELLOTYPE.name());
            if !holds_ours {
                return Ok(RedisValue::NoReply);
            }
            return hellotype_range(ctx, args[..4].to_vec());
        }
        // HelloBlock_Timeout.
        BlockedPhase::Timeout => return Ok(RedisValue::SimpleStringStatic("Request timedout")),
        _ => {}
    }
    if args.len() != 5 {
        return Err(RedisError::WrongArity);
    }
    let empty = {
        let key = ctx.open_key(&args[1])?;
        load(&key)?.is_none()
    };
    // Parse the timeout before trying to serve synchronously, to fail fast on syntax errors.
    let Ok(timeout) = args[4].parse_integer() else {
        return Err(RedisError::Str("ERR invalid timeout parameter"));
    };
    if !empty {
        return hellotype_range(ctx, args[..4].to_vec());
    }
    // The C module blocks with a timeout already past, which times out at once.
    if timeout < 0 {
        return Ok(RedisValue::SimpleStringStatic("Request timedout"));
    }
    // The C module allocates 100 bytes of private data it never reads; so do we.
    ctx.block_client_on_keys(&[&args[1]], timeout, &[0; 100])?;
    Ok(RedisValue::NoReply)
}

redis_module! {
    name: "hellotype",
    version: 1,
    data_types: [HELLOTYPE],
    commands: [
        ["hellotype.insert", hellotype_insert, "write deny-oom", 1, 1, 1],
        ["hellotype.range", hellotype_range, "readonly", 1, 1, 1],
        ["hellotype.len", hellotype_len, "readonly", 1, 1, 1],
        ["hellotype.brange", hellotype_brange, "readonly", 1, 1, 1],
    ],
}
