//! `redis:module/replication`: explicit and verbatim replication (see `Effects` in `scope.rs`).

use super::bindings::redis::module::replication::{Host, ReplicateFlags};
use crate::state::GuestState;

impl Host for GuestState {
    fn replicate(
        &mut self,
        command: String,
        args: Vec<Vec<u8>>,
        flags: ReplicateFlags,
    ) -> wasmtime::Result<Result<(), String>> {
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR replicate is {why}"))),
        };
        if !scope.may_write {
            return Ok(Err(
                "ERR replicate needs a command flagged 'write'".to_owned()
            ));
        }
        let lower = command.to_ascii_lowercase();
        if !scope.ctx.command_exists(&lower) {
            return Ok(Err(format!(
                "ERR cannot replicate unknown command '{command}'"
            )));
        }
        let modifiers = match (
            flags.contains(ReplicateFlags::NO_AOF),
            flags.contains(ReplicateFlags::NO_REPLICAS),
        ) {
            (true, true) => return Ok(Ok(())),
            (true, false) => "A",
            (false, true) => "R",
            (false, false) => "",
        };
        let db = scope.ctx.selected_db();
        scope.effects.record_explicit(db, command, args, modifiers);
        Ok(Ok(()))
    }

    fn replicate_verbatim(&mut self) -> wasmtime::Result<Result<(), String>> {
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR replicate-verbatim is {why}"))),
        };
        if !scope.may_write {
            return Ok(Err(
                "ERR replicate-verbatim needs a command flagged 'write'".to_owned(),
            ));
        }
        if scope.effects.calls_replicated {
            return Ok(Err(
                "ERR replicate-verbatim must come before any call that replicates effects"
                    .to_owned(),
            ));
        }
        scope.effects.verbatim = true;
        Ok(Ok(()))
    }
}
