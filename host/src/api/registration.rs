//! `redis:module/registration`: `RedisModule_Init` and `RedisModule_CreateCommand` for guests.
//!
//! Registration only records what the guest asks for; the loader commits it to the registry
//! after `init` returns, so a failing init leaves nothing behind.

use super::WitCommandSpec;
use super::bindings::redis::module::registration::Host;
use crate::registry::{API_VERSION, CommandSpec, ModuleInfo};
use crate::state::{DeclaredType, GuestState, Phase};

/// Most data types one guest may declare.
pub const MAX_DATA_TYPES_PER_GUEST: usize = 64;

impl Host for GuestState {
    fn init_module(
        &mut self,
        name: String,
        version: i32,
        api_version: i32,
    ) -> wasmtime::Result<Result<(), String>> {
        let Phase::Init(scope) = &mut self.phase else {
            return Ok(Err(
                "init-module can only be called from the guest's init".to_owned()
            ));
        };
        if scope.module.is_some() {
            return Ok(Err("init-module was already called".to_owned()));
        }
        if api_version != API_VERSION {
            return Ok(Err(format!(
                "guest '{name}' asks for module API version {api_version}, but this host implements version {API_VERSION}"
            )));
        }
        if let Err(why) = ModuleInfo::check_name(&name) {
            return Ok(Err(why));
        }
        self.label = name.as_str().into();
        scope.module = Some(ModuleInfo {
            name,
            version,
            api_version,
        });
        Ok(Ok(()))
    }

    fn create_command(&mut self, spec: WitCommandSpec) -> wasmtime::Result<Result<u32, String>> {
        let Phase::Init(scope) = &mut self.phase else {
            return Ok(Err(
                "create-command can only be called from the guest's init".to_owned(),
            ));
        };
        if scope.module.is_none() {
            return Ok(Err("call init-module before create-command".to_owned()));
        }
        let spec = match CommandSpec::new(
            &spec.name,
            &spec.flags,
            spec.first_key,
            spec.last_key,
            spec.key_step,
            spec.arity,
        ) {
            Ok(spec) => spec,
            Err(why) => return Ok(Err(format!("command '{}': {why}", spec.name))),
        };
        if scope.commands.iter().any(|c| c.name == spec.name) {
            return Ok(Err(format!("command '{}' is registered twice", spec.name)));
        }
        if scope.commands.len() >= crate::registry::MAX_COMMANDS_PER_GUEST {
            return Ok(Err(format!(
                "a guest may register at most {} commands",
                crate::registry::MAX_COMMANDS_PER_GUEST
            )));
        }
        let index = u32::try_from(scope.commands.len()).expect("bounded by MAX_COMMANDS_PER_GUEST");
        scope.commands.push(spec);
        Ok(Ok(index))
    }

    fn create_data_type(
        &mut self,
        name: String,
        encoding_version: i32,
    ) -> wasmtime::Result<Result<u32, String>> {
        let Phase::Init(scope) = &mut self.phase else {
            return Ok(Err(
                "create-data-type can only be called from the guest's init".to_owned(),
            ));
        };
        if scope.module.is_none() {
            return Ok(Err("call init-module before create-data-type".to_owned()));
        }
        if let Err(why) = crate::ffi::check_type_name(&name) {
            return Ok(Err(why));
        }
        if encoding_version < 0 {
            return Ok(Err(format!(
                "data type '{name}': the encoding version cannot be negative"
            )));
        }
        if scope.data_types.iter().any(|(n, _)| *n == name) {
            return Ok(Err(format!("data type '{name}' is declared twice")));
        }
        if scope.data_types.len() >= MAX_DATA_TYPES_PER_GUEST {
            return Ok(Err(format!(
                "a guest may declare at most {MAX_DATA_TYPES_PER_GUEST} data types"
            )));
        }
        // A type new to the server is registered with Redis when the load is published (see
        // `DeclaredType`), which needs a context.
        if scope.ctx.is_none() && crate::ffi::find_type(&name).is_none() {
            return Ok(Err(format!(
                "data type '{name}' can only be registered while a client loads the guest"
            )));
        }
        let index = u32::try_from(scope.data_types.len()).expect("bounded above");
        scope.data_types.push((name.clone(), encoding_version));
        self.data_types
            .push(DeclaredType::new(name, encoding_version));
        Ok(Ok(index))
    }
}
