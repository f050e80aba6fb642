//! The small part of WASI 0.2 the host grants, deliberately.
//!
//! Rust's standard library on `wasm32-wasip2` imports `wasi:cli` and `wasi:io` for printing,
//! panics and process exit, and `wasi:random` / `wasi:clocks` when a guest uses `HashMap` or
//! `Instant`. The host defines exactly these, and nothing that reaches outside the server:
//!
//! | interface | what the guest gets |
//! |---|---|
//! | `wasi:cli/stdout`, `stderr` | lines go to the Redis log (`notice` / `warning`), prefixed with the guest name |
//! | `wasi:cli/stdin` | an empty stream (end of file) |
//! | `wasi:cli/environment` | no variables, no arguments, no working directory |
//! | `wasi:cli/exit` | traps: the command fails with an error |
//! | `wasi:cli/terminal-*` | no terminal |
//! | `wasi:io/*` | the streams above; every pollable is always ready |
//! | `wasi:random/*` | OS randomness (guest writes are replicated as effects, so this is safe) |
//! | `wasi:clocks/*` | the server's clocks |
//! | `wasi:filesystem/*` | no preopened directories, so no file can be opened |
//! | `wasi:sockets/*` | present, but every function traps: no network |
//!
//! Files and sockets are there without any capability because toolchains link them in whether
//! or not the guest uses them (componentize-py, ComponentizeJS with stdio, Rust's `std::fs`): a
//! guest that never reaches for a file or a socket loads and runs; one that does finds no
//! directory, or traps. HTTP and every other interface are refused when the guest loads
//! (`loader.rs` names the import). The version defined is 0.2.6; wasmtime's linker resolves any
//! `0.2.x` import to it.

use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Linker, Lower, Resource, ResourceType};

use crate::ffi::LogLevel;
use crate::state::GuestState;

/// The WASI version the host defines.
pub const VERSION: &str = "0.2.6";

/// Interfaces a guest may import, by `package/interface` (any 0.2.x version).
pub const GRANTED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
];

/// Interfaces a guest may import that give it nothing: their functions are defined for each
/// guest that imports them ([`define_without_capabilities`]).
pub const WITHOUT_CAPABILITIES: &[&str] = &[
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// The resources [`WITHOUT_CAPABILITIES`] interfaces define (besides `descriptor`, which the
/// shared linker has).
const OWN_RESOURCES: &[(&str, &str)] = &[
    ("wasi:filesystem/types", "directory-entry-stream"),
    ("wasi:sockets/network", "network"),
    ("wasi:sockets/tcp", "tcp-socket"),
    ("wasi:sockets/udp", "udp-socket"),
    ("wasi:sockets/udp", "incoming-datagram-stream"),
    ("wasi:sockets/udp", "outgoing-datagram-stream"),
    ("wasi:sockets/ip-name-lookup", "resolve-address-stream"),
];

/// Largest single write or random request a guest may make.
const MAX_CHUNK: u64 = 1 << 20;
/// A printed line longer than this is flushed as it is (and logged in pieces Redis keeps).
const MAX_LINE: usize = 16 * 1024;

// Host resource types. Streams carry their identity in the handle's rep.
struct IoError;
struct Pollable;
struct InputStream;
struct OutputStream;
struct TerminalInput;
struct TerminalOutput;
/// `wasi:filesystem/types#descriptor`: never made (no directory is preopened).
struct Descriptor;
/// Any other resource of an interface without capabilities: never made either.
struct NoCapability;

const STDOUT: u32 = 1;
const STDERR: u32 = 2;

#[derive(ComponentType, Lower)]
#[component(variant)]
#[allow(dead_code)] // the WIT variant's shape; the host only ever reports `closed`
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    Closed,
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

type Store<'a> = StoreContextMut<'a, GuestState>;

/// Buffered guest output, flushed to the Redis log line by line.
#[derive(Default)]
pub struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn write(&mut self, label: &str, stream: u32, bytes: &[u8]) {
        let (buffer, level) = match stream {
            STDERR => (&mut self.stderr, LogLevel::Warning),
            _ => (&mut self.stdout, LogLevel::Notice),
        };
        for &b in bytes {
            if b == b'\n' || buffer.len() >= MAX_LINE {
                emit(label, level, buffer);
                if b == b'\n' {
                    continue;
                }
            }
            buffer.push(b);
        }
    }

    /// Logs partial lines; called at the end of every guest call.
    pub fn flush(&mut self, label: &str) {
        if !self.stdout.is_empty() {
            emit(label, LogLevel::Notice, &mut self.stdout);
        }
        if !self.stderr.is_empty() {
            emit(label, LogLevel::Warning, &mut self.stderr);
        }
    }
}

fn emit(label: &str, level: LogLevel, buffer: &mut Vec<u8>) {
    // Rust's panic hint names an environment variable the guest cannot be given (setting it on
    // redis-server does nothing for guests): it would only mislead whoever reads the log.
    if !buffer.starts_with(b"note: run with `RUST_BACKTRACE=1`") {
        crate::ffi::log_guest_text(level, label, buffer);
    }
    buffer.clear();
}

fn random_bytes(len: u64) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_CHUNK {
        return Err(wasmtime::Error::msg(format!(
            "the guest asked for {len} random bytes; the limit is {MAX_CHUNK}"
        )));
    }
    let mut bytes = vec![0u8; usize::try_from(len)?];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| wasmtime::Error::msg(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes)
}

fn insecure_u64() -> u64 {
    // Each RandomState gets fresh keys from the OS-seeded generator std keeps per thread.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn monotonic_now() -> u64 {
    u64::try_from(process_start().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn ignore_drop(_: Store<'_>, _: u32) -> wasmtime::Result<()> {
    Ok(())
}

fn trap(message: &str) -> wasmtime::Error {
    wasmtime::Error::msg(message.to_owned())
}

/// Defines the granted WASI interfaces in `linker`.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    let v = VERSION;
    process_start();

    let mut error = linker.instance(&format!("wasi:io/error@{v}"))?;
    error.resource("error", ResourceType::host::<IoError>(), ignore_drop)?;
    error.func_wrap(
        "[method]error.to-debug-string",
        |_: Store<'_>, (_,): (Resource<IoError>,)| Ok(("the stream is closed".to_owned(),)),
    )?;

    let mut poll = linker.instance(&format!("wasi:io/poll@{v}"))?;
    poll.resource("pollable", ResourceType::host::<Pollable>(), ignore_drop)?;
    poll.func_wrap(
        "[method]pollable.ready",
        |_: Store<'_>, (_,): (Resource<Pollable>,)| Ok((true,)),
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_: Store<'_>, (_,): (Resource<Pollable>,)| Ok(()),
    )?;
    poll.func_wrap(
        "poll",
        |_: Store<'_>, (list,): (Vec<Resource<Pollable>>,)| {
            let ready: Vec<u32> = (0..u32::try_from(list.len())?).collect();
            Ok((ready,))
        },
    )?;

    let mut streams = linker.instance(&format!("wasi:io/streams@{v}"))?;
    streams.resource(
        "input-stream",
        ResourceType::host::<InputStream>(),
        ignore_drop,
    )?;
    streams.resource(
        "output-stream",
        ResourceType::host::<OutputStream>(),
        ignore_drop,
    )?;
    type ReadResult = Result<Vec<u8>, StreamError>;
    type CountResult = Result<u64, StreamError>;
    type UnitResult = Result<(), StreamError>;
    for name in [
        "[method]input-stream.read",
        "[method]input-stream.blocking-read",
    ] {
        streams.func_wrap(
            name,
            |_: Store<'_>, (_, _): (Resource<InputStream>, u64)| {
                Ok((ReadResult::Err(StreamError::Closed),))
            },
        )?;
    }
    for name in [
        "[method]input-stream.skip",
        "[method]input-stream.blocking-skip",
    ] {
        streams.func_wrap(
            name,
            |_: Store<'_>, (_, _): (Resource<InputStream>, u64)| {
                Ok((CountResult::Err(StreamError::Closed),))
            },
        )?;
    }
    streams.func_wrap(
        "[method]input-stream.subscribe",
        |_: Store<'_>, (_,): (Resource<InputStream>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;
    streams.func_wrap(
        "[method]output-stream.check-write",
        |_: Store<'_>, (_,): (Resource<OutputStream>,)| Ok((CountResult::Ok(MAX_CHUNK),)),
    )?;
    for name in [
        "[method]output-stream.write",
        "[method]output-stream.blocking-write-and-flush",
    ] {
        streams.func_wrap(
            name,
            |mut store: Store<'_>, (stream, bytes): (Resource<OutputStream>, Vec<u8>)| {
                if bytes.len() as u64 > MAX_CHUNK {
                    return Err(trap("the guest wrote more than check-write allowed"));
                }
                let state = store.data_mut();
                let label = state.label.clone();
                state.output.write(&label, stream.rep(), &bytes);
                Ok((UnitResult::Ok(()),))
            },
        )?;
    }
    for name in [
        "[method]output-stream.flush",
        "[method]output-stream.blocking-flush",
    ] {
        streams.func_wrap(name, |_: Store<'_>, (_,): (Resource<OutputStream>,)| {
            Ok((UnitResult::Ok(()),))
        })?;
    }
    for name in [
        "[method]output-stream.write-zeroes",
        "[method]output-stream.blocking-write-zeroes-and-flush",
    ] {
        streams.func_wrap(
            name,
            |mut store: Store<'_>, (stream, len): (Resource<OutputStream>, u64)| {
                if len > MAX_CHUNK {
                    return Err(trap("the guest wrote more than check-write allowed"));
                }
                let state = store.data_mut();
                let label = state.label.clone();
                state
                    .output
                    .write(&label, stream.rep(), &vec![0; usize::try_from(len)?]);
                Ok((UnitResult::Ok(()),))
            },
        )?;
    }
    for name in [
        "[method]output-stream.splice",
        "[method]output-stream.blocking-splice",
    ] {
        streams.func_wrap(
            name,
            |_: Store<'_>, (_, _, _): (Resource<OutputStream>, Resource<InputStream>, u64)| {
                Ok((CountResult::Err(StreamError::Closed),))
            },
        )?;
    }
    streams.func_wrap(
        "[method]output-stream.subscribe",
        |_: Store<'_>, (_,): (Resource<OutputStream>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;

    let mut environment = linker.instance(&format!("wasi:cli/environment@{v}"))?;
    environment.func_wrap("get-environment", |_: Store<'_>, ()| {
        Ok((Vec::<(String, String)>::new(),))
    })?;
    environment.func_wrap("get-arguments", |_: Store<'_>, ()| {
        Ok((Vec::<String>::new(),))
    })?;
    environment.func_wrap("initial-cwd", |_: Store<'_>, ()| Ok((None::<String>,)))?;

    linker.instance(&format!("wasi:cli/exit@{v}"))?.func_wrap(
        "exit",
        |_: Store<'_>, (status,): (Result<(), ()>,)| {
            Err::<(), _>(trap(if status.is_ok() {
                "the guest called exit (success)"
            } else {
                "the guest called exit (failure)"
            }))
        },
    )?;
    linker
        .instance(&format!("wasi:cli/stdin@{v}"))?
        .func_wrap("get-stdin", |_: Store<'_>, ()| {
            Ok((Resource::<InputStream>::new_own(0),))
        })?;
    linker
        .instance(&format!("wasi:cli/stdout@{v}"))?
        .func_wrap("get-stdout", |_: Store<'_>, ()| {
            Ok((Resource::<OutputStream>::new_own(STDOUT),))
        })?;
    linker
        .instance(&format!("wasi:cli/stderr@{v}"))?
        .func_wrap("get-stderr", |_: Store<'_>, ()| {
            Ok((Resource::<OutputStream>::new_own(STDERR),))
        })?;
    linker
        .instance(&format!("wasi:cli/terminal-input@{v}"))?
        .resource(
            "terminal-input",
            ResourceType::host::<TerminalInput>(),
            ignore_drop,
        )?;
    linker
        .instance(&format!("wasi:cli/terminal-output@{v}"))?
        .resource(
            "terminal-output",
            ResourceType::host::<TerminalOutput>(),
            ignore_drop,
        )?;
    linker
        .instance(&format!("wasi:cli/terminal-stdin@{v}"))?
        .func_wrap("get-terminal-stdin", |_: Store<'_>, ()| {
            Ok((None::<Resource<TerminalInput>>,))
        })?;
    for (interface, function) in [
        ("terminal-stdout", "get-terminal-stdout"),
        ("terminal-stderr", "get-terminal-stderr"),
    ] {
        linker
            .instance(&format!("wasi:cli/{interface}@{v}"))?
            .func_wrap(function, |_: Store<'_>, ()| {
                Ok((None::<Resource<TerminalOutput>>,))
            })?;
    }

    let mut random = linker.instance(&format!("wasi:random/random@{v}"))?;
    random.func_wrap("get-random-bytes", |_: Store<'_>, (len,): (u64,)| {
        Ok((random_bytes(len)?,))
    })?;
    random.func_wrap("get-random-u64", |_: Store<'_>, ()| {
        let bytes = random_bytes(8)?;
        Ok((u64::from_le_bytes(bytes.try_into().expect("8 bytes")),))
    })?;
    let mut insecure = linker.instance(&format!("wasi:random/insecure@{v}"))?;
    insecure.func_wrap(
        "get-insecure-random-bytes",
        |_: Store<'_>, (len,): (u64,)| Ok((random_bytes(len)?,)),
    )?;
    insecure.func_wrap("get-insecure-random-u64", |_: Store<'_>, ()| {
        Ok((insecure_u64(),))
    })?;
    linker
        .instance(&format!("wasi:random/insecure-seed@{v}"))?
        .func_wrap("insecure-seed", |_: Store<'_>, ()| {
            Ok(((insecure_u64(), insecure_u64()),))
        })?;

    let mut monotonic = linker.instance(&format!("wasi:clocks/monotonic-clock@{v}"))?;
    monotonic.func_wrap("now", |_: Store<'_>, ()| Ok((monotonic_now(),)))?;
    monotonic.func_wrap("resolution", |_: Store<'_>, ()| Ok((1u64,)))?;
    monotonic.func_wrap("subscribe-instant", |_: Store<'_>, (_,): (u64,)| {
        Ok((Resource::<Pollable>::new_own(0),))
    })?;
    monotonic.func_wrap("subscribe-duration", |_: Store<'_>, (_,): (u64,)| {
        Ok((Resource::<Pollable>::new_own(0),))
    })?;
    let mut wall = linker.instance(&format!("wasi:clocks/wall-clock@{v}"))?;
    wall.func_wrap("now", |_: Store<'_>, ()| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok((Datetime {
            seconds: now.as_secs(),
            nanoseconds: now.subsec_nanos(),
        },))
    })?;
    wall.func_wrap("resolution", |_: Store<'_>, ()| {
        Ok((Datetime {
            seconds: 0,
            nanoseconds: 1,
        },))
    })?;

    // No directory is preopened: files cannot be named, so the rest of the filesystem
    // interface is unreachable (defined per guest as traps, below).
    linker
        .instance(&format!("wasi:filesystem/types@{v}"))?
        .resource(
            "descriptor",
            ResourceType::host::<Descriptor>(),
            ignore_drop,
        )?;
    linker
        .instance(&format!("wasi:filesystem/preopens@{v}"))?
        .func_wrap("get-directories", |_: Store<'_>, ()| {
            Ok((Vec::<(Resource<Descriptor>, String)>::new(),))
        })?;
    Ok(())
}

/// Whether `component` imports an interface of [`WITHOUT_CAPABILITIES`] (any 0.2.x).
pub fn imports_without_capabilities(component: &wasmtime::component::Component) -> bool {
    let engine = crate::engine::engine();
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| without_capabilities_interface(name).is_some())
}

/// The `package/interface` of [`WITHOUT_CAPABILITIES`] that import `name` is, if any.
fn without_capabilities_interface(name: &str) -> Option<&'static str> {
    let path = wasi_0_2_interface(name)?;
    WITHOUT_CAPABILITIES.iter().copied().find(|i| *i == path)
}

/// The `package/interface` of a WASI 0.2.x import (`wasi:io/streams@0.2.9`): the versions the
/// host's 0.2.6 definitions answer.
fn wasi_0_2_interface(name: &str) -> Option<&str> {
    let parsed = crate::loader::parse_interface_name(name)?;
    let is_0_2 = parsed
        .version
        .is_some_and(|(major, minor, _)| (major, minor) == (0, 2));
    is_0_2.then(|| name.split_once('@').map_or(name, |(path, _)| path))
}

/// Whether the host defines the import `name` (granted, or without capabilities).
pub fn grants(name: &str) -> bool {
    wasi_0_2_interface(name)
        .is_some_and(|path| GRANTED.contains(&path) || WITHOUT_CAPABILITIES.contains(&path))
}

/// Defines, in `linker` (a copy of the shared one, for one guest), every function and
/// resource `component` imports from [`WITHOUT_CAPABILITIES`] that the shared linker lacks:
/// functions trap, naming themselves; resources are never made.
pub fn define_without_capabilities(
    linker: &mut Linker<GuestState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = crate::engine::engine();
    for (name, item) in component.component_type().imports(engine) {
        let (Some(interface), ComponentItem::ComponentInstance(instance)) =
            (without_capabilities_interface(name), item.ty)
        else {
            continue;
        };
        let mut defined = linker.instance(&format!("{interface}@{VERSION}"))?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                // Defined in the shared linker.
                _ if matches!(
                    (interface, export),
                    ("wasi:filesystem/types", "descriptor")
                        | ("wasi:filesystem/preopens", "get-directories")
                ) => {}
                ComponentItem::ComponentFunc(_) => {
                    let message = format!(
                        "the guest called '{interface}#{export}': this host grants no files or sockets"
                    );
                    defined.func_new(export, move |_, _, _, _| Err(trap(&message)))?;
                }
                // Only the interface's own resources: those it `use`s (streams, pollables, the
                // network) are the defining interface's.
                ComponentItem::Resource(_) if OWN_RESOURCES.contains(&(interface, export)) => {
                    defined.resource(export, ResourceType::host::<NoCapability>(), ignore_drop)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}
