//! Command flags a guest declares, and which dispatcher command carries them.
//!
//! Guest commands run through one of four dispatcher commands (see `dispatch.rs`). Redis checks a
//! command's flags before it runs, so the dispatcher's own flags must match what the guest
//! declared: `write` and `readonly` decide replica, script, `CLIENT PAUSE` and ACL-category
//! behaviour, `deny-oom` decides the out-of-memory check. Other flags are either handled by the
//! host itself, informational, or refused with an error naming them.

use std::fmt;

/// The dispatcher a guest command runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `write deny-oom`
    WriteDenyOom,
    /// `write`
    Write,
    /// `readonly`
    Readonly,
    /// no access flag (like `PING`): may not write
    Plain,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::WriteDenyOom,
        Variant::Write,
        Variant::Readonly,
        Variant::Plain,
    ];

    /// The dispatcher command's name.
    pub fn command_name(self) -> &'static str {
        match self {
            Variant::WriteDenyOom => "wasm.invoke-write-denyoom",
            Variant::Write => "wasm.invoke-write",
            Variant::Readonly => "wasm.invoke-readonly",
            Variant::Plain => "wasm.invoke",
        }
    }

    /// Whether `name` is a dispatcher's (any case).
    pub fn is_dispatcher(name: &[u8]) -> bool {
        Variant::ALL
            .iter()
            .any(|v| name.eq_ignore_ascii_case(v.command_name().as_bytes()))
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn may_write(self) -> bool {
        matches!(self, Variant::WriteDenyOom | Variant::Write)
    }

    /// Whether the checks Redis makes for this dispatcher include those a command of `needed`
    /// requires (a command queued as a write may run once read-only; not the other way).
    pub fn covers(self, needed: Variant) -> bool {
        use Variant::*;
        self == needed
            || matches!(
                (self, needed),
                (WriteDenyOom, _) | (Write, Readonly | Plain) | (Readonly, Plain)
            )
    }
}

/// The flags of one guest command, parsed and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandFlags {
    pub write: bool,
    pub readonly: bool,
    pub deny_oom: bool,
    pub deny_script: bool,
    pub no_cluster: bool,
    /// Flags kept only to be listed back (`fast`, `random`, ...).
    pub informational: Vec<&'static str>,
}

/// Flags Redis knows but guest commands cannot have, with the reason given to the author.
const REFUSED: &[(&str, &str)] = &[
    ("admin", "guest commands cannot be administrative commands"),
    (
        "allow-loading",
        "guest commands do not run while the dataset loads",
    ),
    (
        "allow-stale",
        "guest commands do not run on a replica with stale data",
    ),
    (
        "allow-busy",
        "guest commands cannot run while another script or guest is busy",
    ),
    ("pubsub", "guest commands cannot be pub/sub commands"),
    ("no-monitor", "MONITOR always shows guest commands"),
    ("no-slowlog", "SLOWLOG always records guest commands"),
    ("no-auth", "guest commands always require authentication"),
    (
        "getkeys-api",
        "the host reports key positions from first/last/step",
    ),
    ("getchannels-api", "guest commands cannot declare channels"),
];

const INFORMATIONAL: &[&str] = &[
    "fast",
    "random",
    "blocking",
    "may-replicate",
    "no-mandatory-keys",
];

impl CommandFlags {
    /// Parses a `RedisModule_CreateCommand` flags string.
    pub fn parse(text: &str) -> Result<CommandFlags, String> {
        let mut flags = CommandFlags::default();
        for word in text.split_ascii_whitespace() {
            let lower = word.to_ascii_lowercase();
            match lower.as_str() {
                "write" => flags.write = true,
                "readonly" => flags.readonly = true,
                "deny-oom" => flags.deny_oom = true,
                "deny-script" => flags.deny_script = true,
                "no-cluster" => flags.no_cluster = true,
                other => {
                    if let Some(&known) = INFORMATIONAL.iter().find(|&&f| f == other) {
                        if !flags.informational.contains(&known) {
                            flags.informational.push(known);
                        }
                    } else if let Some((_, why)) = REFUSED.iter().find(|(f, _)| *f == other) {
                        return Err(format!("flag '{other}' is not supported: {why}"));
                    } else {
                        return Err(format!(
                            "unknown command flag '{word}' (guest commands take write, readonly, \
                             deny-oom, deny-script, no-cluster, {})",
                            INFORMATIONAL.join(", ")
                        ));
                    }
                }
            }
        }
        if flags.write && flags.readonly {
            return Err("a command cannot be both 'write' and 'readonly'".to_owned());
        }
        Ok(flags)
    }

    pub fn variant(&self) -> Variant {
        match (self.write, self.readonly, self.deny_oom) {
            (true, _, true) => Variant::WriteDenyOom,
            (true, _, false) => Variant::Write,
            (false, true, _) => Variant::Readonly,
            (false, false, _) => Variant::Plain,
        }
    }
}

impl fmt::Display for CommandFlags {
    /// The flags in canonical order, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<&str> = Vec::new();
        for (on, name) in [
            (self.write, "write"),
            (self.readonly, "readonly"),
            (self.deny_oom, "deny-oom"),
            (self.deny_script, "deny-script"),
            (self.no_cluster, "no-cluster"),
        ] {
            if on {
                words.push(name);
            }
        }
        words.extend(self.informational.iter().copied());
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatcher_covers_the_checks_of_looser_ones_only() {
        use Variant::*;
        let order = [WriteDenyOom, Write, Readonly, Plain];
        for (i, dispatcher) in order.iter().enumerate() {
            for (j, needed) in order.iter().enumerate() {
                assert_eq!(
                    dispatcher.covers(*needed),
                    i <= j,
                    "{dispatcher:?} {needed:?}"
                );
            }
        }
    }

    #[test]
    fn variants_follow_access_flags() {
        assert_eq!(
            CommandFlags::parse("write deny-oom").unwrap().variant(),
            Variant::WriteDenyOom
        );
        assert_eq!(
            CommandFlags::parse("WRITE").unwrap().variant(),
            Variant::Write
        );
        assert_eq!(
            CommandFlags::parse("readonly fast").unwrap().variant(),
            Variant::Readonly
        );
        assert_eq!(CommandFlags::parse("").unwrap().variant(), Variant::Plain);
        assert_eq!(
            CommandFlags::parse("readonly deny-oom").unwrap().variant(),
            Variant::Readonly
        );
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(
            CommandFlags::parse("write readonly")
                .unwrap_err()
                .contains("both")
        );
        assert!(
            CommandFlags::parse("admin")
                .unwrap_err()
                .contains("'admin'")
        );
        assert!(
            CommandFlags::parse("frobnicate")
                .unwrap_err()
                .contains("'frobnicate'")
        );
        // The message lists what is accepted, so `denyoom` points to `deny-oom`.
        assert!(
            CommandFlags::parse("denyoom")
                .unwrap_err()
                .contains("readonly, deny-oom, deny-script")
        );
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(
            CommandFlags::parse("fast  write deny-oom fast")
                .unwrap()
                .to_string(),
            "write deny-oom fast"
        );
    }
}
