//! Checks of a restored database: each table's rows against the counts its dump recorded
//! (`row_counts` in the manifest, see [`super::dump_rows`]).

use serde_json::{Map, Value};

use super::{quote_ident, quote_literal, Server};
use crate::row_counts::RowComparison;
use crate::SourceError;

/// Tables counted per query: one query per table would cost a connection each.
const BATCH: usize = 200;

/// Counts the rows of every table `expected` names (`schema.table` → rows) in `database` on
/// the server at `url` and compares. Tables restored but not in `expected` are not counted.
pub fn compare_row_counts(
    url: &str,
    bin_dir: Option<&str>,
    database: &str,
    expected: &Map<String, Value>,
) -> Result<RowComparison, SourceError> {
    let server = Server::new("restored", url.to_string(), bin_dir.map(str::to_string));
    // The key is `schema.table`, and either part may hold a dot: match on the server's own
    // names rather than splitting the key.
    let names = server.query(
        database,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%'",
    )?;
    let mut present: Vec<(String, String)> = Vec::new();
    for r in &names {
        if let [ns, rel] = &r[..] {
            let key = format!("{ns}.{rel}");
            if expected.contains_key(&key) {
                present.push((key, format!("{}.{}", quote_ident(ns), quote_ident(rel))));
            }
        }
    }
    let mut out = RowComparison::default();
    for key in expected.keys() {
        if !present.iter().any(|(k, _)| k == key) {
            out.differences
                .push(format!("table {key} is missing from the restored database"));
        }
    }
    for batch in present.chunks(BATCH) {
        let sql = batch
            .iter()
            .map(|(key, q)| format!("SELECT {}, count(*) FROM ONLY {q}", quote_literal(key)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for r in server.query(database, &sql)? {
            let (Some(key), Some(n)) = (r.first(), r.get(1).and_then(|n| n.parse::<u64>().ok()))
            else {
                continue;
            };
            out.tables += 1;
            out.rows += n;
            let want = expected.get(key).and_then(Value::as_u64).unwrap_or(0);
            if n != want {
                out.differences
                    .push(format!("table {key}: {n} rows, the backup holds {want}"));
            }
        }
    }
    Ok(out)
}
