//! Blocking a client while work runs on another thread (`RedisModule_BlockClient`).
//!
//! The work hands back a continuation, which runs on the main thread with the client's context
//! (Redis's reply callback) and replies. If the client disconnected meanwhile, it still runs
//! (when Redis frees the private data, with a context of its own), its replies going nowhere: a
//! command Redis received is carried out whether or not its client waits for the answer.

use std::ffi::{c_int, c_void};
use std::ptr::{self, NonNull};

use redis_module::raw;

use super::{Ctx, OK, catch};

/// What runs on the main thread once the background work is done; `waiting` is false when the
/// client left meanwhile (its replies then go nowhere).
pub type Continuation = Box<dyn FnOnce(Ctx, Waiting) + Send>;

/// Whether the blocked client still waits for the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Yes,
    /// It disconnected, or Redis unblocked it (`REPLICAOF` unblocks every client).
    No,
    /// Redis unblocked it while the cluster was down, answering it `-CLUSTERDOWN` (see
    /// [`Ctx::block`]): the work must not happen behind that answer.
    ToldClusterDown,
}

/// Handles (by address) of clients Redis unblocked while the cluster was down, until their
/// work comes back to the main thread. Only the main thread uses it.
static TOLD_CLUSTER_DOWN: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

fn told_cluster_down() -> std::sync::MutexGuard<'static, Vec<usize>> {
    TOLD_CLUSTER_DOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `resume` hands Redis as private data: the work, and which handle it resumes.
struct Resumed {
    client: usize,
    then: Option<Continuation>,
}

/// A blocked client, to be resumed from any thread. Dropped without being resumed (the work
/// panicked, or its thread never started), it answers an internal error rather than leave the
/// client blocked for ever.
pub struct Blocked(Option<NonNull<raw::RedisModuleBlockedClient>>);

// SAFETY: RedisModule_UnblockClient is documented as callable from any thread.
unsafe impl Send for Blocked {}

impl Blocked {
    /// Resumes the client: `then` runs on the main thread with its context.
    pub fn resume(mut self, then: Continuation) {
        if let Some(client) = self.0.take() {
            let privdata = Box::into_raw(Box::new(Resumed {
                client: client.as_ptr() as usize,
                then: Some(then),
            }));
            // SAFETY: a client we blocked, unblocked once (the handle was taken out); Redis
            // passes `privdata` to `on_reply` (unless the client is gone) and then to
            // `free_continuation`, which owns it.
            unsafe { api!(RedisModule_UnblockClient)(client.as_ptr(), privdata.cast::<c_void>()) };
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        if self.0.is_some() {
            let lost = Blocked(self.0.take());
            lost.resume(Box::new(|ctx, _| ctx.reply_error(super::INTERNAL_ERROR)));
        }
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
    let privdata =
        unsafe { api!(RedisModule_GetBlockedClientPrivateData)(ctx.0.as_ptr()) }.cast::<Resumed>();
    // SAFETY: `privdata` is the live box from `resume`; `free_continuation` frees it later.
    let then = NonNull::new(privdata).and_then(|mut p| unsafe { p.as_mut() }.then.take());
    if let Some(then) = then
        && catch("a blocked client's reply", || then(ctx, Waiting::Yes)).is_none()
    {
        ctx.reply_error(super::INTERNAL_ERROR);
    }
    OK
}

extern "C" fn free_continuation(ctx: *mut raw::RedisModuleCtx, privdata: *mut c_void) {
    if privdata.is_null() {
        return;
    }
    catch("freeing a blocked client's data", || {
        // SAFETY: the box allocated in `resume`, freed exactly once here.
        let privdata = unsafe { Box::from_raw(privdata.cast::<Resumed>()) };
        let waiting = {
            let mut told = told_cluster_down();
            match told.iter().position(|&c| c == privdata.client) {
                Some(at) => {
                    told.swap_remove(at);
                    Waiting::ToldClusterDown
                }
                None => Waiting::No,
            }
        };
        // Still there: Redis skipped the reply callback because the client disconnected. This
        // callback's context has no client (the work would crash Redis replicating through
        // it), so the work gets a context of its own, with a client of its own whose replies
        // go nowhere. What it replicates is propagated when Redis frees this callback's
        // context.
        let (Some(then), Some(ctx)) = (privdata.then, NonNull::new(ctx)) else {
            return;
        };
        // SAFETY: Redis's context for this callback, of this module; freed below.
        let own = unsafe { api!(RedisModule_GetDetachedThreadSafeContext)(ctx.as_ptr()) };
        let Some(own) = NonNull::new(own) else { return };
        catch("a blocked client's work after it disconnected", || {
            then(Ctx(own), waiting)
        });
        // SAFETY: made above, no longer used.
        unsafe { api!(RedisModule_FreeThreadSafeContext)(own.as_ptr()) };
    });
}

impl Ctx {
    /// Whether this cluster node's state is `fail` (`CLUSTER INFO`).
    pub fn cluster_is_down(self) -> bool {
        self.call("CLUSTER", &["INFO"], b"")
            .ok()
            .and_then(|reply| reply.string())
            .is_some_and(|info| info.windows(18).any(|w| w == b"cluster_state:fail"))
    }

    /// Blocks the calling client until [`Blocked::resume`]. `None` where blocking is not
    /// possible (MULTI, scripts, the master, the AOF, a cluster that is down): do the work
    /// inline then.
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
        // While a cluster is down, Redis 7.0 answers every blocked client `-CLUSTERDOWN` and
        // unblocks it within 100 ms (`clusterRedirectBlockedClientIfNeeded`), even one blocked
        // without keys: the work would go on with its client told it failed.
        if flags & super::ctx_flags::CLUSTER != 0 && self.cluster_is_down() {
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
        let blocked = NonNull::new(blocked)?;
        if flags & super::ctx_flags::CLUSTER != 0 {
            // SAFETY: the handle just made; the callback is panic-safe.
            unsafe {
                api!(RedisModule_SetDisconnectCallback)(
                    blocked.as_ptr(),
                    Some(on_unblocked_by_redis),
                )
            };
        }
        Some(Blocked(Some(blocked)))
    }
}

/// Redis unblocked a client blocked by [`Ctx::block`] without the module (it disconnected, or
/// Redis answered it). While the cluster is down, that is Redis answering it `-CLUSTERDOWN`
/// (`clusterRedirectBlockedClientIfNeeded`): remembered, so that the work is dropped when it
/// comes back even if the cluster has recovered by then.
extern "C" fn on_unblocked_by_redis(
    ctx: *mut raw::RedisModuleCtx,
    client: *mut raw::RedisModuleBlockedClient,
) {
    catch("a blocked client unblocked by Redis", || {
        if let Some(ctx) = NonNull::new(ctx).map(Ctx)
            && ctx.cluster_is_down()
        {
            told_cluster_down().push(client as usize);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Guests' blocked clients. The state machine lives in `blocked.rs`; these are the raw calls and
// the callbacks Redis makes, which hand over to it.

/// A client blocked by a guest command (`RedisModuleBlockedClient`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockedClient(NonNull<raw::RedisModuleBlockedClient>);

// SAFETY: Redis documents RedisModule_UnblockClient and thread-safe contexts as usable from any
// thread; `blocked.rs` makes sure each handle is unblocked at most once and never after Redis
// freed it.
unsafe impl Send for BlockedClient {}
// SAFETY: as above; the handle is only compared or passed to Redis.
unsafe impl Sync for BlockedClient {}

/// What a guest blocked client carries (Redis's private data): always non-NULL, so Redis always
/// calls `guest_free` and `blocked.rs` learns when the handle is gone.
pub type GuestPrivdata = crate::blocked::Privdata;

extern "C" fn guest_reply(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    guest_callback(ctx, argv, argc, "a blocked client's reply", |ctx, args| {
        crate::blocked::on_reply(ctx, args)
    })
}

extern "C" fn guest_timeout(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    guest_callback(
        ctx,
        argv,
        argc,
        "a blocked client's timeout",
        |ctx, args| {
            crate::blocked::on_timeout(ctx, args);
            true
        },
    )
}

/// Runs a reply or timeout callback; `served` false keeps a client blocked on keys waiting.
fn guest_callback(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    what: &str,
    callback: impl FnOnce(Ctx, super::Args<'_>) -> bool,
) -> c_int {
    let Some(ctx) = NonNull::new(ctx).map(Ctx) else {
        return OK;
    };
    let argv: &[*mut raw::RedisModuleString] = match usize::try_from(argc) {
        // SAFETY: Redis passes the blocked client's `argc` argument strings.
        Ok(n) if n > 0 && !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    match catch(what, || callback(ctx, super::Args { argv })) {
        Some(true) => OK,
        Some(false) => super::ERR,
        None => {
            ctx.reply_error(super::INTERNAL_ERROR);
            OK
        }
    }
}

extern "C" fn guest_free(ctx: *mut raw::RedisModuleCtx, privdata: *mut c_void) {
    if !privdata.is_null() {
        catch("freeing a blocked client's data", || {
            // SAFETY: every guest blocked client's private data is a Box<GuestPrivdata> made by
            // `into_privdata`; Redis frees each one once.
            let privdata = unsafe { Box::from_raw(privdata.cast::<GuestPrivdata>()) };
            crate::blocked::on_free(NonNull::new(ctx).map(Ctx), *privdata);
        });
    }
}

/// A module timer (`RedisModuleTimerID`).
pub type TimerId = raw::RedisModuleTimerID;

extern "C" fn timer_fired(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    // The data is the blocked client's id, not a pointer.
    let id = data.addr() as u64;
    catch("a blocked client's timeout", || {
        crate::blocked::on_timer(id)
    });
}

extern "C" fn guest_disconnect(
    _ctx: *mut raw::RedisModuleCtx,
    client: *mut raw::RedisModuleBlockedClient,
) {
    if let Some(client) = NonNull::new(client).map(BlockedClient) {
        catch("a blocked client's disconnection", || {
            crate::blocked::on_disconnect(client)
        });
    }
}

fn into_privdata(privdata: GuestPrivdata) -> *mut c_void {
    Box::into_raw(Box::new(privdata)).cast()
}

impl BlockedClient {
    /// `RedisModule_UnblockClient`: Redis runs the reply callback with `privdata` on the main
    /// thread. Callable from any thread.
    pub fn unblock(self, privdata: GuestPrivdata) {
        // SAFETY: a live handle (see `blocked.rs`); Redis owns the private data from here and
        // frees it with `guest_free`.
        unsafe { api!(RedisModule_UnblockClient)(self.0.as_ptr(), into_privdata(privdata)) };
    }

    /// `RedisModule_UnblockClient` for a client blocked on keys: Redis answers it through the
    /// timeout callback (the private data given here would be ignored, so none is).
    pub fn unblock_keys(self) {
        // SAFETY: a live handle of a client blocked on keys.
        unsafe { api!(RedisModule_UnblockClient)(self.0.as_ptr(), ptr::null_mut()) };
    }

    /// `RedisModule_AbortBlock`: unblocks without running any callback.
    pub fn abort(self) {
        // SAFETY: a live handle, in the command that blocked it.
        unsafe { api!(RedisModule_AbortBlock)(self.0.as_ptr()) };
    }

    /// A thread-safe context bound to this client (`RedisModule_GetThreadSafeContext`).
    pub fn thread_safe_ctx(self) -> Option<ThreadSafeCtx> {
        // SAFETY: a live handle; the context is freed when the ThreadSafeCtx drops.
        let ctx = unsafe { api!(RedisModule_GetThreadSafeContext)(self.0.as_ptr()) };
        NonNull::new(ctx).map(|ctx| ThreadSafeCtx(Ctx(ctx)))
    }
}

/// A thread-safe context; Redis's lock must be held to use it for anything but replies.
pub struct ThreadSafeCtx(Ctx);

// SAFETY: thread-safe contexts are made to be used from other threads (under the lock).
unsafe impl Send for ThreadSafeCtx {}

impl ThreadSafeCtx {
    /// The context, to use only while [`lock`](Self::lock)'s guard lives.
    pub fn ctx(&self) -> Ctx {
        self.0
    }

    /// Takes Redis's global lock (`RedisModule_ThreadSafeContextLock`) until the guard drops.
    pub fn lock(&self) -> RedisLock<'_> {
        // SAFETY: a live thread-safe context, not already locked by this thread.
        unsafe { api!(RedisModule_ThreadSafeContextLock)(self.0.0.as_ptr()) };
        RedisLock(self)
    }
}

impl Drop for ThreadSafeCtx {
    fn drop(&mut self) {
        // SAFETY: we own the context.
        unsafe { api!(RedisModule_FreeThreadSafeContext)(self.0.0.as_ptr()) };
    }
}

/// A detached thread-safe context, made in `OnLoad`, for threads that must take Redis's lock
/// without a context of their own (Redis 7.0's lock ignores the context it is given).
struct Locker(Ctx);

// SAFETY: only passed to `ThreadSafeContextLock`/`Unlock`, which are made for other threads
// and do not touch the context; never freed.
unsafe impl Send for Locker {}
// SAFETY: as above.
unsafe impl Sync for Locker {}

static LOCKER: std::sync::OnceLock<Locker> = std::sync::OnceLock::new();

impl Ctx {
    /// Makes the context [`with_redis_lock`] locks with. Called from `OnLoad`.
    pub fn init_redis_lock(self) {
        // SAFETY: valid OnLoad context; the detached context lives as long as the server.
        let ctx = unsafe { api!(RedisModule_GetDetachedThreadSafeContext)(self.0.as_ptr()) };
        if let Some(ctx) = NonNull::new(ctx) {
            let _ = LOCKER.set(Locker(Ctx(ctx)));
        }
    }
}

/// Runs `f` holding Redis's global lock, from a thread other than Redis's main thread (the
/// main thread holds it already: this would deadlock there).
pub fn with_redis_lock<T>(f: impl FnOnce() -> T) -> T {
    let Some(locker) = LOCKER.get() else {
        return f();
    };
    // SAFETY: a live thread-safe context, and this thread does not hold the lock.
    unsafe { api!(RedisModule_ThreadSafeContextLock)(locker.0.0.as_ptr()) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    // SAFETY: locked just above.
    unsafe { api!(RedisModule_ThreadSafeContextUnlock)(locker.0.0.as_ptr()) };
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Redis's global lock, held for a background job's call.
pub struct RedisLock<'a>(&'a ThreadSafeCtx);

impl Drop for RedisLock<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by `ThreadSafeCtx::lock`.
        unsafe { api!(RedisModule_ThreadSafeContextUnlock)(self.0.0.0.as_ptr()) };
    }
}

impl Ctx {
    /// Why this context cannot block its client, if it cannot.
    pub fn cannot_block(self) -> Option<&'static str> {
        let flags = self.flags();
        if flags & super::ctx_flags::MULTI != 0 {
            Some("inside MULTI")
        } else if flags & super::ctx_flags::LUA != 0 {
            Some("inside a script (EVAL or FCALL)")
        } else if super::ctx_flags::replayed(flags) {
            Some("for the master or the AOF")
        } else if flags & super::ctx_flags::DENY_BLOCKING != 0 {
            Some("in a call from another command")
        } else {
            None
        }
    }

    /// `RedisModule_BlockClient` for a guest command, with the host's callbacks and no Redis
    /// timeout (see [`create_timer`](Self::create_timer)).
    pub fn block_guest_client(self) -> Option<BlockedClient> {
        // SAFETY: valid command context that may block (checked by the caller); the callbacks
        // are panic-safe.
        let client = unsafe {
            api!(RedisModule_BlockClient)(
                self.0.as_ptr(),
                Some(guest_reply),
                Some(guest_timeout),
                Some(guest_free),
                0,
            )
        };
        let client = NonNull::new(client).map(BlockedClient)?;
        // SAFETY: a handle just made.
        unsafe {
            api!(RedisModule_SetDisconnectCallback)(client.0.as_ptr(), Some(guest_disconnect))
        };
        Some(client)
    }

    /// `RedisModule_CreateTimer`: in `timeout_ms`, `blocked::on_timer(id)` runs on the main
    /// thread.
    pub fn create_timer(self, timeout_ms: i64, id: u64) -> TimerId {
        let data = std::ptr::without_provenance_mut::<c_void>(id as usize);
        // SAFETY: valid context of this module; the callback is panic-safe; `data` is only
        // read back as an integer.
        unsafe {
            api!(RedisModule_CreateTimer)(self.0.as_ptr(), timeout_ms, Some(timer_fired), data)
        }
    }

    /// `RedisModule_StopTimer` (a timer that already fired is simply not found).
    pub fn stop_timer(self, timer: TimerId) {
        let mut data = ptr::null_mut();
        // SAFETY: valid context of the module that created the timer.
        unsafe { api!(RedisModule_StopTimer)(self.0.as_ptr(), timer, &mut data) };
    }

    /// `RedisModule_BlockClientOnKeys` for a guest command.
    pub fn block_guest_client_on_keys(
        self,
        keys: &[Vec<u8>],
        timeout_ms: i64,
        privdata: GuestPrivdata,
    ) -> Option<BlockedClient> {
        let strings: Vec<super::OwnedString> =
            keys.iter().map(|k| super::OwnedString::new(k)).collect();
        let mut pointers: Vec<*mut raw::RedisModuleString> =
            strings.iter().map(super::OwnedString::as_ptr).collect();
        let numkeys = c_int::try_from(pointers.len()).ok()?;
        // SAFETY: valid command context that may block; Redis retains the key names it keeps;
        // the private data is Redis's from here (freed by `guest_free`).
        let client = unsafe {
            api!(RedisModule_BlockClientOnKeys)(
                self.0.as_ptr(),
                Some(guest_reply),
                Some(guest_timeout),
                Some(guest_free),
                timeout_ms,
                pointers.as_mut_ptr(),
                numkeys,
                into_privdata(privdata),
            )
        };
        NonNull::new(client).map(BlockedClient)
    }

    /// In a reply or timeout callback: the blocked client's private data.
    pub fn guest_privdata<'a>(self) -> Option<&'a mut GuestPrivdata> {
        // SAFETY: in a callback of a guest blocked client, the private data is a live
        // Box<GuestPrivdata> (see `into_privdata`), owned by Redis until `guest_free`.
        unsafe {
            api!(RedisModule_GetBlockedClientPrivateData)(self.0.as_ptr())
                .cast::<GuestPrivdata>()
                .as_mut()
        }
    }

    /// In a reply callback of a client blocked on keys: the key that is ready.
    pub fn blocked_ready_key(self) -> Option<Vec<u8>> {
        // SAFETY: valid callback context; the string belongs to Redis.
        let key = unsafe { api!(RedisModule_GetBlockedClientReadyKey)(self.0.as_ptr()) };
        (!key.is_null()).then(|| super::string_bytes(key).to_vec())
    }

    /// In a callback: the blocked client's handle.
    pub fn blocked_client(self) -> Option<BlockedClient> {
        // SAFETY: valid callback context.
        NonNull::new(unsafe { api!(RedisModule_GetBlockedClientHandle)(self.0.as_ptr()) })
            .map(BlockedClient)
    }

    /// `RedisModule_SignalKeyAsReady`.
    pub fn signal_key_as_ready(self, key: &[u8]) {
        let key = super::OwnedString::new(key);
        // SAFETY: valid context and string.
        unsafe { api!(RedisModule_SignalKeyAsReady)(self.0.as_ptr(), key.as_ptr()) };
    }

    /// Runs `f` with the context's calls made as the ACL user `name` (`RedisModule_SetContextUser`),
    /// or returns `None` if no such user exists now. `_lock` proves Redis's lock is held.
    pub fn as_user<T>(
        self,
        _lock: &RedisLock<'_>,
        name: &[u8],
        f: impl FnOnce() -> T,
    ) -> Option<T> {
        /// Puts the context's user back and frees the looked-up one, also if `f` panics.
        struct RestoreUser(Ctx, NonNull<raw::RedisModuleUser>);
        impl Drop for RestoreUser {
            fn drop(&mut self) {
                // SAFETY: still under the lock `as_user` was given; the user was looked up
                // there and is freed once, after the context stops using it.
                unsafe {
                    api!(RedisModule_SetContextUser)(self.0.0.as_ptr(), ptr::null());
                    api!(RedisModule_FreeModuleUser)(self.1.as_ptr());
                }
            }
        }
        let name = super::OwnedString::new(name);
        // SAFETY: the lock is held (`_lock`); the user is looked up now and released (only the
        // wrapper: it is not a module user) before the lock is, by `RestoreUser`.
        let user =
            NonNull::new(unsafe { api!(RedisModule_GetModuleUserFromUserName)(name.as_ptr()) })?;
        // SAFETY: as above; a valid context and a live user.
        unsafe { api!(RedisModule_SetContextUser)(self.0.as_ptr(), user.as_ptr()) };
        let _restore = RestoreUser(self, user);
        Some(f())
    }
}
