//! Retention: which snapshots a keep policy (`--keep-daily 7 --keep-weekly 4 ...`) keeps, and
//! why. The rules are restic's `forget` rules (internal/restic/snapshot_policy.go, restic 0.17+)
//! so that coffer and restic, given the same policy, forget the same snapshots:
//!
//! - snapshots are grouped (by host and paths unless told otherwise) and each group is
//!   evaluated on its own, newest first;
//! - a bucket rule (last, hourly, daily, weekly, monthly, yearly) keeps a snapshot when its
//!   bucket value (e.g. the day `YYYYMMDD`) differs from the value of the last snapshot that
//!   rule kept, while the rule has count left (-1 = unlimited). The oldest snapshot of a group
//!   is kept too while a rule has count left ("oldest daily snapshot");
//! - bucket values are computed in the snapshot's own time zone (its recorded UTC offset), and
//!   weeks are ISO weeks;
//! - `within` keeps everything newer than the newest snapshot (that is not in the future)
//!   minus a calendar duration; `within_daily` etc. keep one per bucket inside that span;
//! - `tags` keeps snapshots carrying every tag of at least one tag list.
//!
//! Everything here is pure: no I/O, and the current time is a parameter.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};
use coffer_repo::snapshot::{Snapshot, SnapshotWithId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Invalid policy input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A duration that is not `NyNmNwNdNh`.
    #[error("invalid duration {input:?}: {reason} (write e.g. 1y6m2w3d4h: years, months, weeks, days, hours)")]
    Duration {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A count below -1 or not a number.
    #[error("invalid count {0:?}: use a number >= 0, or -1 / \"unlimited\" to keep all")]
    Count(String),
    /// A count beyond what any repository could hold.
    #[error("count {0} is too large (at most 2147483647): use -1 or \"unlimited\" to keep all")]
    CountTooLarge(String),
    /// An unknown `--group-by` word.
    #[error("invalid grouping {0:?}: use host, paths and/or tags separated by commas, or \"\" for one group")]
    GroupBy(String),
}

mod apply;
mod counts;
mod duration;
mod group;
mod policy;
#[cfg(test)]
mod tests;

pub use apply::*;
pub use counts::*;
pub use duration::*;
pub use group::*;
pub use policy::*;
