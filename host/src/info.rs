//! The `INFO wasm` section.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ffi::InfoCtx;
use crate::{limits, registry};

fn n(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// The counters of guests no longer loaded (unloaded or replaced), in `INFO wasm`'s totals:
/// calls, errors, traps, kills, restarts.
static RETIRED: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// The names of `RETIRED`'s counters, in its order.
const COUNTERS: [&str; 5] = ["calls", "errors", "traps", "kills", "restarts"];

/// A guest's totals, in `RETIRED`'s order.
fn counters(g: &crate::guest::Guest) -> [u64; 5] {
    let s = &g.stats;
    [
        g.calls(),
        s.errors.load(Ordering::Relaxed),
        s.traps.load(Ordering::Relaxed),
        s.kills.load(Ordering::Relaxed),
        s.restarts.load(Ordering::Relaxed),
    ]
}

/// Keeps the counters of a guest that was unloaded or replaced, so the totals never go back.
pub fn retire(guest: &crate::guest::Guest) {
    let counts = counters(guest);
    if guest.stats.retired_with.set(counts).is_ok() {
        for (total, count) in RETIRED.iter().zip(counts) {
            total.fetch_add(count, Ordering::Relaxed);
        }
    }
}

/// A retired guest is dropped once its last job has ended: what it counted since `retire`
/// (a job's error, trap or kill) joins the totals.
pub fn add_counts_after_retirement(guest: &crate::guest::Guest) {
    let Some(at_retirement) = guest.stats.retired_with.get() else {
        return;
    };
    for ((total, now), then) in RETIRED.iter().zip(counters(guest)).zip(at_retirement) {
        total.fetch_add(now.saturating_sub(*then), Ordering::Relaxed);
    }
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
    let mut totals: [u64; 5] = std::array::from_fn(|i| RETIRED[i].load(Ordering::Relaxed));
    for guest in &guests {
        for (total, count) in totals.iter_mut().zip(counters(guest)) {
            *total = total.saturating_add(count);
        }
    }
    for (name, total) in COUNTERS.into_iter().zip(totals) {
        info.field_i64(name, n(total));
    }
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
        let mut fields = vec![
            ("commands", n(guest.commands.len()).to_string()),
            (
                "memory",
                n(guest.stats.memory.load(Ordering::Relaxed)).to_string(),
            ),
            ("code", n(guest.code_size()).to_string()),
        ];
        fields.extend(
            COUNTERS
                .into_iter()
                .zip(counters(guest))
                .map(|(name, count)| (name, n(count).to_string())),
        );
        info.dict(&format!("guest_{}", guest.info.name), &fields);
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
