//! Test guest that reaches for files and the network with Rust's standard library, which links
//! in wasi:filesystem and wasi:sockets. The host grants those interfaces without any capability:
//! the guest loads, finds no file, and traps if it uses a socket.

use redis_wasm_sdk::{Context, RedisResult, RedisString, RedisValue, redis_module};

/// `FSUSER.READ <path>`: the file's text, or the error reading it gave.
fn read(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let path = args.get(1).map(|a| a.to_string_lossy()).unwrap_or_default();
    Ok(RedisValue::BulkString(
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("error: {e}")),
    ))
}

/// `FSUSER.CONNECT <addr>`: connects a TCP socket; what it gave.
fn connect(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let addr = args.get(1).map(|a| a.to_string_lossy()).unwrap_or_default();
    Ok(RedisValue::BulkString(
        match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => "connected".to_owned(),
            Err(e) => format!("error: {e}"),
        },
    ))
}

redis_module! {
    name: "fs-user",
    version: 1,
    commands: [
        ["fsuser.read", read, "readonly", 0, 0, 0],
        ["fsuser.connect", connect, "readonly", 0, 0, 0],
    ],
}
