//! `redis:module/context`: the selected database, context flags, time, keyspace events.

use super::bindings::redis::module::context::{ContextFlags, Host, NotifyClass};
use crate::ffi::{self, ctx_flags};
use crate::state::GuestState;

impl Host for GuestState {
    fn get_selected_db(&mut self) -> wasmtime::Result<u32> {
        Ok(self
            .ctx()
            .map_or(0, |ctx| u32::try_from(ctx.selected_db()).unwrap_or(0)))
    }

    fn select_db(&mut self, db: u32) -> wasmtime::Result<Result<(), String>> {
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(format!("ERR select-db is {why}"))),
        };
        let Ok(id) = i32::try_from(db) else {
            return Ok(Err("ERR DB index is out of range".to_owned()));
        };
        // A background job's context is used from its thread: under Redis's lock.
        let _lock = scope.background.as_ref().map(|job| job.ctx.lock());
        // Redis keeps the slot-to-key index of database 0 only: a key written in another one
        // crashes a cluster node (Redis refuses SELECT there).
        if id != 0 && scope.ctx.flags() & ctx_flags::CLUSTER != 0 {
            return Ok(Err("ERR SELECT is not allowed in cluster mode".to_owned()));
        }
        // As `SELECT`, which ACL rules may deny (`-select` keeps a user in its database; Lua
        // checks its scripts' SELECTs alike).
        if !scope
            .acl
            .allows_command(scope.ctx, "select", &[id.to_string().into_bytes()])
        {
            scope.effects.refused_here = true;
            return Ok(Err(crate::ffi::AclDenial::Command.message("select")));
        }
        // Writes recorded so far belong to the current database.
        scope.effects.flush(scope.ctx);
        Ok(if scope.ctx.select_db(id) {
            Ok(())
        } else {
            Err("ERR DB index is out of range".to_owned())
        })
    }

    fn get_context_flags(&mut self) -> wasmtime::Result<ContextFlags> {
        let raw = self.any_ctx().map_or(0, |ctx| ctx.flags());
        let mut flags = ContextFlags::empty();
        for (bit, flag) in [
            (ctx_flags::MULTI, ContextFlags::MULTI),
            (ctx_flags::LUA, ContextFlags::LUA),
            (ctx_flags::SLAVE, ContextFlags::REPLICA),
            (ctx_flags::READONLY, ContextFlags::READONLY),
            (ctx_flags::REPLICATED, ContextFlags::REPLICATED),
            (ctx_flags::LOADING, ContextFlags::LOADING),
            (ctx_flags::OOM, ContextFlags::OUT_OF_MEMORY),
            (ctx_flags::CLUSTER, ContextFlags::CLUSTER),
            (ctx_flags::RESP3, ContextFlags::RESP3),
        ] {
            if raw & bit != 0 {
                flags |= flag;
            }
        }
        Ok(flags)
    }

    fn milliseconds(&mut self) -> wasmtime::Result<i64> {
        Ok(ffi::milliseconds())
    }

    fn notify_keyspace_event(
        &mut self,
        class: NotifyClass,
        event: String,
        key: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let scope = match self.command() {
            Ok(scope) if !scope.in_background() => scope,
            Ok(_) => {
                return Ok(Err(
                    "ERR notify-keyspace-event is not available in a background job".to_owned(),
                ));
            }
            Err(why) => return Ok(Err(format!("ERR notify-keyspace-event is {why}"))),
        };
        let mut bits = 0;
        for (flag, bit) in [
            (NotifyClass::GENERIC, ffi::notify::GENERIC),
            (NotifyClass::STRING, ffi::notify::STRING),
            (NotifyClass::LIST, ffi::notify::LIST),
            (NotifyClass::SET, ffi::notify::SET),
            (NotifyClass::HASH, ffi::notify::HASH),
            (NotifyClass::ZSET, ffi::notify::ZSET),
            (NotifyClass::EXPIRED, ffi::notify::EXPIRED),
            (NotifyClass::EVICTED, ffi::notify::EVICTED),
            (NotifyClass::STREAM, ffi::notify::STREAM),
            (NotifyClass::KEY_MISS, ffi::notify::KEY_MISS),
            (NotifyClass::MODULE, ffi::notify::MODULE),
            (NotifyClass::NEW, ffi::notify::NEW),
        ] {
            if class.contains(flag) {
                bits |= bit;
            }
        }
        if bits == 0 {
            return Ok(Err(
                "ERR notify-keyspace-event needs an event class".to_owned()
            ));
        }
        let Ok(event) = std::ffi::CString::new(event) else {
            return Ok(Err("ERR an event name cannot contain NUL".to_owned()));
        };
        // Unlike a C module, which an administrator loaded, a guest is loaded by whoever may
        // load guests: it may only speak of keys its caller may use (subscribers act on events,
        // `del` or `expired` of another user's keys among them).
        if !scope.acl.allows_key(
            scope.ctx,
            &scope.command,
            &key,
            crate::ffi::KeyAccess::Exists,
        ) {
            scope.effects.refused_here = true;
            return Ok(Err(crate::scope::no_key_permission(&key)));
        }
        // Redis runs other modules' keyspace subscribers inside the call, and they may delete
        // or replace keys: as around a call, every key is closed first (and reopened on its
        // next use), and recorded writes go out before whatever the subscribers replicate.
        scope.suspend_keys();
        Ok(if scope.ctx.notify_keyspace_event(bits, &event, &key) {
            Ok(())
        } else {
            Err("ERR notify-keyspace-event has no client to publish for here".to_owned())
        })
    }
}
