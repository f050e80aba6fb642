//! A key's scan (`scan-key`): Redis's `RedisModule_ScanKey` cursor, kept by the open key, and the
//! entries a step gave that the guest has not taken yet.
//!
//! One step of `RedisModule_ScanKey` visits one hash-table bucket, or a whole compactly encoded
//! key (a listpack or an intset, which can hold thousands of entries), so a step may give more
//! than a batch may hold. The surplus waits here, copied, for the next batch: copies stay valid
//! whatever the guest writes meanwhile, as `HSCAN`'s replies do.

use crate::ffi::{RawKey, ScanCursor};

/// What one batch may hold.
pub struct BatchLimits {
    /// Entries.
    pub max: usize,
    /// Bytes of fields and values, counting 8 more per entry (so empty entries stop too).
    pub max_bytes: usize,
    /// `RedisModule_ScanKey` steps, so a sparse hash table cannot keep one crossing busy.
    pub max_steps: usize,
}

/// Where a batch goes: the WIT record's vectors.
pub struct BatchOut<'a> {
    pub fields: &'a mut Vec<u8>,
    pub field_ends: &'a mut Vec<u32>,
    pub values: &'a mut Vec<u8>,
    pub value_ends: &'a mut Vec<u32>,
}

impl BatchOut<'_> {
    fn len(&self) -> usize {
        self.field_ends.len()
    }

    fn size(&self) -> usize {
        self.fields.len() + self.values.len() + 8 * self.len()
    }

    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.len() >= limits.max || self.size() >= limits.max_bytes
    }

    fn push(&mut self, field: &[u8], value: &[u8]) {
        self.fields.extend_from_slice(field);
        self.values.extend_from_slice(value);
        // Below max_bytes plus one entry (at most 1 GB: two 512 MB strings): fits in u32.
        self.field_ends.push(self.fields.len() as u32);
        self.value_ends.push(self.values.len() as u32);
    }
}

/// Entries a step gave beyond what the last batch took, end to end.
#[derive(Default)]
struct Surplus {
    fields: Vec<u8>,
    field_ends: Vec<usize>,
    values: Vec<u8>,
    value_ends: Vec<usize>,
    /// Entries before this index were handed out.
    taken: usize,
}

impl Surplus {
    fn push(&mut self, field: &[u8], value: Option<&[u8]>) {
        self.fields.extend_from_slice(field);
        self.field_ends.push(self.fields.len());
        self.values.extend_from_slice(value.unwrap_or_default());
        self.value_ends.push(self.values.len());
    }

    fn is_empty(&self) -> bool {
        self.taken == self.field_ends.len()
    }

    /// Moves entries into `out` until it holds `limits.max` or reaches `limits.max_bytes`.
    fn move_into(&mut self, out: &mut BatchOut<'_>, limits: &BatchLimits) {
        while !self.is_empty() && !out.is_full(limits) {
            let i = self.taken;
            let start = |ends: &[usize]| if i == 0 { 0 } else { ends[i - 1] };
            out.push(
                &self.fields[start(&self.field_ends)..self.field_ends[i]],
                &self.values[start(&self.value_ends)..self.value_ends[i]],
            );
            self.taken += 1;
        }
        if self.is_empty() {
            self.fields.clear();
            self.field_ends.clear();
            self.values.clear();
            self.value_ends.clear();
            self.taken = 0;
        }
    }
}

/// The scan of one open key.
#[derive(Default)]
pub struct KeyScan {
    /// Created at the first batch.
    cursor: Option<ScanCursor>,
    surplus: Surplus,
    /// Redis's cursor has visited everything (or the key was empty or gone).
    finished: bool,
}

impl KeyScan {
    /// Starts over (`RedisModule_ScanCursorRestart`); what was not handed out is dropped.
    pub fn restart(&mut self) {
        if let Some(cursor) = &self.cursor {
            cursor.restart();
        }
        self.surplus = Surplus::default();
        self.finished = false;
    }

    /// Fills `out` with the next entries of `key` (`None`: the key is empty). Returns whether
    /// the scan is complete: nothing was left behind and Redis's cursor has finished.
    pub fn next_batch(
        &mut self,
        key: Option<&RawKey>,
        out: &mut BatchOut<'_>,
        limits: &BatchLimits,
    ) -> bool {
        let mut steps = 0;
        loop {
            self.surplus.move_into(out, limits);
            if out.is_full(limits) || self.finished || steps >= limits.max_steps {
                break;
            }
            // The surplus is empty now: entries go straight into the batch until it is full.
            steps += 1;
            let surplus = &mut self.surplus;
            let more = match key {
                Some(key) => {
                    let cursor = self.cursor.get_or_insert_with(ScanCursor::new);
                    key.scan_step(cursor, &mut |field, value| {
                        if out.is_full(limits) {
                            surplus.push(field, value);
                        } else {
                            out.push(field, value.unwrap_or_default());
                        }
                    })
                }
                None => false,
            };
            self.finished = !more;
        }
        self.finished && self.surplus.is_empty()
    }
}
