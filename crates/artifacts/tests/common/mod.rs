//! Shared test helpers: artifact stores that record into a real evidence ledger, as every store
//! of the product does (decisions are derived from what the ledger recorded).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use tidegate_artifacts::ledger_sink::LedgerSink;
use tidegate_artifacts::ArtifactStore;
use tidegate_ledger::{Ledger, LedgerOptions};

/// The evidence ledger of `dir` (one writer per directory: open it once and share it).
pub fn ledger(dir: &Path) -> Arc<Ledger> {
    Arc::new(Ledger::open(dir, LedgerOptions::default()).unwrap())
}

/// The store of `dir`, recording into `ledger` with entries stamped `now` (Unix seconds).
pub fn store_at(dir: &Path, ledger: &Arc<Ledger>, now: u64) -> ArtifactStore {
    let sink = LedgerSink::new(dir, Arc::clone(ledger) as _, now).unwrap();
    ArtifactStore::open(dir)
        .unwrap()
        .with_event_sink(Box::new(sink))
}
