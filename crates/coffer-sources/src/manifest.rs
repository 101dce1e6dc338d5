//! The manifest a source fills during a backup: what was backed up and where the server was
//! (version, databases and their sizes, WAL or replication positions, timings). Shared between
//! the source's stream producers and the code that saves the snapshot, which stores it under
//! the snapshot's `coffer` key and as the file `coffer-manifest.json`.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};

/// A shared JSON object.
#[derive(Clone, Default)]
pub struct Manifest(Arc<Mutex<Map<String, Value>>>);

impl Manifest {
    /// Sets a top-level field.
    pub fn set(&self, key: &str, value: impl Into<Value>) {
        self.0.lock().insert(key.to_string(), value.into());
    }

    /// Sets `key.sub` (creating the object).
    pub fn set_in(&self, key: &str, sub: &str, value: impl Into<Value>) {
        let mut m = self.0.lock();
        let e = m
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = e {
            o.insert(sub.to_string(), value.into());
        }
    }

    /// A copy of the fields.
    pub fn snapshot(&self) -> Map<String, Value> {
        self.0.lock().clone()
    }
}
