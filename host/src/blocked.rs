//! Guests' blocked clients: blocking commands, their callbacks, and background jobs.
//!
//! A guest command blocks its client (`RedisModule_BlockClient` / `BlockClientOnKeys`) and
//! returns; Redis keeps serving others. Later Redis calls the host's callbacks (`ffi/blocking.rs`),
//! which run the same guest command again in phase `reply` or `timeout` (see `CallPhase`) so the
//! guest can answer. Private data is bytes the host keeps in the handle and frees itself.
//!
//! Redis's rule for a client blocked with `RedisModule_BlockClient` is that the module calls
//! `RedisModule_UnblockClient` exactly once, even after a timeout or a disconnection, and never
//! after. Each such client has an [`Entry`] here, whose `released` flag (under one mutex, since
//! background jobs unblock from their threads) makes sure of it: the first of the guest's
//! `unblock-client`, the end of its background job, the timeout, the disconnection or the unload
//! of the guest releases the handle; the others find it released and do nothing. Clients
//! blocked on keys are released by Redis itself. Every handle carries non-NULL private data, so
//! Redis always calls `on_free`, where the entry goes away.
//!
//! Timeouts of clients blocked with `block-client` are module timers rather than Redis's own:
//! Redis 7.0 skips the reply of a client whose timeout falls in the same event-loop turn as its
//! unblocking (the client would get no answer at all, shifting its replies); a timer instead
//! releases the client like any other party, with a payload that runs the guest's timeout phase.
//!
//! A background job runs the command in a separate instance of the guest on its own thread
//! (`Guest::run_background`), with a thread-safe context (made on the main thread, from the
//! blocked client) whose lock is taken for each call. Redis frees that context's client when
//! the handle is unblocked, so while a job works, nobody else unblocks: a release by anyone
//! else (timeout, disconnection, unload, `unblock-client`, the command's own reply) is recorded
//! and cancels the job, and the job's end unblocks with the first payload recorded, or its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ffi::{Args, BlockedClient, Ctx};
use crate::guest::Guest;
use crate::registry::{self, Route};
use crate::reply::ReplyBuffer;
use crate::scope::CallPhase;

/// What a blocked client's handle carries to its reply callback.
pub enum Payload {
    /// Private data for the guest's reply phase (`unblock-client`, `block-client-on-keys`).
    Data(Vec<u8>),
    /// A finished reply, sent as it is (a background job's, or a blocked command's own).
    Reply(ReplyBuffer),
    /// An error to answer.
    Error(String),
    /// The timeout: the reply callback runs the guest's timeout phase.
    Timeout,
    /// Nothing to answer: the handle is only being released (after a timeout or disconnection).
    Nothing,
    /// The command that blocked the client answered it itself (`abort-block`).
    Answered,
}

/// Redis's private data of a guest blocked client.
pub struct Privdata {
    pub id: u64,
    pub payload: Payload,
}

struct Entry {
    client: BlockedClient,
    /// Redis's id of the blocked client: its background job runs as that client's user.
    client_id: u64,
    /// The client's ACL user when it blocked (see [`user_changed`]).
    user: Option<Vec<u8>>,
    guest: Arc<Guest>,
    command: u32,
    on_keys: bool,
    /// `RedisModule_UnblockClient` (or `AbortBlock`) was called: never touch the handle again.
    released: bool,
    /// `AbortBlock` is running: its timeout callback must do nothing.
    aborting: bool,
    /// Redis unblocked the client itself (its timeout callback ran: `CLIENT UNBLOCK`, or a key
    /// wait's timeout): whatever the handle still waits for, the client is no longer blocked.
    unblocked_by_redis: bool,
    /// The cancel flag of the background job working for this client.
    job: Option<Arc<AtomicBool>>,
    /// A release that came while the job worked: what the client gets when the job ends.
    deferred: Option<Payload>,
    /// The module timer of the client's timeout, stopped when the handle goes away.
    timer: Option<crate::ffi::TimerId>,
}

static ENTRIES: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Background jobs running now, across guests.
static JOBS: AtomicUsize = AtomicUsize::new(0);

fn entries() -> MutexGuard<'static, Option<HashMap<u64, Entry>>> {
    ENTRIES.lock().unwrap_or_else(PoisonError::into_inner)
}

fn with_entries<T>(f: impl FnOnce(&mut HashMap<u64, Entry>) -> T) -> T {
    f(entries().get_or_insert_with(HashMap::new))
}

/// Longest timeout: about 34 years (Redis adds it to the clock in microseconds unchecked).
const MAX_TIMEOUT_MS: i64 = 1 << 40;

/// A background job's thread stack (reserved address space; touched pages only are memory).
const JOB_STACK_SIZE: usize = 8 << 20;

fn check_timeout(timeout_ms: i64) -> Result<(), String> {
    if timeout_ms < 0 {
        return Err("ERR the timeout cannot be negative".to_owned());
    }
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!("ERR the timeout cannot exceed {MAX_TIMEOUT_MS} ms"));
    }
    Ok(())
}

/// Records a client the running command (of `ctx`) blocked.
fn register(
    ctx: Ctx,
    client: BlockedClient,
    guest: Arc<Guest>,
    command: u32,
    on_keys: bool,
    id: u64,
    timer: Option<crate::ffi::TimerId>,
) {
    with_entries(|entries| {
        entries.insert(
            id,
            Entry {
                client,
                client_id: ctx.client_id(),
                user: ctx.client_user_name(ctx.client_id()),
                guest,
                command,
                on_keys,
                released: false,
                aborting: false,
                unblocked_by_redis: false,
                job: None,
                deferred: None,
                timer,
            },
        )
    });
}

/// `block-client`: blocks the client running `command` of guest `guest`.
pub fn block(ctx: Ctx, guest: &str, command: u32, timeout_ms: i64) -> Result<u64, String> {
    check_timeout(timeout_ms)?;
    if let Some(why) = ctx.cannot_block() {
        return Err(format!("ERR the client cannot be blocked {why}"));
    }
    let guest = registry::guest(guest).ok_or("ERR the guest is not loaded")?;
    let client = ctx
        .block_guest_client()
        .ok_or("ERR Redis refused to block the client")?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let timer = (timeout_ms > 0).then(|| ctx.create_timer(timeout_ms, id));
    register(ctx, client, guest, command, false, id, timer);
    Ok(id)
}

/// `block-client-on-keys`.
pub fn block_on_keys(
    ctx: Ctx,
    guest: &str,
    command: u32,
    keys: &[Vec<u8>],
    timeout_ms: i64,
    private_data: Vec<u8>,
) -> Result<u64, String> {
    check_timeout(timeout_ms)?;
    if keys.is_empty() {
        return Err("ERR block-client-on-keys needs at least one key".to_owned());
    }
    if let Some(why) = ctx.cannot_block() {
        return Err(format!("ERR the client cannot be blocked {why}"));
    }
    let guest = registry::guest(guest).ok_or("ERR the guest is not loaded")?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let privdata = Privdata {
        id,
        payload: Payload::Data(private_data),
    };
    let client = ctx
        .block_guest_client_on_keys(keys, timeout_ms, privdata)
        .ok_or("ERR Redis refused to block the client")?;
    register(ctx, client, guest, command, true, id, None);
    Ok(id)
}

/// Who asks for a release: the job itself does not cancel itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Job,
    Other,
}

/// What a release request came to.
enum Released {
    /// Unblock this handle now, with this payload.
    Now(BlockedClient, Payload),
    /// A background job works for the client: the payload waits for the job's end.
    Deferred,
    /// Already released (or a release is already waiting for the job's end).
    Already,
}

/// Marks the client released (if it was not). While a background job works for the client,
/// the release is recorded for the job's end instead (the job still uses the client's
/// thread-safe context) and, unless the job asked, the job is cancelled.
fn take_for_release(entry: &mut Entry, payload: Payload, by: By) -> Released {
    if entry.released || entry.deferred.is_some() {
        // A job that answered early (its own `unblock-client`) works on for nobody now.
        if let (By::Other, Some(job)) = (by, &entry.job) {
            job.store(true, Ordering::SeqCst);
        }
        return Released::Already;
    }
    if let Some(job) = &entry.job {
        if by == By::Other {
            job.store(true, Ordering::SeqCst);
        }
        entry.deferred = Some(payload);
        return Released::Deferred;
    }
    entry.released = true;
    Released::Now(entry.client, payload)
}

/// Releases a client blocked with `block-client` with this payload, unless already released.
/// Returns whether this call released it (or had its release recorded for a job's end).
fn release(id: u64, payload: Payload, by: By) -> bool {
    let released = with_entries(
        |entries| match entries.get_mut(&id).filter(|e| !e.on_keys) {
            Some(entry) => take_for_release(entry, payload, by),
            None => Released::Already,
        },
    );
    match released {
        Released::Now(client, payload) => {
            client.unblock(Privdata { id, payload });
            true
        }
        Released::Deferred => true,
        Released::Already => false,
    }
}

/// Whether the client with Redis id `client_id` has its answer decided — released by the host,
/// served on a key, aborted, or released by someone else while its job winds down (cancelled)
/// — and Redis has yet to unblock it (at the end of its event-loop turn, or the job's): a
/// `CLIENT UNBLOCK` of it now would answer it a second time, or replace what decided it (see
/// `dispatch::filter`). A job's own early `unblock-client` does not count: the job goes on,
/// and `CLIENT UNBLOCK` stays the way to free its client.
pub fn answer_pending(client_id: u64) -> bool {
    with_entries(|entries| {
        newest_is_released(
            entries
                .iter()
                .filter(|(_, e)| e.client_id == client_id)
                .map(|(&id, e)| (id, e.answer_decided())),
        )
    })
}

impl Entry {
    /// See [`answer_pending`].
    fn answer_decided(&self) -> bool {
        let job_cancelled = self
            .job
            .as_ref()
            .is_some_and(|cancel| cancel.load(Ordering::SeqCst));
        !self.unblocked_by_redis && (self.released || (self.deferred.is_some() && job_cancelled))
    }
}

/// Whether the newest of a client's handles (`(id, released by the host)`; ids grow) is
/// released. Only the newest counts: an older handle lingers until Redis frees it, after the
/// client may have been answered (by a `CLIENT UNBLOCK` while its job wound down) and blocked
/// again, and that new block must stay open to `CLIENT UNBLOCK`.
fn newest_is_released(handles: impl Iterator<Item = (u64, bool)>) -> bool {
    handles
        .max_by_key(|&(id, _)| id)
        .is_some_and(|(_, released)| released)
}

/// The end of a background job: unblocks its client with what was recorded while it worked,
/// or with the job's own payload.
fn finish_job(id: u64, payload: Payload) {
    let client = with_entries(|entries| {
        let entry = entries.get_mut(&id)?;
        entry.job = None;
        if entry.released {
            return None;
        }
        entry.released = true;
        Some((entry.client, entry.deferred.take().unwrap_or(payload)))
    });
    if let Some((client, payload)) = client {
        client.unblock(Privdata { id, payload });
    }
}

/// `unblock-client`, from a command of guest `guest` or its background job.
pub fn unblock(guest: &str, id: u64, private_data: Vec<u8>, from_job: bool) -> bool {
    let ours = with_entries(|entries| entries.get(&id).is_some_and(|e| e.guest.info.name == guest));
    let by = if from_job { By::Job } else { By::Other };
    ours && release(id, Payload::Data(private_data), by)
}

/// The timer of a client's timeout fired.
pub fn on_timer(id: u64) {
    release(id, Payload::Timeout, By::Other);
}

/// The end of a command that blocked its client but also replied or failed: the reply (or the
/// error) reaches the client through the block; a client blocked on keys, which cannot be
/// handed a reply, is unblocked with `RedisModule_AbortBlock` and answered here.
pub fn finish_blocking_command(ctx: Ctx, id: u64, payload: Payload) {
    let on_keys = with_entries(|entries| entries.get(&id).map(|e| e.on_keys));
    match on_keys {
        Some(false) => {
            release(id, payload, By::Other);
        }
        Some(true) if abort(id) => match payload {
            Payload::Reply(reply) => reply.send(ctx),
            Payload::Error(message) => ctx.reply_error(&message),
            Payload::Data(_) | Payload::Timeout | Payload::Nothing | Payload::Answered => {
                ctx.reply_error("ERR the command blocked its client on keys and gave up");
            }
        },
        Some(true) | None => {}
    }
}

/// `abort-block`, from the command that blocked the client, which then answers it itself.
pub fn abort(id: u64) -> bool {
    let target = with_entries(|entries| {
        let entry = entries.get_mut(&id)?;
        // A job still uses the client's context: only its end may release the handle.
        if entry.released || entry.job.is_some() || entry.deferred.is_some() {
            return None;
        }
        entry.released = true;
        entry.aborting = entry.on_keys;
        Some((entry.client, entry.on_keys))
    });
    match target {
        // Redis calls no callback of a client blocked on keys it aborts (its private data, set
        // when it blocked, still reaches `on_free`).
        Some((client, true)) => {
            client.abort();
            true
        }
        // Unblocked rather than aborted, so that its private data reaches `on_free` (which
        // stops the timer and forgets the entry only once Redis has unblocked the client,
        // keeping `answer_pending` true until then).
        Some((client, false)) => {
            client.unblock(Privdata {
                id,
                payload: Payload::Answered,
            });
            true
        }
        None => false,
    }
}

/// `run-in-background`: starts a job running `command` of `guest` with `args` for client `id`.
pub fn run_in_background(ctx: Ctx, guest: &str, id: u64, args: Vec<Vec<u8>>) -> Result<(), String> {
    let limit = crate::config::get_usize(&crate::config::MAX_BACKGROUND_JOBS);
    let cancel = Arc::new(AtomicBool::new(false));
    let (client, client_id, guest, command) = with_entries(|entries| {
        let entry = entries
            .get_mut(&id)
            .filter(|e| e.guest.info.name == guest)
            .ok_or("ERR no client blocked by this guest has this id")?;
        if entry.on_keys || entry.released {
            return Err("ERR this client cannot get a background job (blocked on keys, or no longer blocked)");
        }
        // The job would run as the default user Redis gives a deleted user's clients.
        if user_changed(ctx, entry) {
            return Err(USER_CHANGED);
        }
        if entry.job.is_some() {
            return Err("ERR a background job already works for this client");
        }
        if limit == 0 {
            return Err("ERR background jobs are turned off (wasm.max-background-jobs is 0)");
        }
        if JOBS.fetch_add(1, Ordering::SeqCst) >= limit {
            JOBS.fetch_sub(1, Ordering::SeqCst);
            return Err("ERR too many background jobs are running (wasm.max-background-jobs)");
        }
        entry.job = Some(cancel.clone());
        Ok((
            entry.client,
            entry.client_id,
            entry.guest.clone(),
            entry.command,
        ))
    })
    .map_err(str::to_owned)?;
    let user = ctx.client_user_name(client_id);
    // Made here, on the main thread: Redis reads the blocked client to set the context up.
    let Some(tsctx) = client.thread_safe_ctx() else {
        JOBS.fetch_sub(1, Ordering::SeqCst);
        detach_job(id);
        return Err("ERR Redis gave no thread-safe context for the background job".to_owned());
    };
    let spawned = std::thread::Builder::new()
        .name(format!("wasm-job-{}", guest.info.name))
        // As much as Redis's main thread has (Linux's default): a job's guest may call other
        // guests, each entitled to its own wasm stack (see `engine::NESTED_STACK_NEEDED`).
        .stack_size(JOB_STACK_SIZE)
        .spawn(move || {
            crate::ffi::lower_thread_priority();
            let payload = crate::ffi::catch("a background job", || {
                guest.run_background(tsctx, user, id, command, &args, &cancel)
            })
            .unwrap_or_else(|| Payload::Error(crate::ffi::INTERNAL_ERROR.to_owned()));
            JOBS.fetch_sub(1, Ordering::SeqCst);
            let payload = match payload {
                Payload::Nothing => Payload::Error(
                    "ERR the background job ended without a reply or unblock-client".to_owned(),
                ),
                other => other,
            };
            // Under Redis's lock, so that no command runs between marking the client answered
            // and unblocking it (see `answer_pending`).
            crate::ffi::with_redis_lock(|| finish_job(id, payload));
        });
    if spawned.is_err() {
        JOBS.fetch_sub(1, Ordering::SeqCst);
        detach_job(id);
        return Err("ERR cannot start a thread for the background job".to_owned());
    }
    Ok(())
}

/// A job that never started: the client is released as if it had none (a release recorded
/// meanwhile cannot exist: this runs on the main thread, within the command).
fn detach_job(id: u64) {
    with_entries(|entries| {
        if let Some(entry) = entries.get_mut(&id) {
            entry.job = None;
        }
    });
}

/// Releases every client blocked by `guest` (unloaded or replaced): each gets an error.
pub fn release_guest(guest: &Arc<Guest>) {
    let message = gone_message(guest);
    let clients: Vec<(u64, BlockedClient, Payload, bool)> = with_entries(|entries| {
        entries
            .iter_mut()
            .filter(|(_, e)| Arc::ptr_eq(&e.guest, guest))
            .filter_map(|(id, e)| {
                let payload = Payload::Error(message.clone());
                match take_for_release(e, payload, By::Other) {
                    Released::Now(client, payload) => Some((*id, client, payload, e.on_keys)),
                    Released::Deferred | Released::Already => None,
                }
            })
            .collect()
    });
    for (id, client, payload, on_keys) in clients {
        if on_keys {
            // Redis answers it through the timeout callback, which finds the guest gone.
            client.unblock_keys();
        } else {
            client.unblock(Privdata { id, payload });
        }
    }
}

const USER_CHANGED: &str =
    "ERR the client's ACL user was deleted or changed while it was blocked (ACL DELUSER, ACL LOAD)";

/// Whether the blocked client's ACL user is no longer the one it blocked as: Redis gives the
/// clients of a deleted user the default user until it closes them, and a callback would run
/// with the default user's permissions. Its callbacks answer an error instead.
fn user_changed(ctx: Ctx, entry: &Entry) -> bool {
    ctx.client_user_name(entry.client_id) != entry.user
}

/// The route to run a blocked client's callback: its guest must still be the loaded one.
fn current_route(guest: &Arc<Guest>, command: u32) -> Option<Route> {
    let spec = guest.commands.get(command as usize)?;
    let route = registry::route(spec.name.as_bytes())?;
    (Arc::ptr_eq(&route.guest, guest) && route.index == command).then_some(route)
}

fn gone_message(guest: &Guest) -> String {
    format!(
        "ERR guest '{}' was unloaded or replaced while this client was blocked",
        guest.info.name
    )
}

/// The reply callback. Returns whether the client was served (false keeps a client blocked on
/// keys waiting).
pub fn on_reply(ctx: Ctx, args: Args<'_>) -> bool {
    let Some(privdata) = ctx.guest_privdata() else {
        ctx.reply_error("ERR the blocked client has no private data");
        return true;
    };
    let id = privdata.id;
    let served = serve(ctx, args, id, &mut privdata.payload);
    if served {
        // Answered: Redis unblocks it at the end of this event-loop turn (`answer_pending`).
        with_entries(|entries| {
            if let Some(entry) = entries.get_mut(&id) {
                entry.released = true;
            }
        });
    }
    served
}

/// [`on_reply`] for handle `id` with its payload.
fn serve(ctx: Ctx, args: Args<'_>, id: u64, payload: &mut Payload) -> bool {
    let found = with_entries(|entries| {
        entries
            .get(&id)
            .map(|e| (e.guest.clone(), e.command, e.on_keys, user_changed(ctx, e)))
    });
    let Some((guest, command, on_keys, user_changed)) = found else {
        ctx.reply_error("ERR the blocked client is unknown");
        return true;
    };
    let data = match payload {
        Payload::Answered => return true,
        Payload::Reply(reply) => {
            reply.send(ctx);
            return true;
        }
        Payload::Error(message) => {
            ctx.reply_error(message);
            return true;
        }
        Payload::Nothing => {
            ctx.reply_error("ERR the blocked client was released without a reply");
            return true;
        }
        // (A reply or error decided before, as a job's, was made under the client's user.)
        _ if user_changed => {
            ctx.reply_error(USER_CHANGED);
            return true;
        }
        Payload::Timeout => {
            timeout_phase(ctx, args, id, &guest, command, None);
            return true;
        }
        // Kept for a client blocked on keys (it may be served on a later ready key).
        Payload::Data(data) if on_keys => data.clone(),
        Payload::Data(data) => std::mem::take(data),
    };
    let Some(route) = current_route(&guest, command) else {
        ctx.reply_error(&gone_message(&guest));
        return true;
    };
    let phase = CallPhase::Reply {
        id,
        private_data: Some(data),
        ready_key: ctx.blocked_ready_key(),
    };
    let replied = guest.invoke_callback(ctx, &route, args.skip(2), phase);
    if !replied && !on_keys {
        ctx.reply_error(&format!(
            "ERR guest '{}' command '{}' did not reply to its unblocked client",
            guest.info.name, route.spec.name
        ));
    }
    replied || !on_keys
}

/// The timeout callback (also how Redis answers a client blocked on keys that is unblocked).
pub fn on_timeout(ctx: Ctx, args: Args<'_>) {
    let client = ctx.blocked_client();
    let found = with_entries(|entries| {
        entries
            .iter_mut()
            .find(|(_, e)| Some(e.client) == client)
            .map(|(id, e)| {
                // Unless the host released it: then this runs within the host's own unblocking
                // of a client blocked on keys, and Redis unblocks it only at the end of the
                // event-loop turn.
                if !e.released {
                    e.unblocked_by_redis = true;
                }
                let changed = user_changed(ctx, e);
                (
                    *id,
                    e.guest.clone(),
                    e.command,
                    e.on_keys,
                    e.aborting,
                    changed,
                )
            })
    });
    let Some((id, guest, command, on_keys, aborting, user_changed)) = found else {
        ctx.reply_error("ERR the blocked client timed out");
        return;
    };
    if aborting {
        return; // AbortBlock: the command that blocked replies itself
    }
    let private_data = match ctx.guest_privdata().map(|p| &p.payload) {
        Some(Payload::Data(data)) if on_keys => Some(data.clone()),
        _ => None,
    };
    // Caught on its own, so that the handle is released even if it fails.
    crate::ffi::catch("a blocked client's timeout", || {
        if user_changed {
            ctx.reply_error(USER_CHANGED);
        } else {
            timeout_phase(ctx, args, id, &guest, command, private_data);
        }
    });
    if !on_keys {
        // (`CLIENT UNBLOCK ... TIMEOUT`: other timeouts are timers.) Redis frees a timed-out
        // handle only once the module unblocks it.
        release(id, Payload::Nothing, By::Other);
    }
}

/// Runs the guest's timeout phase for a blocked client, which must reply.
fn timeout_phase(
    ctx: Ctx,
    args: Args<'_>,
    id: u64,
    guest: &Arc<Guest>,
    command: u32,
    private_data: Option<Vec<u8>>,
) {
    match current_route(guest, command) {
        Some(route) => {
            let phase = CallPhase::Timeout { id, private_data };
            if !guest.invoke_callback(ctx, &route, args.skip(2), phase) {
                ctx.reply_error(&format!(
                    "ERR guest '{}' command '{}' timed out without a reply",
                    guest.info.name, route.spec.name
                ));
            }
        }
        None => ctx.reply_error(&gone_message(guest)),
    }
}

/// The disconnect callback: releases the handle (and cancels any background job). Redis calls
/// it when it unblocks the client itself without the module's answer: a disconnection, `CLIENT
/// UNBLOCK ... ERROR`, a server turning replica.
pub fn on_disconnect(client: BlockedClient) {
    let id = with_entries(|entries| {
        entries
            .iter_mut()
            .find(|(_, e)| e.client == client)
            .map(|(id, e)| {
                e.unblocked_by_redis = true;
                *id
            })
    });
    if let Some(id) = id {
        release(id, Payload::Nothing, By::Other);
    }
}

/// Redis freed a handle's private data: the handle is gone, and so is its timer.
pub fn on_free(ctx: Option<Ctx>, privdata: Privdata) {
    let entry = with_entries(|entries| entries.remove(&privdata.id));
    if let (Some(ctx), Some(timer)) = (ctx, entry.and_then(|e| e.timer)) {
        ctx.stop_timer(timer);
    }
}

/// Clients blocked by guests now (for INFO).
pub fn blocked_count() -> usize {
    with_entries(|entries| entries.values().filter(|e| !e.released).count())
}

/// Background jobs running now (for INFO).
pub fn job_count() -> usize {
    JOBS.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::newest_is_released;

    #[test]
    fn only_the_newest_handle_of_a_client_decides_whether_its_answer_is_pending() {
        assert!(!newest_is_released([].into_iter()));
        assert!(newest_is_released([(3, true)].into_iter()));
        // An old handle released by its job's end, and the client blocked again since.
        assert!(!newest_is_released([(3, true), (7, false)].into_iter()));
        assert!(!newest_is_released([(7, false), (3, true)].into_iter()));
        assert!(newest_is_released([(3, false), (7, true)].into_iter()));
    }
}
