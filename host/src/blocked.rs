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
//! A background job runs the command in a separate instance of the guest on its own thread
//! (`Guest::run_background`), with a thread-safe context whose lock is taken for each call;
//! when it ends, its reply is handed to the client through `RedisModule_UnblockClient`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ffi::{Args, BlockedClient, Ctx, LogLevel, log_raw};
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
    /// Nothing to answer: the handle is only being released (after a timeout or disconnection).
    Nothing,
}

/// Redis's private data of a guest blocked client.
pub struct Privdata {
    pub id: u64,
    pub payload: Payload,
}

struct Entry {
    client: BlockedClient,
    guest: Arc<Guest>,
    command: u32,
    on_keys: bool,
    /// `RedisModule_UnblockClient` (or `AbortBlock`) was called: never touch the handle again.
    released: bool,
    /// `AbortBlock` is running: its timeout callback must do nothing.
    aborting: bool,
    /// The cancel flag of the background job working for this client.
    job: Option<Arc<AtomicBool>>,
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

fn check_timeout(timeout_ms: i64) -> Result<(), String> {
    if timeout_ms < 0 {
        return Err("ERR the timeout cannot be negative".to_owned());
    }
    Ok(())
}

fn register(client: BlockedClient, guest: Arc<Guest>, command: u32, on_keys: bool, id: u64) {
    with_entries(|entries| {
        entries.insert(
            id,
            Entry {
                client,
                guest,
                command,
                on_keys,
                released: false,
                aborting: false,
                job: None,
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
        .block_guest_client(timeout_ms)
        .ok_or("ERR Redis refused to block the client")?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    register(client, guest, command, false, id);
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
    register(client, guest, command, true, id);
    Ok(id)
}

/// Marks the client released (if it was not) and returns its handle to unblock, stopping any
/// background job working for it.
fn take_for_release(entry: &mut Entry) -> Option<BlockedClient> {
    if entry.released {
        return None;
    }
    entry.released = true;
    if let Some(job) = entry.job.take() {
        job.store(true, Ordering::SeqCst);
    }
    Some(entry.client)
}

/// Releases a client blocked with `block-client` with this payload, unless already released.
/// Returns whether this call released it.
fn release(id: u64, payload: Payload) -> bool {
    let client = with_entries(|entries| {
        entries
            .get_mut(&id)
            .filter(|e| !e.on_keys)
            .and_then(take_for_release)
    });
    match client {
        Some(client) => {
            client.unblock(Privdata { id, payload });
            true
        }
        None => false,
    }
}

/// `unblock-client`, from a command of guest `guest` or its background job.
pub fn unblock(guest: &str, id: u64, private_data: Vec<u8>) -> bool {
    let ours = with_entries(|entries| entries.get(&id).is_some_and(|e| e.guest.info.name == guest));
    ours && release(id, Payload::Data(private_data))
}

/// The end of a command that blocked its client but also replied or failed: the reply (or the
/// error) reaches the client through the block.
pub fn finish_blocking_command(id: u64, payload: Payload) {
    let on_keys = with_entries(|entries| entries.get(&id).map(|e| e.on_keys));
    match (on_keys, payload) {
        (Some(false), payload) => {
            release(id, payload);
        }
        (Some(true), _) => {
            // Cannot hand a reply to a client blocked on keys; its keys or timeout answer it.
            log_raw(
                LogLevel::Warning,
                "<wasm> a command that blocked its client on keys also replied; the reply is dropped",
            );
        }
        (None, _) => {}
    }
}

/// `abort-block`, from the command that blocked the client.
pub fn abort(id: u64) -> bool {
    let target = with_entries(|entries| {
        let entry = entries.get_mut(&id)?;
        if entry.released {
            return None;
        }
        entry.released = true;
        entry.aborting = true;
        let target = (entry.client, entry.on_keys);
        if !entry.on_keys {
            // AbortBlock gives no private data, so Redis will not call `on_free`.
            entries.remove(&id);
        }
        Some(target)
    });
    match target {
        Some((client, _)) => {
            client.abort();
            true
        }
        None => false,
    }
}

/// `run-in-background`: starts a job running `command` of `guest` with `args` for client `id`.
pub fn run_in_background(ctx: Ctx, guest: &str, id: u64, args: Vec<Vec<u8>>) -> Result<(), String> {
    let limit = crate::config::get_usize(&crate::config::MAX_BACKGROUND_JOBS);
    let cancel = Arc::new(AtomicBool::new(false));
    let (client, guest, command) = with_entries(|entries| {
        let entry = entries
            .get_mut(&id)
            .filter(|e| e.guest.info.name == guest)
            .ok_or("ERR no client blocked by this guest has this id")?;
        if entry.on_keys || entry.released {
            return Err("ERR this client cannot get a background job (blocked on keys, or no longer blocked)");
        }
        if entry.job.is_some() {
            return Err("ERR a background job already works for this client");
        }
        if JOBS.fetch_add(1, Ordering::SeqCst) >= limit {
            JOBS.fetch_sub(1, Ordering::SeqCst);
            return Err("ERR too many background jobs are running (wasm.max-background-jobs)");
        }
        entry.job = Some(cancel.clone());
        Ok((entry.client, entry.guest.clone(), entry.command))
    })
    .map_err(str::to_owned)?;
    let user = ctx.current_user_name();
    let spawned = std::thread::Builder::new()
        .name(format!("wasm-job-{}", guest.info.name))
        .spawn(move || {
            let payload = crate::ffi::catch("a background job", || {
                match client.thread_safe_ctx() {
                    Some(tsctx) => guest.run_background(tsctx, user, id, command, &args, &cancel),
                    None => Payload::Error("ERR no thread-safe context".to_owned()),
                }
            })
            .unwrap_or_else(|| {
                Payload::Error("ERR internal error in redis-wasm (see the server log)".to_owned())
            });
            JOBS.fetch_sub(1, Ordering::SeqCst);
            // The job's end releases the client, unless something else did first.
            let payload = match payload {
                Payload::Nothing => Payload::Error(
                    "ERR the background job ended without a reply or unblock-client".to_owned(),
                ),
                other => other,
            };
            release(id, payload);
        });
    if spawned.is_err() {
        JOBS.fetch_sub(1, Ordering::SeqCst);
        with_entries(|entries| {
            if let Some(entry) = entries.get_mut(&id) {
                entry.job = None;
            }
        });
        return Err("ERR cannot start a thread for the background job".to_owned());
    }
    Ok(())
}

/// Releases every client blocked by `guest` (unloaded or replaced): each gets an error.
pub fn release_guest(guest: &Arc<Guest>) {
    let clients: Vec<(u64, BlockedClient, bool)> = with_entries(|entries| {
        entries
            .iter_mut()
            .filter(|(_, e)| Arc::ptr_eq(&e.guest, guest))
            .filter_map(|(id, e)| Some((*id, take_for_release(e)?, e.on_keys)))
            .collect()
    });
    let message = format!(
        "ERR guest '{}' was unloaded or replaced while this client was blocked",
        guest.info.name
    );
    for (id, client, on_keys) in clients {
        if on_keys {
            // Redis answers it through the timeout callback, which finds the guest gone.
            client.unblock_keys();
        } else {
            client.unblock(Privdata {
                id,
                payload: Payload::Error(message.clone()),
            });
        }
    }
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
    let found = with_entries(|entries| {
        entries
            .get(&id)
            .map(|e| (e.guest.clone(), e.command, e.on_keys))
    });
    let Some((guest, command, on_keys)) = found else {
        ctx.reply_error("ERR the blocked client is unknown");
        return true;
    };
    let data = match &mut privdata.payload {
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
            .iter()
            .find(|(_, e)| Some(e.client) == client)
            .map(|(id, e)| (*id, e.guest.clone(), e.command, e.on_keys, e.aborting))
    });
    let Some((id, guest, command, on_keys, aborting)) = found else {
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
    match current_route(&guest, command) {
        Some(route) => {
            let phase = CallPhase::Timeout { id, private_data };
            if !guest.invoke_callback(ctx, &route, args.skip(2), phase) {
                ctx.reply_error(&format!(
                    "ERR guest '{}' command '{}' timed out without a reply",
                    guest.info.name, route.spec.name
                ));
            }
        }
        None => ctx.reply_error(&gone_message(&guest)),
    }
    if !on_keys {
        // Redis frees a timed-out handle only once the module unblocks it.
        release(id, Payload::Nothing);
    }
}

/// The disconnect callback: releases the handle (and cancels any background job).
pub fn on_disconnect(client: BlockedClient) {
    let id = with_entries(|entries| {
        entries
            .iter()
            .find(|(_, e)| e.client == client)
            .map(|(id, _)| *id)
    });
    if let Some(id) = id {
        release(id, Payload::Nothing);
    }
}

/// Redis freed a handle's private data: the handle is gone.
pub fn on_free(privdata: Privdata) {
    with_entries(|entries| entries.remove(&privdata.id));
}

/// Clients blocked by guests now (for INFO).
pub fn blocked_count() -> usize {
    with_entries(|entries| entries.values().filter(|e| !e.released).count())
}

/// Background jobs running now (for INFO).
pub fn job_count() -> usize {
    JOBS.load(Ordering::SeqCst)
}
