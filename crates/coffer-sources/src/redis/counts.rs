//! Key counts from `INFO keyspace`: recorded at backup time, compared after a scratch
//! restore.

use super::*;

/// The counts `INFO keyspace` gives for one database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbKeys {
    /// Keys.
    pub keys: u64,
    /// Keys with a time to live.
    pub expires: u64,
}

/// Parses `INFO keyspace` (`db0:keys=1,expires=0,avg_ttl=0`).
pub fn parse_keyspace(info: &str) -> BTreeMap<u32, DbKeys> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((db, fields)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(Ok(db)) = db.strip_prefix("db").map(str::parse::<u32>) else {
            continue;
        };
        let mut k = DbKeys::default();
        for f in fields.split(',') {
            match f.split_once('=') {
                Some(("keys", v)) => k.keys = v.parse().unwrap_or(0),
                Some(("expires", v)) => k.expires = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(db, k);
    }
    out
}

/// A field of an `INFO` reply.
pub(super) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

pub(super) fn keys_json(per_db: &BTreeMap<u32, DbKeys>, f: impl Fn(&DbKeys) -> u64) -> Value {
    Value::Object(
        per_db
            .iter()
            .map(|(db, k)| (format!("db{db}"), Value::from(f(k))))
            .collect(),
    )
}

pub(super) fn keys_map(m: &BTreeMap<u32, u64>) -> Map<String, Value> {
    m.iter()
        .map(|(db, n)| (format!("db{db}"), Value::from(*n)))
        .collect()
}

pub(super) fn set_keys(
    manifest: &Manifest,
    keys: &str,
    expires: &str,
    per_db: &BTreeMap<u32, DbKeys>,
) {
    manifest.set(keys, keys_json(per_db, |d| d.keys));
    manifest.set(expires, keys_json(per_db, |d| d.expires));
}

pub(super) fn parse_keys_json(v: Option<&Value>) -> Option<BTreeMap<u32, u64>> {
    let obj = v?.as_object()?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let db = k.strip_prefix("db").unwrap_or(k).parse().ok()?;
        out.insert(db, v.as_u64()?);
    }
    Some(out)
}

/// What the backup recorded about the keys.
#[derive(Debug, Clone, Default)]
pub struct ExpectedKeys {
    /// Keys per database just before the sync started.
    pub keys: BTreeMap<u32, u64>,
    /// Keys with a TTL per database at the same time.
    pub expires: BTreeMap<u32, u64>,
    /// Keys per database once the server had forked (when they differ from `keys`).
    pub keys_after: Option<BTreeMap<u32, u64>>,
}

impl ExpectedKeys {
    /// Reads the counts from a backup's manifest.
    pub fn from_manifest(m: &Value) -> Option<ExpectedKeys> {
        Some(ExpectedKeys {
            keys: parse_keys_json(m.get("keys"))?,
            expires: parse_keys_json(m.get("expires")).unwrap_or_default(),
            keys_after: parse_keys_json(m.get("keys_after_sync_start")),
        })
    }

    /// The `databases` setting a server needs to load the backup.
    pub fn databases_needed(&self) -> u32 {
        let max = self
            .keys
            .keys()
            .chain(self.keys_after.iter().flat_map(|m| m.keys()))
            .max();
        max.map_or(16, |m| (m + 1).max(16))
    }
}

/// What a loaded server holds.
#[derive(Debug, Clone, Default)]
pub struct LoadedKeys {
    /// `INFO keyspace`.
    pub per_db: BTreeMap<u32, DbKeys>,
    /// `rdb_last_load_keys_loaded` (Redis 7+).
    pub loaded: Option<u64>,
    /// `rdb_last_load_keys_expired` (Redis 7+): keys in the file whose TTL had passed.
    pub expired: Option<u64>,
}

/// Checks a loaded server's key counts against the backup's; returns notes on tolerated
/// differences, or what does not match.
///
/// A key whose TTL passed between the backup and the load is dropped while loading, so a
/// database may hold up to its `expires` count fewer keys (Redis 7 reports how many, and then
/// the total is checked exactly). On a server written to during the backup the counts taken
/// before and after the fork bound the count.
pub fn compare_keys(exp: &ExpectedKeys, got: &LoadedKeys) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let mut bad = Vec::new();
    let dbs: std::collections::BTreeSet<u32> = exp
        .keys
        .keys()
        .chain(exp.keys_after.iter().flat_map(|m| m.keys()))
        .chain(got.per_db.keys())
        .copied()
        .collect();
    let (mut total_lo, mut total_hi) = (0u64, 0u64);
    let expired_total = got.expired;
    for db in dbs {
        let before = exp.keys.get(&db).copied().unwrap_or(0);
        let after = exp
            .keys_after
            .as_ref()
            .map_or(before, |m| m.get(&db).copied().unwrap_or(0));
        let (lo, hi) = (before.min(after), before.max(after));
        total_lo += lo;
        total_hi += hi;
        let ttl_slack = exp
            .expires
            .get(&db)
            .copied()
            .unwrap_or(0)
            .min(expired_total.unwrap_or(u64::MAX));
        let n = got.per_db.get(&db).map_or(0, |k| k.keys);
        if n == before && n == after {
            continue;
        }
        if n <= hi && n >= lo.saturating_sub(ttl_slack) {
            let why = if lo != hi {
                format!("the key count changed from {before} to {after} while the backup started")
            } else {
                format!("{} of its keys had a TTL that has passed since", hi - n)
            };
            notes.push(format!(
                "db{db}: {n} keys, the backup recorded {before}: {why}"
            ));
        } else if lo == hi {
            bad.push(format!("db{db}: {n} keys, the backup recorded {before}"));
        } else {
            bad.push(format!(
                "db{db}: {n} keys, the backup recorded {before} before the fork and {after} after"
            ));
        }
    }
    if let (Some(loaded), Some(expired)) = (got.loaded, got.expired) {
        let in_file = loaded + expired;
        if in_file < total_lo || in_file > total_hi {
            bad.push(format!(
                "the RDB holds {in_file} keys ({loaded} loaded, {expired} expired), the backup \
                 recorded {}",
                if total_lo == total_hi {
                    total_lo.to_string()
                } else {
                    format!("between {total_lo} and {total_hi}")
                }
            ));
        } else if expired > 0 {
            notes.push(format!("{expired} keys had expired and were not loaded"));
        }
    }
    if bad.is_empty() {
        Ok(notes)
    } else {
        Err(format!(
            "the restored data does not match the backup's key counts: {}",
            bad.join("; ")
        ))
    }
}
