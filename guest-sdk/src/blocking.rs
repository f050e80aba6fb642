//! Blocking commands (`RedisModule_BlockClient` and friends) and background jobs.
//!
//! A command blocks its client and returns [`RedisValue::NoReply`](crate::RedisValue::NoReply);
//! Redis keeps serving other clients. Later the host calls the same command function again, and
//! [`Context::blocked_phase`] says why: [`BlockedPhase::Reply`] when the client was unblocked
//! (or a key it waits on is ready), [`BlockedPhase::Timeout`] when its timeout passed — as
//! `RedisModule_IsBlockedReplyRequest` / `IsBlockedTimeoutRequest` do in C. Private data is bytes
//! the host keeps and frees.
//!
//! ```no_run
//! use redis_wasm_sdk::{BlockedPhase, Context, RedisResult, RedisString, RedisValue};
//!
//! /// WAIT.FOR seconds: answers "done" when another client runs WAIT.WAKE <id>.
//! fn wait_for(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
//!     match ctx.blocked_phase() {
//!         BlockedPhase::Reply => Ok(RedisValue::SimpleStringStatic("done")),
//!         BlockedPhase::Timeout => Ok(RedisValue::Null),
//!         _ => {
//!             let seconds = args[1].parse_integer()?;
//!             let client = ctx.block_client(seconds * 1000)?;
//!             ctx.log_notice(&format!("blocked client {}", client.id()));
//!             Ok(RedisValue::NoReply)
//!         }
//!     }
//! }
//! ```

use crate::context::Context;
use crate::string::RedisString;
use crate::value::RedisError;
use crate::wit::redis::module::blocking as wit;

pub use wit::CallPhase as BlockedPhase;

/// A client blocked by a command (`RedisModuleBlockedClient`), known by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockedClient(u64);

impl BlockedClient {
    /// The id, to keep (for example in a key or a reply) and unblock the client later.
    pub fn id(self) -> u64 {
        self.0
    }

    /// The blocked client with this id.
    pub fn from_id(id: u64) -> Self {
        BlockedClient(id)
    }
}

impl Context {
    /// Why this command runs now (see the module documentation).
    pub fn blocked_phase(&self) -> BlockedPhase {
        wit::phase()
    }

    /// `RedisModule_IsBlockedReplyRequest`.
    pub fn is_blocked_reply_request(&self) -> bool {
        self.blocked_phase() == BlockedPhase::Reply
    }

    /// `RedisModule_IsBlockedTimeoutRequest`.
    pub fn is_blocked_timeout_request(&self) -> bool {
        self.blocked_phase() == BlockedPhase::Timeout
    }

    /// Whether this runs as a background job (see [`run_in_background`](Self::run_in_background)).
    pub fn in_background_job(&self) -> bool {
        self.blocked_phase() == BlockedPhase::Background
    }

    /// `RedisModule_BlockClient`: blocks this command's client; return
    /// [`RedisValue::NoReply`](crate::RedisValue::NoReply) after it. `timeout_ms` 0 waits
    /// forever. Fails where a client cannot block (MULTI, scripts, calls from other commands,
    /// commands replayed from the master or the AOF): reply instead then.
    pub fn block_client(&self, timeout_ms: i64) -> Result<BlockedClient, RedisError> {
        wit::block_client(timeout_ms)
            .map(BlockedClient)
            .map_err(RedisError::String)
    }

    /// `RedisModule_BlockClientOnKeys`: blocks until one of `keys` is ready (a list, sorted set
    /// or stream write, or [`signal_key_as_ready`](Self::signal_key_as_ready)); the command then
    /// runs in phase [`BlockedPhase::Reply`] with [`blocked_client_ready_key`] set, once per
    /// ready key, until it replies.
    ///
    /// [`blocked_client_ready_key`]: Self::blocked_client_ready_key
    pub fn block_client_on_keys<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        timeout_ms: i64,
        private_data: &[u8],
    ) -> Result<BlockedClient, RedisError> {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_ref()).collect();
        wit::block_client_on_keys(&keys, timeout_ms, private_data)
            .map(BlockedClient)
            .map_err(RedisError::String)
    }

    /// `RedisModule_UnblockClient`: the blocked command runs in phase [`BlockedPhase::Reply`]
    /// with `private_data`. False if the client is no longer blocked.
    pub fn unblock_client(&self, client: BlockedClient, private_data: &[u8]) -> bool {
        wit::unblock_client(client.0, private_data)
    }

    /// `RedisModule_AbortBlock`, from the command that blocked the client: it then replies as
    /// usual.
    pub fn abort_block(&self, client: BlockedClient) -> bool {
        wit::abort_block(client.0)
    }

    /// Runs this command again with `args` (as a command function gets them: `args[0]` is the
    /// command name) on a background thread, in a separate instance of the guest, for `client`
    /// (blocked with [`block_client`](Self::block_client)). The job sees
    /// [`BlockedPhase::Background`]; its reply goes to the client, or it can
    /// [`unblock_client`](Self::unblock_client) with private data. In a job, `call` runs
    /// read-only commands under Redis's lock; keys and replication are refused.
    pub fn run_in_background(
        &self,
        client: BlockedClient,
        args: &[RedisString],
    ) -> Result<(), RedisError> {
        let args: Vec<&[u8]> = args.iter().skip(1).map(|a| a.as_slice()).collect();
        wit::run_in_background(client.0, &args).map_err(RedisError::String)
    }

    /// `RedisModule_GetBlockedClientPrivateData`.
    pub fn blocked_client_private_data(&self) -> Option<Vec<u8>> {
        wit::private_data()
    }

    /// `RedisModule_GetBlockedClientReadyKey`.
    pub fn blocked_client_ready_key(&self) -> Option<RedisString> {
        wit::ready_key().map(RedisString::from)
    }

    /// `RedisModule_GetBlockedClientHandle`: the blocked client being served.
    pub fn blocked_client(&self) -> Option<BlockedClient> {
        wit::blocked_client_id().map(BlockedClient)
    }

    /// `RedisModule_SignalKeyAsReady`.
    pub fn signal_key_as_ready(&self, key: impl AsRef<[u8]>) {
        wit::signal_key_as_ready(key.as_ref());
    }

    /// Sleeps, in a background job only (on the main thread it returns at once), at most 60 s
    /// per call; a cancelled job stops sleeping within 10 ms.
    pub fn sleep_ms(&self, milliseconds: u32) {
        wit::sleep(milliseconds);
    }
}
