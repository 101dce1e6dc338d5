//! `restore --target DIR` of a Kafka snapshot: each partition's records as JSON lines, for
//! reading or for another tool, in `DIR/TOPIC/PARTITION.jsonl`, one object per record in
//! offset order:
//!
//! ```json
//! {"offset":12,"timestamp":1700000000000,"timestamp_type":"CreateTime","key":"k1",
//!  "value":"order 12","headers":[{"key":"trace","value":"x"},{"key":"empty","value":null}]}
//! ```
//!
//! A key, value or header value that is not UTF-8 comes as `key_base64`, `value_base64` or
//! (in a header) `value_base64` instead; a null one as `null`. A file is written as
//! `PARTITION.jsonl.partial` and renamed when complete, so that a file under its own name is
//! always whole; an existing file is never overwritten.

use std::io::{BufWriter, Write};
use std::path::Path;

use base64::Engine;
use serde_json::{Map, Value};

use super::batch::Record;
use super::stored::{Part, Window};
use crate::{RestoreReport, SnapshotFiles, SourceError};

/// Writes `parts` (each under the topic name `name_of` gives) into `dir`; returns the
/// records written.
pub(super) fn write(
    files: &SnapshotFiles,
    parts: &[&Part],
    dir: &Path,
    name_of: &dyn Fn(&str) -> String,
    window: Window,
    report: &mut RestoreReport,
) -> Result<u64, SourceError> {
    let io = |path: &Path, e: std::io::Error| SourceError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    // Every file is checked before any is written: a refusal leaves nothing behind.
    let paths: Vec<_> = parts
        .iter()
        .map(|p| {
            dir.join(name_of(&p.topic))
                .join(format!("{}.jsonl", p.partition))
        })
        .collect();
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(SourceError::Usage(format!(
            "{} exists: restore into an empty --target directory (nothing was written)",
            p.display()
        )));
    }
    let mut total = 0u64;
    for (part, path) in parts.iter().zip(&paths) {
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let partial = path.with_extension("jsonl.partial");
        let file = std::fs::File::create(&partial).map_err(|e| io(&partial, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let n = part.each_record(files, window, 4, |r| {
            serde_json::to_writer(&mut out, &line(&r))
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| io(&partial, e))
        })?;
        out.into_inner()
            .map_err(|e| io(&partial, e.into_error()))?
            .sync_all()
            .map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, path).map_err(|e| io(path, e))?;
        report.steps.push(format!(
            "wrote {n} records of {}/{} to {}",
            part.topic,
            part.partition,
            path.display()
        ));
        total += n;
    }
    Ok(total)
}

/// One record as a JSON object.
fn line(r: &Record) -> Value {
    let mut m = Map::new();
    m.insert("offset".into(), r.offset.into());
    m.insert("timestamp".into(), r.timestamp.into());
    m.insert(
        "timestamp_type".into(),
        if r.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .into(),
    );
    bytes_field(&mut m, "key", r.key.as_deref());
    bytes_field(&mut m, "value", r.value.as_deref());
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            let mut h = Map::new();
            h.insert("key".into(), String::from_utf8_lossy(k).into());
            bytes_field(&mut h, "value", v.as_deref());
            Value::Object(h)
        })
        .collect();
    m.insert("headers".into(), headers.into());
    Value::Object(m)
}

/// `name: "text"` for UTF-8, `name_base64: "…"` for other bytes, `name: null` for none.
fn bytes_field(m: &mut Map<String, Value>, name: &str, b: Option<&[u8]>) {
    match b.map(std::str::from_utf8) {
        None => {
            m.insert(name.into(), Value::Null);
        }
        Some(Ok(s)) => {
            m.insert(name.into(), s.into());
        }
        Some(Err(_)) => {
            m.insert(
                format!("{name}_base64"),
                base64::engine::general_purpose::STANDARD
                    .encode(b.unwrap_or_default())
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn text_binary_and_null_fields() {
        let r = Record {
            offset: 7,
            timestamp: 1_700_000_000_000,
            log_append_time: false,
            key: Some(b"k1".to_vec()),
            value: Some(vec![0xff, 0x00]),
            headers: vec![
                (b"trace".to_vec(), None),
                (b"t".to_vec(), Some(b"x".to_vec())),
            ],
        };
        assert_eq!(
            line(&r),
            json!({"offset": 7, "timestamp": 1_700_000_000_000i64, "timestamp_type": "CreateTime",
                   "key": "k1", "value_base64": "/wA=",
                   "headers": [{"key": "trace", "value": null}, {"key": "t", "value": "x"}]})
        );
    }
}
