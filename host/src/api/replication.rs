//! `redis:module/replication`: explicit and verbatim replication (see `Effects` in `scope.rs`).

use super::bindings::redis::module::replication::{Host, ReplicateFlags};
use crate::ffi::CommandLine;
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
        if scope.writes_paused {
            return Ok(Err(crate::ffi::WRITES_PAUSED.to_owned()));
        }
        if !scope.may_write {
            return Ok(Err(
                "ERR replicate needs a command flagged 'write'".to_owned()
            ));
        }
        let lower = command.to_ascii_lowercase();
        // A guest command (named through its dispatcher) would run on replicas without the
        // master having run it under its limits: only its effects may be replicated.
        if crate::flags::Variant::is_dispatcher(lower.as_bytes()) {
            return Ok(Err(format!(
                "ERR cannot replicate '{command}': replicas would run that guest command, which \
                 this server did not run under its limits; replicate what it does instead"
            )));
        }
        // Redis 7.0 gives module commands no ACL categories, so the check of what replicas may
        // replay below lets the host's own through: replicas would load, unload or restore
        // guests, or register data types, that the master never did.
        if crate::ffi::is_host_command(&lower) {
            return Ok(Err(format!(
                "ERR cannot replicate '{command}': replicas would run a command of the host \
                 itself (loading, unloading or restoring guests, storing data type values) that \
                 this server did not"
            )));
        }
        match crate::ffi::command_line(&lower, &args) {
            CommandLine::Valid => {}
            CommandLine::Unknown => {
                return Ok(Err(format!(
                    "ERR cannot replicate unknown command '{command}'"
                )));
            }
            CommandLine::WrongArity => {
                return Ok(Err(format!(
                    "ERR cannot replicate '{command}': wrong number of arguments for it"
                )));
            }
        }
        // Replicas replay what their master sends as it comes: an administrative, transaction,
        // connection, scripting, blocking or pub/sub command would stop, break or desynchronise
        // them (`SHUTDOWN`, `CLUSTER RESET`, `MULTI`, `SELECT`, `BLPOP`, ...).
        if !crate::ffi::replicable(&lower, &args) {
            return Ok(Err(format!(
                "ERR cannot replicate '{command}': replicas only replay writes, not \
                 administrative, transaction, connection, scripting, blocking or pub/sub \
                 commands (nor MIGRATE); replicate what it does instead"
            )));
        }
        // Replicas write what the master sends whatever the slot: only keys this node serves,
        // as for the keys a guest opens.
        if scope.acl.in_cluster()
            && let Some(key) = crate::ffi::command_keys(&lower, &args)
                .into_iter()
                .find(|key| !scope.acl.serves_key(key))
        {
            scope.effects.refused_here = true;
            return Ok(Err(format!(
                "{} (replicas would write what a guest replicates)",
                crate::scope::not_served_here(&key)
            )));
        }
        if !scope.acl.allows_command(scope.ctx, &lower, &args) {
            scope.effects.refused_here = true;
            return Ok(Err(format!(
                "{} (replicas would run what a guest replicates without checking)",
                scope.acl.denial(scope.ctx, &lower, &args).message(&command)
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
        scope.effects.record_explicit(db, command, &args, modifiers);
        Ok(Ok(()))
    }

    fn replicate_verbatim(&mut self) -> wasmtime::Result<Result<(), String>> {
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR replicate-verbatim is {why}"))),
        };
        if scope.writes_paused {
            return Ok(Err(crate::ffi::WRITES_PAUSED.to_owned()));
        }
        if !scope.may_write {
            return Ok(Err(
                "ERR replicate-verbatim needs a command flagged 'write'".to_owned(),
            ));
        }
        if !matches!(scope.phase, crate::scope::CallPhase::Command) {
            return Ok(Err(
                "ERR replicate-verbatim cannot be used in a blocked client's callback (replicas \
                 would replay the command itself, not the callback)"
                    .to_owned(),
            ));
        }
        // Something already went out as effects (a call's, or writes sent ahead of a call,
        // select-db, a yield or a lookup that may expire a key, which the guest cannot
        // foresee): the command goes on replicating so. Failing here would answer an error for a command whose writes are
        // done and replicated (a client retrying would apply them twice).
        if !scope.effects.propagated {
            scope.effects.verbatim = true;
        }
        Ok(Ok(()))
    }
}
