//! Turning bytes into a compiled guest: format checks, compilation, import and version checks.
//!
//! Only WebAssembly components are accepted, compiled from their wasm bytes: never precompiled
//! artifacts (`Component::deserialize` would run machine code as given). A guest may import only
//! the interfaces of the `redis:module` world this host implements; anything else is refused at
//! load with a message naming the import.

use wasmtime::component::Component;

use crate::api::{WIT_PACKAGE, WIT_VERSION};
use crate::engine;
use crate::guest::Program;

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// Interfaces of the world that the host implements.
const HOST_INTERFACES: &[&str] = &[
    "types",
    "log",
    "registration",
    "reply",
    "strings",
    "call",
    "keys",
    "replication",
    "context",
    "blocking",
];

/// Refuses a module of `len` bytes over `wasm.max-module-size`.
pub fn check_size(len: u64) -> Result<(), String> {
    let limit = crate::config::get_usize(&crate::config::MAX_MODULE_SIZE);
    if len > limit as u64 {
        return Err(format!(
            "the module is {len} bytes, more than wasm.max-module-size ({limit} bytes)"
        ));
    }
    Ok(())
}

/// Checks the bytes look like a component before handing them to the compiler.
pub fn check_format(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(b"\x7fELF") {
        return Err(
            "precompiled artifacts (ELF, .cwasm) are refused: load the .wasm component".to_owned(),
        );
    }
    if !bytes.starts_with(WASM_MAGIC) {
        return Err("not a WebAssembly binary (bad magic number)".to_owned());
    }
    match bytes.get(4..8) {
        Some(v) if v == COMPONENT_VERSION => Ok(()),
        Some(v) if v == CORE_MODULE_VERSION => Err(
            "this is a core WebAssembly module, not a component: build the guest for wasm32-wasip2 \
             (or turn it into a component with `wasm-tools component new`)"
                .to_owned(),
        ),
        Some(_) => Err("unsupported WebAssembly binary version".to_owned()),
        None => Err("truncated WebAssembly binary".to_owned()),
    }
}

/// A parsed import or export name such as `redis:module/log@0.1.0`.
pub(crate) struct InterfaceName<'a> {
    pub package: &'a str,
    pub interface: &'a str,
    pub version: Option<(u64, u64, u64)>,
}

pub(crate) fn parse_interface_name(name: &str) -> Option<InterfaceName<'_>> {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    };
    let (package, interface) = path.split_once('/')?;
    let version = match version {
        None => None,
        Some(v) => {
            let core = v.split(['-', '+']).next()?;
            let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
            Some((parts.next()??, parts.next()??, parts.next()??))
        }
    };
    Some(InterfaceName {
        package,
        interface,
        version,
    })
}

fn version_text((a, b, c): (u64, u64, u64)) -> String {
    format!("{a}.{b}.{c}")
}

/// Whether a guest built against `version` of the world can run on this host (semver; for 0.x
/// the minor version is the breaking one). Newer minor/patch versions than the host's are refused
/// because they may import functions this host lacks.
fn compatible(version: (u64, u64, u64)) -> bool {
    let host = WIT_VERSION;
    if host.0 == 0 {
        version.0 == 0 && version.1 == host.1 && version.2 <= host.2
    } else {
        version.0 == host.0 && (version.1, version.2) <= (host.1, host.2)
    }
}

fn check_world_version(name: &str, parsed: &InterfaceName<'_>) -> Result<(), String> {
    let host = version_text(WIT_VERSION);
    match parsed.version {
        None => Err(format!(
            "'{name}' has no version; this host implements {WIT_PACKAGE}@{host}"
        )),
        Some(v) if !compatible(v) => Err(format!(
            "the guest was built for {WIT_PACKAGE}@{}, but this host implements {WIT_PACKAGE}@{host}",
            version_text(v)
        )),
        Some(_) => Ok(()),
    }
}

/// Checks a component's imports are all ones the host provides.
fn check_imports<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut refused = Vec::new();
    for name in names {
        match parse_interface_name(name) {
            Some(parsed) if parsed.package == WIT_PACKAGE => {
                check_world_version(name, &parsed)?;
                if !HOST_INTERFACES.contains(&parsed.interface) {
                    return Err(format!(
                        "the guest imports '{name}', which this host does not provide"
                    ));
                }
            }
            Some(_) if crate::wasi::grants(name) => {}
            _ => refused.push(format!("'{name}'")),
        }
    }
    if !refused.is_empty() {
        return Err(format!(
            "the guest imports {}, which this host does not grant",
            refused.join(", ")
        ));
    }
    Ok(())
}

/// The component's own imports, read from its bytes without compiling it (nested modules' and
/// components' imports are the component's business); `None` if it cannot be parsed, which
/// the compiler then explains.
fn import_names(bytes: &[u8]) -> Option<Vec<String>> {
    use wasmtime::wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 0 => {
                for import in imports {
                    let name = import.ok()?.name;
                    // Names with options are rare: leave them to the check after compiling.
                    if name.implements.is_some() || name.version_suffix.is_some() {
                        return None;
                    }
                    names.push(name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Some(names)
}

/// The version that added the `packed-arguments` export.
const PACKED_SINCE: (u64, u64, u64) = (0, 3, 4);

/// The version that added the `word-arguments` export.
const WORDS_SINCE: (u64, u64, u64) = (0, 3, 5);

/// The names of a guest's exports the host calls.
pub(crate) struct GuestExports {
    /// `redis:module/guest@<version>`.
    pub guest: String,
    /// `redis:module/packed-arguments@<version>`, which guests of the `module-packed` world
    /// export (0.3.4).
    pub packed_arguments: Option<String>,
    /// `redis:module/word-arguments@<version>`, which guests of the `module-words` world export
    /// (0.3.5).
    pub word_arguments: Option<String>,
}

/// Checks every import is one the host provides, and returns the names of the exports.
fn check_interfaces(component: &Component) -> Result<GuestExports, String> {
    let engine = engine::engine();
    let ty = component.component_type();
    check_imports(ty.imports(engine).map(|(name, _)| name))?;
    // Each export's name and version.
    let mut guest = None;
    let mut packed_arguments = None;
    let mut word_arguments = None;
    for (name, _) in ty.exports(engine) {
        if let Some(parsed) = parse_interface_name(name)
            && parsed.package == WIT_PACKAGE
        {
            let slot = match parsed.interface {
                "guest" => &mut guest,
                "packed-arguments" => &mut packed_arguments,
                "word-arguments" => &mut word_arguments,
                _ => continue,
            };
            check_world_version(name, &parsed)?;
            *slot = Some((name.to_owned(), parsed.version));
        }
    }
    let (guest, guest_version) = guest.ok_or_else(|| {
        format!("the component does not export {WIT_PACKAGE}/guest: it is not a redis-wasm guest")
    })?;
    // They come from one world: `packed-arguments` of the version `guest` has, from 0.3.4;
    // `word-arguments` likewise, from 0.3.5.
    for (export, since, interface) in [
        (&packed_arguments, PACKED_SINCE, "packed-arguments"),
        (&word_arguments, WORDS_SINCE, "word-arguments"),
    ] {
        if let Some((name, version)) = export
            && (*version != guest_version || *version < Some(since))
        {
            return Err(format!(
                "the guest exports '{guest}' and '{name}', which no world has together \
                 ({WIT_PACKAGE}/{interface} came in {})",
                version_text(since)
            ));
        }
    }
    Ok(GuestExports {
        guest,
        packed_arguments: packed_arguments.map(|(name, _)| name),
        word_arguments: word_arguments.map(|(name, _)| name),
    })
}

/// Compiles and links a guest. Slow (tens of milliseconds for small guests). A `replayed`
/// module (see [`LoadRequest`](crate::commands::LoadRequest)) skips the size limit.
pub fn compile(bytes: &[u8], replayed: bool) -> Result<Program, String> {
    if !replayed {
        check_size(bytes.len() as u64)?;
    }
    check_format(bytes)?;
    // Refused imports are known from the bytes: say so before a compile of seconds.
    if let Some(names) = import_names(bytes) {
        check_imports(names.iter().map(String::as_str))?;
    }
    let component = Component::new(engine::engine(), bytes)
        .map_err(|e| format!("invalid component: {e:#}").replace(['\r', '\n'], " "))?;
    let exports = check_interfaces(&component)?;
    Program::new(&component, &exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component header and an import section importing instance type 0 as `name` (parsed,
    /// not validated: enough for [`import_names`]).
    fn component_importing(name: &str) -> Vec<u8> {
        let mut import = vec![0x01, 0x00, name.len() as u8];
        import.extend_from_slice(name.as_bytes());
        import.extend_from_slice(&[0x05, 0x00]);
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.push(0x0a);
        bytes.push(import.len() as u8);
        bytes.extend_from_slice(&import);
        bytes
    }

    #[test]
    fn imports_are_judged_from_the_bytes_before_compiling() {
        let http = component_importing("wasi:http/types@0.2.0");
        assert_eq!(
            import_names(&http).unwrap(),
            ["wasi:http/types@0.2.0".to_owned()]
        );
        assert_eq!(
            compile(&http, false).err().unwrap(),
            "the guest imports 'wasi:http/types@0.2.0', which this host does not grant"
        );
        let files = component_importing("wasi:filesystem/types@0.2.3");
        assert!(check_imports(import_names(&files).unwrap().iter().map(String::as_str)).is_ok());
        assert_eq!(import_names(b"\0asm\x0d\0\x01\0\x0a\x09"), None);
    }

    #[test]
    fn formats_are_told_apart() {
        assert!(check_format(b"hello").unwrap_err().contains("bad magic"));
        assert!(
            check_format(b"\x7fELF\x02\x01")
                .unwrap_err()
                .contains("precompiled")
        );
        assert!(
            check_format(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(
            check_format(b"\0asm\x0d\0")
                .unwrap_err()
                .contains("truncated")
        );
        assert!(check_format(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn versions_follow_semver() {
        assert!(compatible((0, 3, 0)));
        assert!(compatible((0, 3, 1)));
        assert!(compatible((0, 3, 2)));
        assert!(compatible((0, 3, 3)));
        assert!(compatible((0, 3, 4)));
        assert!(compatible((0, 3, 5)));
        assert!(!compatible((0, 3, 6)));
        assert!(!compatible((0, 2, 0)));
        assert!(!compatible((0, 4, 0)));
        assert!(!compatible((1, 3, 0)));
        assert!(!compatible((0, 3, 9)));
        let parsed = parse_interface_name("redis:module/log@0.1.0").unwrap();
        assert_eq!(
            (parsed.package, parsed.interface, parsed.version),
            ("redis:module", "log", Some((0, 1, 0)))
        );
        assert!(parse_interface_name("plain").is_none());
    }
}
