//! The `INFO wasm` section.

use std::sync::atomic::Ordering;

use crate::ffi::InfoCtx;
use crate::{limits, registry};

fn n(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

pub fn write(info: &InfoCtx) {
    let guests = registry::guests();
    info.section("");
    info.field_i64("guests", n(guests.len()));
    info.field_i64(
        "commands",
        n(guests.iter().map(|g| g.commands.len()).sum::<usize>()),
    );
    info.field_i64(
        "memory_bytes",
        n(limits::TOTAL_MEMORY.load(Ordering::Relaxed)),
    );
    let total = |f: fn(&crate::guest::Guest) -> u64| n(guests.iter().map(|g| f(g)).sum::<u64>());
    info.field_i64("calls", total(crate::guest::Guest::calls));
    info.field_i64("errors", total(|g| g.stats.errors.load(Ordering::Relaxed)));
    info.field_i64("traps", total(|g| g.stats.traps.load(Ordering::Relaxed)));
    info.field_i64("kills", total(|g| g.stats.kills.load(Ordering::Relaxed)));
    info.field_i64(
        "restarts",
        total(|g| g.stats.restarts.load(Ordering::Relaxed)),
    );
    info.field_i64("blocked_clients", n(crate::blocked::blocked_count()));
    info.field_i64("background_jobs", n(crate::blocked::job_count()));
    let compiles = crate::commands::compile_counts();
    info.field_i64("compiles", n(compiles.running));
    info.field_i64("compiles_waiting", n(compiles.waiting));
    info.field_i64(
        "instances",
        n(guests.iter().filter(|g| g.has_instance()).count()),
    );
    for guest in &guests {
        let s = &guest.stats;
        info.dict(
            &format!("guest_{}", guest.info.name),
            &[
                ("commands", n(guest.commands.len()).to_string()),
                ("memory", n(s.memory.load(Ordering::Relaxed)).to_string()),
                ("code", n(guest.code_size()).to_string()),
                ("calls", n(guest.calls()).to_string()),
                ("errors", n(s.errors.load(Ordering::Relaxed)).to_string()),
                ("traps", n(s.traps.load(Ordering::Relaxed)).to_string()),
                ("kills", n(s.kills.load(Ordering::Relaxed)).to_string()),
                (
                    "restarts",
                    n(s.restarts.load(Ordering::Relaxed)).to_string(),
                ),
            ],
        );
    }
    // Like Redis's `commandstats`, one line per guest command called so far (Redis's own has
    // only the dispatchers). The time is measured while `wasm.time-commands` is on.
    info.section("commandstats");
    for guest in &guests {
        for (spec, stats) in guest.commands.iter().zip(&guest.command_stats) {
            if stats.calls.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let (usec, per_call) = stats.usec();
            info.dict(
                &format!("cmdstat_{}", spec.name),
                &[
                    ("calls", stats.calls.load(Ordering::Relaxed).to_string()),
                    ("usec", usec.to_string()),
                    ("usec_per_call", format!("{per_call:.2}")),
                    ("errors", stats.errors.load(Ordering::Relaxed).to_string()),
                ],
            );
        }
    }
}
