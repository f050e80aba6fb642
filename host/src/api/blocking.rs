//! `redis:module/blocking`: blocking commands and background jobs (see `blocked.rs`).

use super::bindings::redis::module::blocking::{CallPhase as WitPhase, Host};
use crate::ffi::KeyAccess;
use crate::scope::CallPhase;
use crate::state::GuestState;

type R<T> = wasmtime::Result<T>;

/// Longest a background job may sleep in one call.
const MAX_SLEEP_MS: u32 = 60_000;

impl Host for GuestState {
    fn phase(&mut self) -> R<WitPhase> {
        Ok(match self.command().map(|s| &s.phase) {
            Ok(CallPhase::Reply { .. }) => WitPhase::Reply,
            Ok(CallPhase::Timeout { .. }) => WitPhase::Timeout,
            Ok(CallPhase::Background { .. }) => WitPhase::Background,
            _ => WitPhase::Command,
        })
    }

    fn block_client(&mut self, timeout_ms: i64) -> R<Result<u64, String>> {
        let guest = self.label.clone();
        let already_replied = !self.reply.is_empty();
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR block-client is {why}"))),
        };
        if let Some(why) = refuse_block(scope, already_replied) {
            return Ok(Err(why));
        }
        let blocked = crate::blocked::block(scope.ctx, &guest, scope.index, timeout_ms);
        if let Ok(id) = blocked {
            scope.blocked = Some(id);
        }
        Ok(blocked)
    }

    fn block_client_on_keys(
        &mut self,
        keys: Vec<Vec<u8>>,
        timeout_ms: i64,
        private_data: Vec<u8>,
    ) -> R<Result<u64, String>> {
        let guest = self.label.clone();
        let already_replied = !self.reply.is_empty();
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR block-client-on-keys is {why}"))),
        };
        if let Some(why) = refuse_block(scope, already_replied) {
            return Ok(Err(why));
        }
        // Being woken tells that a key changed: as for reading it, the user must have access to
        // it (and in cluster mode, this node must serve it), declared or not.
        for key in &keys {
            let refusal = if !scope
                .acl
                .allows_key(scope.ctx, &scope.command, key, KeyAccess::Read)
            {
                crate::scope::no_key_permission(key)
            } else if !scope.acl.serves_key(key) {
                crate::scope::not_served_here(key)
            } else {
                continue;
            };
            scope.effects.refused_here = true;
            return Ok(Err(refusal));
        }
        let blocked = crate::blocked::block_on_keys(
            scope.ctx,
            &guest,
            scope.index,
            &keys,
            timeout_ms,
            private_data,
        );
        if let Ok(id) = blocked {
            scope.blocked = Some(id);
        }
        Ok(blocked)
    }

    fn unblock_client(&mut self, id: u64, private_data: Vec<u8>) -> R<bool> {
        let guest = self.label.clone();
        let Ok(scope) = self.command() else {
            return Ok(false);
        };
        let from_job = matches!(scope.phase, CallPhase::Background { id: job } if job == id);
        Ok(crate::blocked::unblock(&guest, id, private_data, from_job))
    }

    fn abort_block(&mut self, id: u64) -> R<bool> {
        let Ok(scope) = self.command() else {
            return Ok(false);
        };
        if scope.blocked != Some(id) {
            return Ok(false);
        }
        let aborted = crate::blocked::abort(id);
        if aborted {
            scope.blocked = None;
        }
        Ok(aborted)
    }

    fn private_data(&mut self) -> R<Option<Vec<u8>>> {
        Ok(match self.command().map(|s| &s.phase) {
            Ok(CallPhase::Reply { private_data, .. } | CallPhase::Timeout { private_data, .. }) => {
                private_data.clone()
            }
            _ => None,
        })
    }

    fn ready_key(&mut self) -> R<Option<Vec<u8>>> {
        Ok(match self.command().map(|s| &s.phase) {
            Ok(CallPhase::Reply { ready_key, .. }) => ready_key.clone(),
            _ => None,
        })
    }

    fn blocked_client_id(&mut self) -> R<Option<u64>> {
        Ok(match self.command().map(|s| &s.phase) {
            Ok(
                CallPhase::Reply { id, .. }
                | CallPhase::Timeout { id, .. }
                | CallPhase::Background { id },
            ) => Some(*id),
            _ => None,
        })
    }

    fn signal_key_as_ready(&mut self, key: Vec<u8>) -> R<()> {
        if let Some(ctx) = self.ctx() {
            ctx.signal_key_as_ready(&key);
        }
        Ok(())
    }

    fn run_in_background(&mut self, id: u64, args: Vec<Vec<u8>>) -> R<Result<(), String>> {
        let guest = self.label.clone();
        let scope = match self.command() {
            Ok(scope) if scope.in_background() => {
                return Ok(Err("ERR a background job cannot start another".to_owned()));
            }
            // A callback answers its own client now (after `CLIENT UNBLOCK ... TIMEOUT`, before
            // the host has released it): a job would work for an answered client.
            Ok(scope)
                if matches!(scope.phase, CallPhase::Reply { id: answered, .. }
                    | CallPhase::Timeout { id: answered, .. } if answered == id) =>
            {
                return Ok(Err(
                    "ERR run-in-background cannot work for the client this callback answers"
                        .to_owned(),
                ));
            }
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR run-in-background is {why}"))),
        };
        Ok(crate::blocked::run_in_background(
            scope.ctx, &guest, id, args,
        ))
    }

    fn sleep(&mut self, milliseconds: u32) -> R<()> {
        let in_background = self.command().is_ok_and(|s| s.in_background());
        if in_background {
            // In slices, so that a cancelled job stops within one of them.
            let until = std::time::Instant::now()
                + std::time::Duration::from_millis(u64::from(milliseconds.min(MAX_SLEEP_MS)));
            let cancelled = || self.clock.as_ref().is_some_and(|c| c.cancelled());
            while !cancelled() {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
            }
        }
        Ok(())
    }
}

/// Why the running command may not block its client now, if it may not.
fn refuse_block(scope: &crate::scope::CommandScope, already_replied: bool) -> Option<String> {
    if scope.in_background() {
        return Some("ERR a background job cannot block a client".to_owned());
    }
    if scope.blocked.is_some() {
        return Some("ERR the command already blocked its client".to_owned());
    }
    if !matches!(scope.phase, CallPhase::Command) {
        return Some("ERR a blocked client's callback cannot block again".to_owned());
    }
    if already_replied {
        return Some("ERR the command already replied".to_owned());
    }
    None
}
