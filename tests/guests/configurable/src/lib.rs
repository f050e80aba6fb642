//! Test guest: registers the commands named in its load arguments, as `name flags` pairs.
//! `WASM.LOAD configurable.wasm ARGS get readonly` tries to register a command called GET.
//! Each replies its own name; one whose name ends in `.borrowed` is a closure that borrows its
//! arguments and replies them all (name first), the other form `create_command` takes.

use redis_wasm_sdk::{
    Context, InitContext, RedisError, RedisResult, RedisString, RedisValue, redis_module,
};

fn reply_name(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    Ok(RedisValue::BulkRedisString(args[0].clone()))
}

fn init(ctx: &InitContext, args: &[RedisString]) -> Result<(), RedisError> {
    for pair in args.chunks(2) {
        let name = pair[0].try_as_str()?;
        let flags = pair
            .get(1)
            .map(|f| f.try_as_str())
            .transpose()?
            .unwrap_or("readonly");
        if name.ends_with(".borrowed") {
            let echo = |_: &Context, args: &[RedisString]| -> RedisResult {
                Ok(RedisValue::Array(
                    args.iter()
                        .cloned()
                        .map(RedisValue::BulkRedisString)
                        .collect(),
                ))
            };
            ctx.create_command(name, echo, flags, 0, 0, 0)?;
        } else {
            ctx.create_command(name, reply_name, flags, 0, 0, 0)?;
        }
    }
    Ok(())
}

redis_module! {
    name: "configurable",
    version: 1,
    init: init,
    commands: [],
}
