//! Blocking a client while work runs on another thread (`RedisModule_BlockClient`).
//!
//! The work hands back a continuation, which runs on the main thread with the client's context
//! (Redis's reply callback) and replies. If the client disconnects first, the continuation is
//! dropped unrun.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use redis_module::raw;

use super::{Ctx, OK, catch};

/// What runs on the main thread once the background work is done.
pub type Continuation = Box<dyn FnOnce(Ctx) + Send>;

/// A blocked client, to be resumed from any thread.
pub struct Blocked(NonNull<raw::RedisModuleBlockedClient>);

// SAFETY: RedisModule_UnblockClient is documented as callable from any thread.
unsafe impl Send for Blocked {}

impl Blocked {
    /// Resumes the client: `then` runs on the main thread with its context.
    pub fn resume(self, then: Continuation) {
        let privdata = Box::into_raw(Box::new(Some(then)));
        // SAFETY: a client we blocked; Redis passes `privdata` to `on_reply` and then to
        // `free_continuation`, which owns it.
        unsafe { api!(RedisModule_UnblockClient)(self.0.as_ptr(), privdata.cast::<c_void>()) };
    }
}

extern "C" fn on_reply(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let Some(ctx) = NonNull::new(ctx).map(Ctx) else {
        return OK;
    };
    // SAFETY: in a reply callback, the private data is what `resume` passed.
    let privdata = unsafe { api!(RedisModule_GetBlockedClientPrivateData)(ctx.0.as_ptr()) }
        .cast::<Option<Continuation>>();
    // SAFETY: `privdata` is the live box from `resume`; `free_continuation` frees it later.
    let then = NonNull::new(privdata).and_then(|mut p| unsafe { p.as_mut() }.take());
    if let Some(then) = then
        && catch("a blocked client's reply", || then(ctx)).is_none()
    {
        ctx.reply_error("ERR internal error in redis-wasm (see the server log)");
    }
    OK
}

extern "C" fn free_continuation(_ctx: *mut raw::RedisModuleCtx, privdata: *mut c_void) {
    if !privdata.is_null() {
        catch("freeing a blocked client's data", || {
            // SAFETY: the box allocated in `resume`, freed exactly once here.
            drop(unsafe { Box::from_raw(privdata.cast::<Option<Continuation>>()) })
        });
    }
}

impl Ctx {
    /// Blocks the calling client until [`Blocked::resume`]. `None` where blocking is not
    /// possible (MULTI, scripts, the master, the AOF): do the work inline then.
    pub fn block(self) -> Option<Blocked> {
        let flags = self.flags();
        let cannot = super::ctx_flags::MULTI
            | super::ctx_flags::LUA
            | super::ctx_flags::REPLICATED
            | super::ctx_flags::LOADING
            | super::ctx_flags::DENY_BLOCKING;
        if flags & cannot != 0 {
            return None;
        }
        // SAFETY: valid command context; callbacks are panic-safe; no timeout.
        let blocked = unsafe {
            api!(RedisModule_BlockClient)(
                self.0.as_ptr(),
                Some(on_reply),
                None,
                Some(free_continuation),
                0,
            )
        };
        NonNull::new(blocked).map(Blocked)
    }
}
