/*!
coffer's audit log: a tamper-evident record of who did what. Every backup, restore, delete,
prune, key change, ack, silence and config reload appends one [`Entry`] (time, actor, action,
target, outcome, optional details) with [`AuditLog::append`]; [`verify`] checks the whole file
(`coffer audit verify`).

Each line is one JSON object, fields in this order:

```text
{"seq":1,"time":"2026-11-27T06:00:00.123Z","actor":"daemon","action":"backup","target":"job/web","outcome":"success","details":{"files":12},"prev":"000…000","mac":"3f…"}
```

- `seq` counts from 1; `prev` is the `mac` of the previous line (64 zeros on the first line);
  `details` is left out when there are none; `time` is UTC with milliseconds.
- `mac` is HMAC-SHA256, under an [`AuditKey`], of the exact bytes of the same object without
  the `mac` field (`{"seq":…,"prev":"…"}`). A line is valid only if its bytes are exactly that
  canonical serialization of its parsed fields plus `,"mac":"<hex>"}`, so an edit of any byte,
  whitespace included, is caught.
- Appends take an exclusive `flock` on the file (the daemon and CLI commands share one log),
  read only the last line, refuse to extend a tail that does not verify, and write the new line
  with one `write(2)` followed by `fsync`.

Threat model: someone who can edit the log but cannot read the key. They cannot forge, edit,
insert or reorder lines without [`verify`] noticing, since the chain can only be recomputed
with the key; hence the key must not live beside the log ([`check_key_location`]). Cutting
lines off the end leaves a valid shorter chain: it is detected only against a [`Head`] recorded
elsewhere (the catalog, and the repository with each snapshot), passed to [`verify`] as
`expected`. Someone who holds the key can rewrite everything after the last head recorded
elsewhere; the log does not protect against root on the machine.

```no_run
use coffer_audit::{verify, AuditKey, AuditLog, Entry};
use std::path::Path;
# fn main() -> Result<(), Box<dyn std::error::Error>> {
let (log_path, key_path) = (Path::new("/var/lib/coffer/audit.log"), Path::new("/etc/coffer/audit.key"));
coffer_audit::check_key_location(log_path, key_path)?;
let key = AuditKey::load_or_create(key_path)?;
let log = AuditLog::open(log_path, key.clone())?;
let head = log.append(&Entry::new("admin", "restore", "job/web@2026-11-27", "success"))?;
// ... record `head` in the catalog; later:
let report = verify(log_path, &key, Some(&head))?;
for p in &report.problems {
    println!("{p}");
}
# Ok(())
# }
```
*/

mod error;
mod key;
mod line;
mod log;
mod show;
mod verify;

pub use error::AuditError;
pub use key::{check_key_location, AuditKey};
pub use line::{Entry, Head};
pub use log::AuditLog;
pub use show::{read, Shown};
pub use verify::{verify, Problem, ProblemKind, Report, MAX_PROBLEMS};
