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

// ---------------------------------------------------------------------------------------------
// Durations

/// A calendar duration for `within` rules: years, months, weeks, days and hours, applied to the
/// newest snapshot's local date the way Go's `time.AddDate` does (so 31 March minus one month
/// is 3 March, not 28 February, as with restic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Weeks (seven days; restic has no weeks, `2w` is the same as its `14d`).
    pub weeks: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl KeepDuration {
    /// True if every part is zero: the rule is off.
    pub fn is_zero(&self) -> bool {
        *self == KeepDuration::default()
    }

    /// `latest` minus this duration, evaluated in `latest`'s time zone; None if that falls
    /// outside the calendar (then every snapshot is within).
    pub fn before(&self, latest: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let local = latest.naive_local();
        // Go's AddDate: subtract years and months from the month number, normalise the month,
        // then let day overflow roll over into neighbouring months.
        let month0 = i64::from(local.month0()) - i64::from(self.months);
        let year = i64::from(local.year()) - i64::from(self.years) + month0.div_euclid(12);
        let month = month0.rem_euclid(12) as u32 + 1;
        let day = i64::from(local.day()) - i64::from(self.days) - 7 * i64::from(self.weeks);
        let first = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, 1)?;
        let date = first.checked_add_signed(Duration::try_days(day - 1)?)?;
        let shifted = date
            .and_time(local.time())
            .checked_sub_signed(Duration::try_hours(i64::from(self.hours))?)?;
        latest.offset().from_local_datetime(&shifted).single()
    }
}

impl FromStr for KeepDuration {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<KeepDuration, PolicyError> {
        let err = |reason: String| PolicyError::Duration {
            input: s.to_string(),
            reason,
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(err("empty duration".into()));
        }
        let mut d = KeepDuration::default();
        let mut seen = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(err(format!(
                    "expected a number at {rest:?} (negative durations are not allowed)"
                )));
            }
            let n: u32 = rest[..digits]
                .parse()
                .map_err(|_| err(format!("number {} is too large", &rest[..digits])))?;
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(err(format!("no unit after the number {n}")));
            };
            let slot = match unit {
                'y' => &mut d.years,
                'm' => &mut d.months,
                'w' => &mut d.weeks,
                'd' => &mut d.days,
                'h' => &mut d.hours,
                other => return Err(err(format!("unknown unit {other:?} after {n}"))),
            };
            if seen.contains(unit) {
                return Err(err(format!("unit {unit:?} given twice")));
            }
            seen.push(unit);
            *slot = n;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(d)
    }
}

impl fmt::Display for KeepDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for KeepDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeepDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeepDuration, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Counts and tag lists

/// Parses a keep count: a number >= 0, or -1 / `unlimited` for no limit.
pub fn parse_count(s: &str) -> Result<i32, PolicyError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(-1);
    }
    match t.parse::<i32>() {
        Ok(n) if n >= -1 => Ok(n),
        _ if t.parse::<u128>().is_ok() => Err(PolicyError::CountTooLarge(t.to_string())),
        _ => Err(PolicyError::Count(s.to_string())),
    }
}

fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) if (-1..=i64::from(i32::MAX)).contains(&n) => Ok(n as i32),
        Raw::Int(n) if n > 0 => Err(serde::de::Error::custom(PolicyError::CountTooLarge(
            n.to_string(),
        ))),
        Raw::Int(n) => Err(serde::de::Error::custom(PolicyError::Count(n.to_string()))),
        Raw::Text(s) => parse_count(&s).map_err(serde::de::Error::custom),
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Tags that must all be present for a `tags` rule to keep a snapshot. The empty tag `""`
/// matches a snapshot without tags (restic's convention).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// A comma-separated list, as `--keep-tag a,b` takes it.
    pub fn parse(s: &str) -> TagList {
        TagList(s.split(',').map(|t| t.trim().to_string()).collect())
    }

    /// restic's `Snapshot.HasTags`.
    pub fn matches(&self, snap: &Snapshot) -> bool {
        for tag in &self.0 {
            if tag.is_empty() && snap.tags.is_empty() {
                return true;
            }
            if !snap.tags.contains(tag) {
                return false;
            }
        }
        true
    }
}

impl fmt::Display for TagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

impl<'de> Deserialize<'de> for TagList {
    /// `"a,b"` or `["a", "b"]`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TagList, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(s) => TagList::parse(&s),
            Raw::Many(v) => TagList(v),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Policy

/// A keep policy. Deserializes from a table such as `{ daily = 7, weekly = 4, monthly = 12 }`
/// (TOML) or `{"daily": 7, "within": "1y"}` (JSON); missing keys are off. Counts take -1 or
/// `"unlimited"` for no limit; `tags` is a list of tag lists, each `"a,b"` or `["a", "b"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Keep the newest N snapshots.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "is_zero")]
    pub last: i32,
    /// Keep the newest snapshot of each of the last N hours.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "is_zero")]
    pub hourly: i32,
    /// Keep the newest snapshot of each of the last N days.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "is_zero")]
    pub daily: i32,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "is_zero")]
    pub weekly: i32,
    /// Keep the newest snapshot of each of the last N months.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "is_zero")]
    pub monthly: i32,
    /// Keep the newest snapshot of each of the last N years.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "is_zero")]
    pub yearly: i32,
    /// Keep every snapshot newer than the newest one minus this.
    #[serde(skip_serializing_if = "KeepDuration::is_zero")]
    pub within: KeepDuration,
    /// Keep hourly snapshots newer than the newest one minus this.
    #[serde(skip_serializing_if = "KeepDuration::is_zero")]
    pub within_hourly: KeepDuration,
    /// Keep daily snapshots newer than the newest one minus this.
    #[serde(skip_serializing_if = "KeepDuration::is_zero")]
    pub within_daily: KeepDuration,
    /// Keep weekly snapshots newer than the newest one minus this.
    #[serde(skip_serializing_if = "KeepDuration::is_zero")]
    pub within_weekly: KeepDuration,
    /// Keep monthly snapshots newer than the newest one minus this.
    #[serde(skip_serializing_if = "KeepDuration::is_zero")]
    pub within_monthly: KeepDuration,
    /// Keep yearly snapshots newer than the newest one minus this.
    #[serde(skip_serializing_if = "KeepDuration::is_zero")]
    pub within_yearly: KeepDuration,
    /// Keep snapshots that carry all tags of at least one of these lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagList>,
}

impl Policy {
    /// True if no rule is set: such a policy keeps everything.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// Rejects counts below -1 (the fields are public, so a caller may have built one).
    pub fn validate(&self) -> Result<(), PolicyError> {
        for n in [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ] {
            if n < -1 {
                return Err(PolicyError::Count(n.to_string()));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Policy {
    /// restic's wording: `keep 7 daily, 4 weekly, 12 monthly snapshots and all snapshots
    /// within 1y of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("keep all snapshots (empty policy)");
        }
        let counts: Vec<String> = [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ]
        .iter()
        .filter_map(|&(n, what)| match n {
            -1 => Some(format!("all {what}")),
            n if n > 0 => Some(format!("{n} {what}")),
            _ => None,
        })
        .collect();
        let within: Vec<String> = [
            (&self.within_hourly, "hourly"),
            (&self.within_daily, "daily"),
            (&self.within_weekly, "weekly"),
            (&self.within_monthly, "monthly"),
            (&self.within_yearly, "yearly"),
        ]
        .iter()
        .filter(|(d, _)| !d.is_zero())
        .map(|(d, what)| format!("{what} snapshots within {d}"))
        .collect();
        let mut s = String::new();
        if !counts.is_empty() {
            s = format!("{} snapshots", counts.join(", "));
        }
        if !within.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&within.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self.tags.iter().map(|t| t.to_string()).collect();
            s.push_str(&format!("all snapshots with tags {}", lists.join(" or ")));
        }
        if !self.within.is_zero() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!(
                "all snapshots within {} of the newest",
                self.within
            ));
        }
        write!(f, "keep {s}")
    }
}

// ---------------------------------------------------------------------------------------------
// Grouping

/// Which snapshot properties split snapshots into groups evaluated separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the (sorted) set of backed-up paths.
    pub paths: bool,
    /// By the (sorted) set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: host and paths.
    fn default() -> GroupBy {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = PolicyError;

    /// `host,paths`, `tags`, ... or `""` for a single group.
    fn from_str(s: &str) -> Result<GroupBy, PolicyError> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for word in s.split(',').map(str::trim) {
            match word {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "" => {}
                _ => return Err(PolicyError::GroupBy(word.to_string())),
            }
        }
        Ok(g)
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = [
            (self.host, "host"),
            (self.paths, "paths"),
            (self.tags, "tags"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| *w)
        .collect();
        f.write_str(&words.join(","))
    }
}

/// What the snapshots of one group share; a part is None when not grouped by it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Host name.
    pub hostname: Option<String>,
    /// Paths, sorted.
    pub paths: Option<Vec<String>>,
    /// Tags, sorted.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The key of `snap` under `by`.
    pub fn of(snap: &Snapshot, by: GroupBy) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            hostname: by.host.then(|| snap.hostname.clone()),
            paths: by.paths.then(|| sorted(&snap.paths)),
            tags: by.tags.then(|| sorted(&snap.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    /// restic's group header: `(host [web], tags [a, b], paths [/srv])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("host [{h}]"));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("(all snapshots)")
        } else {
            write!(f, "({})", parts.join(", "))
        }
    }
}

/// Snapshots sharing one [`GroupKey`].
#[derive(Clone, Debug)]
pub struct Group<'a> {
    /// What they share.
    pub key: GroupKey,
    /// The snapshots, in the order given.
    pub snapshots: Vec<&'a SnapshotWithId>,
}

/// Splits snapshots into groups, ordered by key (restic iterates a map: any fixed order will
/// do, a sorted one makes output stable).
pub fn group<'a>(
    snaps: impl IntoIterator<Item = &'a SnapshotWithId>,
    by: GroupBy,
) -> Vec<Group<'a>> {
    let mut map: std::collections::BTreeMap<GroupKey, Vec<&'a SnapshotWithId>> = Default::default();
    for s in snaps {
        map.entry(GroupKey::of(&s.snap, by)).or_default().push(s);
    }
    map.into_iter()
        .map(|(key, snapshots)| Group { key, snapshots })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Applying a policy

/// Counts left for each bucket rule after a snapshot was evaluated (-1: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Left for `last`.
    pub last: i32,
    /// Left for `hourly`.
    pub hourly: i32,
    /// Left for `daily`.
    pub daily: i32,
    /// Left for `weekly`.
    pub weekly: i32,
    /// Left for `monthly`.
    pub monthly: i32,
    /// Left for `yearly`.
    pub yearly: i32,
}

/// The verdict on one snapshot.
#[derive(Clone, Debug)]
pub struct Decision<'a> {
    /// The snapshot.
    pub snapshot: &'a SnapshotWithId,
    /// Kept (true) or to be removed.
    pub keep: bool,
    /// Why it is kept, in restic's words ("daily snapshot", "within 1y", ...); empty when
    /// removed.
    pub reasons: Vec<String>,
    /// Counts left after this snapshot.
    pub counters: Counters,
}

/// The verdicts on one group, newest snapshot first.
#[derive(Clone, Debug, Default)]
pub struct Outcome<'a> {
    /// One per snapshot, newest first.
    pub decisions: Vec<Decision<'a>>,
}

impl<'a> Outcome<'a> {
    /// The kept snapshots with their reasons, newest first.
    pub fn kept(&self) -> impl Iterator<Item = &Decision<'a>> {
        self.decisions.iter().filter(|d| d.keep)
    }

    /// The snapshots to remove, newest first.
    pub fn removed(&self) -> impl Iterator<Item = &'a SnapshotWithId> + '_ {
        self.decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.snapshot)
    }
}

type Bucketer = fn(&DateTime<FixedOffset>, usize) -> i64;

// Bucket values use the snapshot's own offset: chrono's Datelike/Timelike on a
// DateTime<FixedOffset> read the local fields, as Go's time methods do.
fn bucket_hour(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    bucket_day(t, 0) * 100 + i64::from(t.hour())
}

fn bucket_day(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}

fn bucket_week(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    let w = t.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}

fn bucket_month(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 100 + i64::from(t.month())
}

fn bucket_year(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year())
}

fn bucket_always(_: &DateTime<FixedOffset>, nr: usize) -> i64 {
    nr as i64
}

struct CountRule {
    count: i32,
    bucket: Bucketer,
    last: Option<i64>,
    reason: &'static str,
}

struct WithinRule {
    since: Option<Option<DateTime<FixedOffset>>>,
    within: KeepDuration,
    bucket: Bucketer,
    last: Option<i64>,
    reason: &'static str,
}

/// The newest snapshot time that is not in the future (restic's `findLatestTimestamp`).
fn latest_time(snaps: &[&SnapshotWithId], now: DateTime<Utc>) -> Option<DateTime<FixedOffset>> {
    snaps.iter().map(|s| s.snap.time).filter(|t| *t < now).max()
}

/// Whether `t` is inside a `within` span starting at `since` (None: the span reaches back
/// past the calendar, or no snapshot is in the past; then everything is inside, as with restic,
/// whose zero "latest" time makes every snapshot qualify).
fn inside(t: &DateTime<FixedOffset>, since: Option<DateTime<FixedOffset>>) -> bool {
    since.is_none_or(|s| *t > s)
}

/// Applies `policy` to the snapshots of one group. `now` only decides which snapshots are in
/// the future (they do not count as the newest for `within` rules).
pub fn apply<'a>(
    snaps: impl IntoIterator<Item = &'a SnapshotWithId>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Outcome<'a> {
    let mut list: Vec<&'a SnapshotWithId> = snaps.into_iter().collect();
    // Newest first; ties in the reverse of Repository::snapshots' order so output is stable.
    list.sort_by(|a, b| b.snap.time.cmp(&a.snap.time).then(b.id.cmp(&a.id)));

    if policy.is_empty() {
        return Outcome {
            decisions: list
                .into_iter()
                .map(|s| Decision {
                    snapshot: s,
                    keep: true,
                    reasons: vec!["policy is empty".into()],
                    counters: Counters::default(),
                })
                .collect(),
        };
    }

    let latest = latest_time(&list, now);
    let since = |d: &KeepDuration| latest.and_then(|l| d.before(l));

    let mut counts = [
        (policy.last, bucket_always as Bucketer, "last snapshot"),
        (policy.hourly, bucket_hour, "hourly snapshot"),
        (policy.daily, bucket_day, "daily snapshot"),
        (policy.weekly, bucket_week, "weekly snapshot"),
        (policy.monthly, bucket_month, "monthly snapshot"),
        (policy.yearly, bucket_year, "yearly snapshot"),
    ]
    .map(|(count, bucket, reason)| CountRule {
        count,
        bucket,
        last: None,
        reason,
    });
    let mut withins = [
        (
            &policy.within_hourly,
            bucket_hour as Bucketer,
            "hourly within",
        ),
        (&policy.within_daily, bucket_day, "daily within"),
        (&policy.within_weekly, bucket_week, "weekly within"),
        (&policy.within_monthly, bucket_month, "monthly within"),
        (&policy.within_yearly, bucket_year, "yearly within"),
    ]
    .map(|(d, bucket, reason)| WithinRule {
        since: (!d.is_zero()).then(|| since(d)),
        within: *d,
        bucket,
        last: None,
        reason,
    });
    let within_since = (!policy.within.is_zero()).then(|| since(&policy.within));

    let n = list.len();
    let mut decisions = Vec::with_capacity(n);
    for (nr, cur) in list.into_iter().enumerate() {
        let t = &cur.snap.time;
        let mut reasons = Vec::new();

        // Tag rules keep without counting.
        for l in &policy.tags {
            if l.matches(&cur.snap) {
                reasons.push(format!("has tags {l}"));
            }
        }

        if let Some(s) = within_since {
            if inside(t, s) {
                reasons.push(format!("within {}", policy.within));
            }
        }

        let oldest = nr + 1 == n;
        for rule in counts.iter_mut() {
            if rule.count > 0 || rule.count == -1 {
                let val = (rule.bucket)(t, nr);
                let new_bucket = rule.last != Some(val);
                // The oldest snapshot is kept while the rule has count left: that keeps the
                // longest history a young repository can offer (restic 0.17).
                if new_bucket || oldest {
                    rule.last = Some(val);
                    if rule.count > 0 {
                        rule.count -= 1;
                    }
                    reasons.push(if new_bucket {
                        rule.reason.to_string()
                    } else {
                        format!("oldest {}", rule.reason)
                    });
                }
            }
        }

        for rule in withins.iter_mut() {
            let Some(s) = rule.since else { continue };
            if inside(t, s) {
                let val = (rule.bucket)(t, nr);
                if rule.last != Some(val) {
                    rule.last = Some(val);
                    reasons.push(format!("{} {}", rule.reason, rule.within));
                }
            }
        }

        let keep = !reasons.is_empty();
        decisions.push(Decision {
            snapshot: cur,
            keep,
            reasons,
            counters: Counters {
                last: counts[0].count,
                hourly: counts[1].count,
                daily: counts[2].count,
                weekly: counts[3].count,
                monthly: counts[4].count,
                yearly: counts[5].count,
            },
        });
    }
    Outcome { decisions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_repo::Id;
    use std::collections::BTreeSet;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad time {s}: {e}"))
    }

    fn snap(nr: usize, time: DateTime<FixedOffset>, host: &str, tags: &[&str]) -> SnapshotWithId {
        // Through JSON, so fields added to Snapshot later keep their defaults here.
        let snap: Snapshot = serde_json::from_value(serde_json::json!({
            "time": time.to_rfc3339(),
            "tree": Id::default(),
            "paths": ["/srv"],
            "hostname": host,
            "tags": tags,
        }))
        .expect("snapshot JSON");
        SnapshotWithId {
            id: Id::hash(format!("snapshot {nr}").as_bytes()),
            snap,
        }
    }

    const NEWEST: &str = "2023-12-31T18:00:00Z";

    /// Two years of one snapshot every six hours on host "web", 2022-01-01 00:00 UTC to
    /// 2023-12-31 18:00 UTC (2920 snapshots), with:
    /// - the newest one recorded in Tokyo (2024-01-01 03:00 +09:00, a new local day, ISO
    ///   week, month and year);
    /// - 2023-06-30 18:00 UTC recorded in +08:00 (local 1 July);
    /// - tags: 2022-03-01 00:00 [release, v1], 2022-09-01 00:00 [release], 2023-05-05 06:00 [v1].
    fn history() -> Vec<SnapshotWithId> {
        let start = t("2022-01-01T00:00:00Z");
        let end = t(NEWEST);
        let tokyo = FixedOffset::east_opt(9 * 3600).expect("offset");
        let perth = FixedOffset::east_opt(8 * 3600).expect("offset");
        let mut out = Vec::new();
        let mut cur = start;
        let mut nr = 0;
        while cur <= end {
            let utc = cur.to_rfc3339();
            let time = if cur == end {
                cur.with_timezone(&tokyo)
            } else if utc == "2023-06-30T18:00:00+00:00" {
                cur.with_timezone(&perth)
            } else {
                cur
            };
            let tags: &[&str] = match utc.as_str() {
                "2022-03-01T00:00:00+00:00" => &["release", "v1"],
                "2022-09-01T00:00:00+00:00" => &["release"],
                "2023-05-05T06:00:00+00:00" => &["v1"],
                _ => &[],
            };
            out.push(snap(nr, time, "web", tags));
            nr += 1;
            cur += Duration::hours(6);
        }
        assert_eq!(out.len(), 2920);
        out
    }

    fn now() -> DateTime<Utc> {
        t("2024-02-01T00:00:00Z").with_timezone(&Utc)
    }

    /// The kept snapshots as UTC times, for comparing with hand-derived sets.
    fn kept_utc(o: &Outcome<'_>) -> BTreeSet<String> {
        o.kept()
            .map(|d| {
                d.snapshot
                    .snap
                    .time
                    .with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn reasons_of(o: &Outcome<'_>, utc: &str) -> Vec<String> {
        o.decisions
            .iter()
            .find(|d| {
                d.snapshot
                    .snap
                    .time
                    .with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
                    == utc
            })
            .unwrap_or_else(|| panic!("no snapshot at {utc}"))
            .reasons
            .clone()
    }

    fn policy(json: serde_json::Value) -> Policy {
        serde_json::from_value(json).expect("policy")
    }

    #[test]
    fn grandfather_father_son() {
        let h = history();
        let p = policy(serde_json::json!({"daily": 7, "weekly": 4, "monthly": 12}));
        let o = apply(&h, &p, now());
        // Days (local): 2024-01-01 (Tokyo), 12-31 .. 12-26. ISO weeks: 2024-W01 (Tokyo),
        // 2023-W52 (12-31 12:00), W51, W50 (Sundays). Months: 2024-01 (Tokyo), 2023-12 ..
        // 2023-02, where June's newest is 06-30 12:00 (18:00 is 1 July in +08:00).
        let want = set(&[
            "2023-12-31 18:00",
            "2023-12-31 12:00",
            "2023-12-30 18:00",
            "2023-12-29 18:00",
            "2023-12-28 18:00",
            "2023-12-27 18:00",
            "2023-12-26 18:00",
            "2023-12-24 18:00",
            "2023-12-17 18:00",
            "2023-11-30 18:00",
            "2023-10-31 18:00",
            "2023-09-30 18:00",
            "2023-08-31 18:00",
            "2023-07-31 18:00",
            "2023-06-30 12:00",
            "2023-05-31 18:00",
            "2023-04-30 18:00",
            "2023-03-31 18:00",
            "2023-02-28 18:00",
        ]);
        assert_eq!(kept_utc(&o), want);
        assert_eq!(o.removed().count(), 2920 - want.len());
        assert_eq!(
            reasons_of(&o, "2023-12-31 18:00"),
            ["daily snapshot", "weekly snapshot", "monthly snapshot"]
        );
        assert_eq!(
            reasons_of(&o, "2023-12-31 12:00"),
            ["daily snapshot", "weekly snapshot", "monthly snapshot"]
        );
        assert_eq!(reasons_of(&o, "2023-12-24 18:00"), ["weekly snapshot"]);
        assert_eq!(reasons_of(&o, "2023-02-28 18:00"), ["monthly snapshot"]);
        assert!(reasons_of(&o, "2023-01-31 18:00").is_empty());
        // Newest first, and the counters run down.
        let first = &o.decisions[0];
        assert_eq!(first.snapshot.snap.time, t("2024-01-01T03:00:00+09:00"));
        assert_eq!(
            (
                first.counters.daily,
                first.counters.weekly,
                first.counters.monthly
            ),
            (6, 3, 11)
        );
        assert_eq!(o.decisions.last().map(|d| d.counters.monthly), Some(0));
    }

    #[test]
    fn time_zone_of_the_snapshot_decides_its_bucket() {
        // 23:00 UTC on 31 December, recorded in +02:00, is 1 January there: a new day, ISO
        // week, month and year. Read in UTC, both would fall on 31 December.
        let a = snap(1, t("2024-01-01T01:00:00+02:00"), "h", &[]);
        let b = snap(2, t("2023-12-31T22:00:00+00:00"), "h", &[]);
        let c = snap(3, t("2023-12-31T21:00:00+00:00"), "h", &[]);
        let list = [a, b, c];
        for key in ["daily", "weekly", "monthly", "yearly"] {
            let o = apply(&list, &policy(serde_json::json!({ key: 5 })), now());
            let kept: Vec<Id> = o.kept().map(|d| d.snapshot.id).collect();
            // c is the oldest: kept while the rule has count left.
            assert_eq!(kept, [list[0].id, list[1].id, list[2].id], "{key}");
            assert_eq!(o.decisions[2].reasons, [format!("oldest {key} snapshot")]);
            let o = apply(&list, &policy(serde_json::json!({ key: 2 })), now());
            let kept: Vec<Id> = o.kept().map(|d| d.snapshot.id).collect();
            assert_eq!(kept, [list[0].id, list[1].id], "{key}");
        }
        // Hours too: 01:00 local vs 22:00 UTC.
        let o = apply(&list, &policy(serde_json::json!({"hourly": 3})), now());
        assert_eq!(o.kept().count(), 3);
    }

    #[test]
    fn keep_last_and_oldest() {
        let h = history();
        let o = apply(&h, &policy(serde_json::json!({"last": 3})), now());
        assert_eq!(
            kept_utc(&o),
            set(&["2023-12-31 18:00", "2023-12-31 12:00", "2023-12-31 06:00"])
        );
        assert!(o.kept().all(|d| d.reasons == ["last snapshot"]));
        // More than there are: all kept, nothing is "oldest" (each last value is new).
        let o = apply(&h[..5], &policy(serde_json::json!({"last": 10})), now());
        assert_eq!(o.kept().count(), 5);
        assert!(o.kept().all(|d| d.reasons == ["last snapshot"]));

        // Five yearly over two years: both years, plus the very first snapshot.
        let o = apply(&h, &policy(serde_json::json!({"yearly": 5})), now());
        assert_eq!(
            kept_utc(&o),
            set(&[
                "2023-12-31 18:00",
                "2023-12-31 12:00",
                "2022-12-31 18:00",
                "2022-01-01 00:00"
            ])
        );
        assert_eq!(
            reasons_of(&o, "2022-01-01 00:00"),
            ["oldest yearly snapshot"]
        );
        // Two yearly: the count is used up before the oldest.
        let o = apply(&h, &policy(serde_json::json!({"yearly": 2})), now());
        assert_eq!(kept_utc(&o), set(&["2023-12-31 18:00", "2023-12-31 12:00"]));
    }

    #[test]
    fn unlimited_counts() {
        let h = history();
        // One per local day: 730 UTC days plus Tokyo's 1 January, and the oldest snapshot
        // (the rule never runs out).
        let o = apply(&h, &policy(serde_json::json!({"daily": -1})), now());
        assert_eq!(o.kept().count(), 732);
        assert_eq!(
            reasons_of(&o, "2022-01-01 00:00"),
            ["oldest daily snapshot"]
        );
        assert_eq!(reasons_of(&o, "2022-01-01 18:00"), ["daily snapshot"]);
        assert!(reasons_of(&o, "2022-01-01 12:00").is_empty());
        assert_eq!(o.decisions[0].counters.daily, -1);
        // "unlimited" is the same.
        let o2 = apply(
            &h,
            &policy(serde_json::json!({"daily": "unlimited"})),
            now(),
        );
        assert_eq!(kept_utc(&o), kept_utc(&o2));
        // Unlimited monthly: 24 months + January 2024 + the oldest.
        let o = apply(&h, &policy(serde_json::json!({"monthly": -1})), now());
        assert_eq!(o.kept().count(), 26);
        // Unlimited last keeps everything.
        let o = apply(&h, &policy(serde_json::json!({"last": -1})), now());
        assert_eq!(o.removed().count(), 0);
    }

    #[test]
    fn keep_within() {
        let h = history();
        // From 2024-01-01 03:00 +09:00: 1m3d back is 2023-11-28 03:00 +09:00 = 11-27 18:00
        // UTC; strictly newer are 11-28 00:00 .. 12-31 18:00 UTC, 34 days of four.
        let o = apply(&h, &policy(serde_json::json!({"within": "1m3d"})), now());
        assert_eq!(o.kept().count(), 34 * 4);
        assert!(o.kept().all(|d| d.reasons == ["within 1m3d"]));
        assert!(reasons_of(&o, "2023-11-27 18:00").is_empty());
        assert_eq!(reasons_of(&o, "2023-11-28 00:00"), ["within 1m3d"]);
        // Weeks and hours: 1w2d6h = 9 days 6 hours: from 12-22 12:00 UTC exclusive.
        let o = apply(&h, &policy(serde_json::json!({"within": "1w2d6h"})), now());
        assert_eq!(o.kept().count(), 9 * 4 + 1);
        assert!(reasons_of(&o, "2023-12-22 12:00").is_empty());
        assert_eq!(reasons_of(&o, "2023-12-22 18:00"), ["within 1w2d6h"]);
        // All units: back to 2022-06-13 23:00 +09:00 = 14:00 UTC, so 2022-01-01 00:00 to
        // 2022-06-13 12:00 UTC go: 163 days of four, plus three.
        let o = apply(
            &h,
            &policy(serde_json::json!({"within": "1y6m2w3d4h"})),
            now(),
        );
        assert_eq!(o.removed().count(), 163 * 4 + 3);
        assert!(reasons_of(&o, "2022-06-13 12:00").is_empty());
        assert_eq!(reasons_of(&o, "2022-06-13 18:00"), ["within 1y6m2w3d4h"]);
        // More than the history: everything.
        let o = apply(&h, &policy(serde_json::json!({"within": "3y"})), now());
        assert_eq!(o.removed().count(), 0);
        // A snapshot in the future does not count as the newest.
        let mut h2 = h[h.len() - 8..].to_vec();
        h2.push(snap(9999, t("2030-01-01T00:00:00Z"), "web", &[]));
        let o = apply(&h2, &policy(serde_json::json!({"within": "1d"})), now());
        // 2023-12-31 03:00 +09:00 is 12-30 18:00 UTC: newer are four of 12-31 plus the future one.
        assert_eq!(o.kept().count(), 5);
    }

    #[test]
    fn keep_within_buckets() {
        let h = history();
        // Daily within 3d of Tokyo 2024-01-01 03:00 (so after 12-28 18:00 UTC): local days
        // 2024-01-01, 12-31, 12-30, 12-29.
        let o = apply(
            &h,
            &policy(serde_json::json!({"within_daily": "3d"})),
            now(),
        );
        assert_eq!(
            kept_utc(&o),
            set(&[
                "2023-12-31 18:00",
                "2023-12-31 12:00",
                "2023-12-30 18:00",
                "2023-12-29 18:00"
            ])
        );
        assert_eq!(reasons_of(&o, "2023-12-30 18:00"), ["daily within 3d"]);
        // Weekly within 2w: ISO weeks 2024-W01, 2023-W52, W51 (12-18 03:00 +09:00 onwards).
        let o = apply(
            &h,
            &policy(serde_json::json!({"within_weekly": "2w"})),
            now(),
        );
        assert_eq!(
            kept_utc(&o),
            set(&["2023-12-31 18:00", "2023-12-31 12:00", "2023-12-24 18:00"])
        );
    }

    #[test]
    fn go_add_date_normalisation() {
        // 31 March minus one month is "31 February" = 2 March in a leap year, as in Go.
        let d: KeepDuration = "1m".parse().expect("duration");
        assert_eq!(
            d.before(t("2024-03-31T10:00:00+01:00")),
            Some(t("2024-03-02T10:00:00+01:00"))
        );
        let d: KeepDuration = "1y".parse().expect("duration");
        assert_eq!(
            d.before(t("2024-02-29T00:00:00Z")),
            Some(t("2023-03-01T00:00:00Z"))
        );
        let d: KeepDuration = "13m40d".parse().expect("duration");
        assert_eq!(
            d.before(t("2024-01-15T12:00:00Z")),
            Some(t("2022-11-05T12:00:00Z"))
        );
        let d: KeepDuration = "30h".parse().expect("duration");
        assert_eq!(
            d.before(t("2024-01-01T05:00:00-03:00")),
            Some(t("2023-12-30T23:00:00-03:00"))
        );
        let d: KeepDuration = "300000y".parse().expect("duration");
        assert_eq!(d.before(t("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn keep_tags() {
        let h = history();
        let o = apply(&h, &policy(serde_json::json!({"tags": ["release"]})), now());
        assert_eq!(kept_utc(&o), set(&["2022-03-01 00:00", "2022-09-01 00:00"]));
        assert_eq!(reasons_of(&o, "2022-09-01 00:00"), ["has tags [release]"]);
        let o = apply(
            &h,
            &policy(serde_json::json!({"tags": ["release,v1"]})),
            now(),
        );
        assert_eq!(kept_utc(&o), set(&["2022-03-01 00:00"]));
        let o = apply(
            &h,
            &policy(serde_json::json!({"tags": [["release", "v1"]]})),
            now(),
        );
        assert_eq!(kept_utc(&o), set(&["2022-03-01 00:00"]));
        let o = apply(
            &h,
            &policy(serde_json::json!({"tags": ["release", "v1"]})),
            now(),
        );
        assert_eq!(
            kept_utc(&o),
            set(&["2022-03-01 00:00", "2022-09-01 00:00", "2023-05-05 06:00"])
        );
        assert_eq!(
            reasons_of(&o, "2022-03-01 00:00"),
            ["has tags [release]", "has tags [v1]"]
        );
        // The empty tag matches untagged snapshots.
        let o = apply(&h, &policy(serde_json::json!({"tags": [""]})), now());
        assert_eq!(o.removed().count(), 3);
        // Tags combine with counted rules without using their counts.
        let o = apply(
            &h,
            &policy(serde_json::json!({"tags": ["release"], "last": 1})),
            now(),
        );
        assert_eq!(
            kept_utc(&o),
            set(&["2022-03-01 00:00", "2022-09-01 00:00", "2023-12-31 18:00"])
        );
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let h = history();
        let p = Policy::default();
        assert!(p.is_empty());
        let o = apply(&h[..10], &p, now());
        assert_eq!(o.kept().count(), 10);
        assert!(o.kept().all(|d| d.reasons == ["policy is empty"]));
        assert!(policy(serde_json::json!({})).is_empty());
        // A zero duration or count is "off".
        assert!(policy(serde_json::json!({"daily": 0, "within": "0d"})).is_empty());
    }

    #[test]
    fn grouping() {
        let mut all = history();
        let db: Vec<SnapshotWithId> = (0..4)
            .map(|i| {
                let mut s = snap(10_000 + i, t("2023-06-01T00:00:00Z"), "db", &[]);
                s.snap.time += Duration::days(i as i64);
                if i % 2 == 1 {
                    s.snap.paths = vec!["/var/lib/pg".into(), "/etc".into()];
                }
                s
            })
            .collect();
        all.extend(db);
        let groups = group(&all, GroupBy::default());
        let keys: Vec<String> = groups.iter().map(|g| g.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "(host [db], paths [/etc, /var/lib/pg])",
                "(host [db], paths [/srv])",
                "(host [web], paths [/srv])"
            ]
        );
        let p = policy(serde_json::json!({"last": 1}));
        let kept: usize = groups
            .iter()
            .map(|g| apply(g.snapshots.iter().copied(), &p, now()).kept().count())
            .sum();
        assert_eq!(kept, 3);

        let by_host: GroupBy = "host".parse().expect("group-by");
        let groups = group(&all, by_host);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].key.paths, None);
        assert_eq!(groups[0].snapshots.len(), 4);
        let o = apply(groups[0].snapshots.iter().copied(), &p, now());
        assert_eq!(o.kept().count(), 1);
        assert_eq!(
            o.kept().next().map(|d| d.snapshot.snap.time),
            Some(t("2023-06-04T00:00:00Z"))
        );

        let none: GroupBy = "".parse().expect("group-by");
        let groups = group(&all, none);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].key.to_string(), "(all snapshots)");

        let by_tags: GroupBy = "tags".parse().expect("group-by");
        let groups = group(&all, by_tags);
        let keys: Vec<String> = groups.iter().map(|g| g.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "(tags [])",
                "(tags [release])",
                "(tags [release, v1])",
                "(tags [v1])"
            ]
        );
        assert_eq!(by_tags.to_string(), "tags");
        assert_eq!(GroupBy::default().to_string(), "host,paths");
        assert!("hosts,colour".parse::<GroupBy>().is_err());
    }

    #[test]
    fn policy_from_config_and_display() {
        let p = policy(serde_json::json!({"daily": 7, "weekly": 4, "monthly": 12}));
        assert_eq!(
            p.to_string(),
            "keep 7 daily, 4 weekly, 12 monthly snapshots"
        );
        let p = policy(serde_json::json!({
            "last": 2, "yearly": "unlimited", "within": "1y6m", "within_daily": "7d",
            "tags": ["a,b", ["c"]]
        }));
        assert_eq!(p.yearly, -1);
        assert_eq!(
            p.tags,
            [
                TagList(vec!["a".into(), "b".into()]),
                TagList(vec!["c".into()])
            ]
        );
        assert_eq!(
            p.to_string(),
            "keep 2 latest, all yearly snapshots, daily snapshots within 7d and all snapshots \
             with tags [a, b] or [c] and all snapshots within 1y6m of the newest"
        );
        // Round trip through JSON.
        let back: Policy =
            serde_json::from_value(serde_json::to_value(&p).expect("to JSON")).expect("back");
        assert_eq!(back, p);
        for bad in [
            serde_json::json!({"daily": -2}),
            serde_json::json!({"daily": "lots"}),
            serde_json::json!({"dayly": 7}),
            serde_json::json!({"within": "3x"}),
            serde_json::json!({"within": "-3d"}),
        ] {
            assert!(
                serde_json::from_value::<Policy>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(Policy {
            daily: -3,
            ..Policy::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn durations_parse_and_print() {
        let d: KeepDuration = "1y6m2w3d4h".parse().expect("duration");
        assert_eq!(
            d,
            KeepDuration {
                years: 1,
                months: 6,
                weeks: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(d.to_string(), "1y6m2w3d4h");
        assert_eq!("36h".parse::<KeepDuration>().map(|d| d.hours), Ok(36));
        for bad in [
            "",
            "5",
            "d",
            "1d1d",
            "1.5d",
            "3 days",
            "-1d",
            "99999999999d",
        ] {
            assert!(bad.parse::<KeepDuration>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_count("unlimited"), Ok(-1));
        assert_eq!(parse_count("-1"), Ok(-1));
        assert_eq!(parse_count("12"), Ok(12));
        assert!(parse_count("-2").is_err());
        assert!(parse_count("x").is_err());
        assert_eq!(
            parse_count("99999999999"),
            Err(PolicyError::CountTooLarge("99999999999".into()))
        );
    }
}
