//! Module configs, the INFO section, server events and `RedisModule_Yield`.

use std::ffi::{CStr, c_char, c_int, c_longlong, c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use redis_module::raw;

use super::{Ctx, LogLevel, OK, c_string, catch};

/// A numeric module config backed by a static atomic.
pub struct NumericConfig {
    /// Name without the module prefix (`max-memory` is `wasm.max-memory`).
    pub name: &'static CStr,
    pub default: i64,
    pub min: i64,
    pub max: i64,
    /// Accepts memory units (`64mb`).
    pub memory: bool,
    /// Only settable at startup (`CONFIG SET` refuses it).
    pub immutable: bool,
    pub value: &'static AtomicI64,
}

extern "C" fn get_numeric(_name: *const c_char, privdata: *mut c_void) -> c_longlong {
    // SAFETY: privdata is the `&'static AtomicI64` given at registration.
    let value = unsafe { &*(privdata as *const AtomicI64) };
    value.load(Ordering::Relaxed)
}

extern "C" fn set_numeric(
    _name: *const c_char,
    val: c_longlong,
    privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: as in `get_numeric`; Redis already checked min and max.
    let value = unsafe { &*(privdata as *const AtomicI64) };
    value.store(val, Ordering::Relaxed);
    OK
}

/// A string module config backed by a static mutex.
pub struct StringConfig {
    pub name: &'static CStr,
    pub default: &'static CStr,
    pub value: &'static std::sync::Mutex<String>,
    /// Refuses a value (`CONFIG SET` answers the message).
    pub check: fn(&str) -> Result<(), String>,
    /// The value before the current one, which is set again unchecked: a `CONFIG SET` of
    /// several configs that fails restores it, and must not be refused (Redis would keep the
    /// new value) because what `check` judged then has changed since.
    pub previous: &'static std::sync::Mutex<Option<String>>,
}

extern "C" fn get_string(
    _name: *const c_char,
    privdata: *mut c_void,
) -> *mut raw::RedisModuleString {
    // SAFETY: privdata is the `&'static StringConfig` given at registration.
    let config = unsafe { &*(privdata as *const StringConfig) };
    let text = catch("reading a config", || {
        config
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    })
    .unwrap_or_default();
    // Redis 7.0 copies the returned string and never frees it: keep the last one per config
    // and free it at the next read, once Redis has taken its copy.
    static LAST_READ: std::sync::Mutex<Vec<(usize, super::OwnedString)>> =
        std::sync::Mutex::new(Vec::new());
    let string = super::OwnedString::new(text.as_bytes());
    let returned = string.0.as_ptr();
    let mut last = LAST_READ
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    last.retain(|(config, _)| *config != privdata as usize);
    last.push((privdata as usize, string));
    returned
}

extern "C" fn set_string(
    _name: *const c_char,
    val: *mut raw::RedisModuleString,
    privdata: *mut c_void,
    err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: as in `get_string`; `val` is a live string for the call.
    let config = unsafe { &*(privdata as *const StringConfig) };
    let set = catch("setting a config", || {
        let text = String::from_utf8_lossy(super::string_bytes(val)).into_owned();
        let mut previous = config
            .previous
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if previous.as_deref() != Some(text.as_str()) {
            (config.check)(&text)?;
        }
        let replaced = std::mem::replace(
            &mut *config
                .value
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            text,
        );
        *previous = Some(replaced);
        Ok::<(), String>(())
    });
    match set {
        Some(Ok(())) => OK,
        Some(Err(why)) => {
            if !err.is_null() {
                // SAFETY: Redis passes where to put the message and frees the string it gets.
                unsafe { *err = super::OwnedString::new(why.as_bytes()).into_raw() };
            }
            super::ERR
        }
        None => super::ERR,
    }
}

/// Called for every change of a Redis config (`CONFIG SET`), with the names changed.
pub type ConfigChangeHandler = fn(Ctx, &[&str]);

static CONFIG_CHANGE_HANDLER: std::sync::OnceLock<ConfigChangeHandler> = std::sync::OnceLock::new();
static CONFIG_CHANGE_SUBSCRIBED: AtomicBool = AtomicBool::new(false);
/// `RedisModuleEvent_Config`.
const CONFIG_EVENT: raw::RedisModuleEvent = raw::RedisModuleEvent {
    id: raw::REDISMODULE_EVENT_CONFIG,
    dataver: 1,
};

extern "C" fn config_change_event(
    ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    let Some(ctx) = std::ptr::NonNull::new(ctx).map(Ctx) else {
        return;
    };
    if subevent != raw::REDISMODULE_SUBEVENT_CONFIG_CHANGE || data.is_null() {
        return;
    }
    catch("the config change event", || {
        // SAFETY: for this event Redis passes a RedisModuleConfigChange with `num_changes` names.
        let names: Vec<String> = unsafe {
            let change = &*(data as *const raw::RedisModuleConfigChange);
            (0..change.num_changes as usize)
                .map(|i| {
                    CStr::from_ptr(*change.config_names.add(i))
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Some(handler) = CONFIG_CHANGE_HANDLER.get() {
            handler(ctx, &names);
        }
    });
}

/// The INFO section writer.
pub struct InfoCtx(*mut raw::RedisModuleInfoCtx);

impl InfoCtx {
    pub fn section(&self, name: &str) {
        let name = c_string(name.as_bytes());
        // SAFETY: valid info context for this callback.
        unsafe { api!(RedisModule_InfoAddSection)(self.0, name.as_ptr()) };
    }

    pub fn field_i64(&self, field: &str, value: i64) {
        let field = c_string(field.as_bytes());
        // SAFETY: valid info context.
        unsafe { api!(RedisModule_InfoAddFieldLongLong)(self.0, field.as_ptr(), value) };
    }

    /// A `name:k=v,k=v` line, the values as text (Redis formats its own that way:
    /// `usec_per_call=0.43`).
    pub fn dict(&self, name: &str, fields: &[(&str, String)]) {
        let name = c_string(name.as_bytes());
        // SAFETY: valid info context; every begin is matched by an end.
        unsafe {
            api!(RedisModule_InfoBeginDictField)(self.0, name.as_ptr());
            for (field, value) in fields {
                let field = c_string(field.as_bytes());
                let value = c_string(value.as_bytes());
                api!(RedisModule_InfoAddFieldCString)(self.0, field.as_ptr(), value.as_ptr());
            }
            api!(RedisModule_InfoEndDictField)(self.0);
        }
    }
}

static INFO_HANDLER: std::sync::OnceLock<fn(&InfoCtx)> = std::sync::OnceLock::new();

extern "C" fn info_func(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    if ctx.is_null() {
        return;
    }
    catch("INFO", || {
        if let Some(handler) = INFO_HANDLER.get() {
            handler(&InfoCtx(ctx));
        }
    });
}

impl Ctx {
    /// Logs a config Redis refused to register; returns whether it was registered.
    fn config_registered(self, status: c_int, name: &std::ffi::CStr) -> bool {
        if status != OK {
            self.log(
                LogLevel::Warning,
                &format!("cannot register config wasm.{}", name.to_string_lossy()),
            );
        }
        status == OK
    }

    /// Registers numeric and string configs, then applies values from the config file and
    /// command line (`RedisModule_LoadConfigs`).
    pub fn register_configs(
        self,
        numeric: &[NumericConfig],
        strings: &'static [StringConfig],
    ) -> bool {
        for config in numeric {
            let mut flags = raw::REDISMODULE_CONFIG_DEFAULT as c_uint;
            if config.memory {
                flags |= raw::REDISMODULE_CONFIG_MEMORY as c_uint;
            }
            if config.immutable {
                flags |= raw::REDISMODULE_CONFIG_IMMUTABLE as c_uint;
            }
            config.value.store(config.default, Ordering::Relaxed);
            // SAFETY: valid OnLoad context; the name is static; callbacks are panic-free and
            // privdata is a `'static` atomic.
            let status = unsafe {
                api!(RedisModule_RegisterNumericConfig)(
                    self.0.as_ptr(),
                    config.name.as_ptr(),
                    config.default,
                    flags,
                    config.min,
                    config.max,
                    Some(get_numeric),
                    Some(set_numeric),
                    None,
                    ptr::from_ref(config.value).cast_mut().cast::<c_void>(),
                )
            };
            if !self.config_registered(status, config.name) {
                return false;
            }
        }
        for config in strings {
            *config
                .value
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                config.default.to_string_lossy().into_owned();
            // SAFETY: as above, with the `'static` config as privdata.
            let status = unsafe {
                api!(RedisModule_RegisterStringConfig)(
                    self.0.as_ptr(),
                    config.name.as_ptr(),
                    config.default.as_ptr(),
                    raw::REDISMODULE_CONFIG_DEFAULT as c_uint,
                    Some(get_string),
                    Some(set_string),
                    None,
                    ptr::from_ref(config).cast_mut().cast::<c_void>(),
                )
            };
            if !self.config_registered(status, config.name) {
                return false;
            }
        }
        // SAFETY: valid OnLoad context.
        unsafe { api!(RedisModule_LoadConfigs)(self.0.as_ptr()) == OK }
    }

    /// Calls `handler` after every `CONFIG SET`.
    pub fn on_config_change(self, handler: ConfigChangeHandler) -> bool {
        let _ = CONFIG_CHANGE_HANDLER.set(handler);
        // SAFETY: valid OnLoad context; the callback is panic-safe.
        let subscribed = unsafe {
            api!(RedisModule_SubscribeToServerEvent)(
                self.0.as_ptr(),
                CONFIG_EVENT,
                Some(config_change_event),
            ) == OK
        };
        CONFIG_CHANGE_SUBSCRIBED.store(subscribed, Ordering::Release);
        subscribed
    }

    /// Undoes [`Ctx::on_config_change`] (for a failed load).
    pub fn stop_config_change(self) {
        // Unsubscribing without a subscription would add a listener with no callback.
        if CONFIG_CHANGE_SUBSCRIBED.swap(false, Ordering::AcqRel) {
            // SAFETY: valid OnLoad context; a NULL callback removes this module's listener.
            unsafe {
                api!(RedisModule_SubscribeToServerEvent)(self.0.as_ptr(), CONFIG_EVENT, None)
            };
        }
    }

    /// A Redis config (`CONFIG GET <name>`).
    pub fn config_get(self, name: &str) -> Option<String> {
        let reply = self
            .call("CONFIG", &[&b"GET"[..], name.as_bytes()], b"")
            .ok()?
            .share();
        let value = reply.array_element(1)?.string()?;
        Some(String::from_utf8_lossy(&value).trim().to_owned())
    }

    /// A numeric Redis config.
    pub fn config_get_i64(self, name: &str) -> Option<i64> {
        self.config_get(name)?.parse().ok()
    }

    /// Registers the module's INFO section writer.
    pub fn on_info(self, handler: fn(&InfoCtx)) -> bool {
        let _ = INFO_HANDLER.set(handler);
        // SAFETY: valid OnLoad context; the callback is panic-safe.
        unsafe { api!(RedisModule_RegisterInfoFunc)(self.0.as_ptr(), Some(info_func)) == OK }
    }

    /// `RedisModule_Yield(ctx, REDISMODULE_YIELD_FLAG_CLIENTS, message)`: lets Redis serve other
    /// clients (they get `-BUSY <message>`; `allow-busy` commands run) once the command has run
    /// past `busy-reply-threshold`.
    pub fn yield_to_clients(self, message: &CStr) {
        // SAFETY: valid command context; Redis keeps the message pointer only during the call.
        unsafe {
            api!(RedisModule_Yield)(
                self.0.as_ptr(),
                raw::REDISMODULE_YIELD_FLAG_CLIENTS as c_int,
                message.as_ptr(),
            )
        };
    }
}
