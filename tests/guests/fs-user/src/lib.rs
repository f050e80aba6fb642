//! Test guest that reads a file: it imports wasi:filesystem, which the host never grants, so it
//! must fail to load with a message naming the import.

use redis_wasm_sdk::{Context, RedisResult, RedisString, RedisValue, redis_module};

fn read_passwd(_ctx: &Context, _args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::BulkString(
        std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
    ))
}

redis_module! {
    name: "fs-user",
    version: 1,
    commands: [
        ["fsuser.read", read_passwd, "readonly", 0, 0, 0],
    ],
}
