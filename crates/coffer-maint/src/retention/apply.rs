//! Applying a policy to one group: which snapshots each rule keeps, and why.

use super::*;

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

pub(super) type Bucketer = fn(&DateTime<FixedOffset>, usize) -> i64;

// Bucket values use the snapshot's own offset: chrono's Datelike/Timelike on a
// DateTime<FixedOffset> read the local fields, as Go's time methods do.
pub(super) fn bucket_hour(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    bucket_day(t, 0) * 100 + i64::from(t.hour())
}

pub(super) fn bucket_day(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}

pub(super) fn bucket_week(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    let w = t.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}

pub(super) fn bucket_month(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 100 + i64::from(t.month())
}

pub(super) fn bucket_year(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year())
}

pub(super) fn bucket_always(_: &DateTime<FixedOffset>, nr: usize) -> i64 {
    nr as i64
}

pub(super) struct CountRule {
    count: i32,
    bucket: Bucketer,
    last: Option<i64>,
    reason: &'static str,
}

pub(super) struct WithinRule {
    since: Option<Option<DateTime<FixedOffset>>>,
    within: KeepDuration,
    bucket: Bucketer,
    last: Option<i64>,
    reason: &'static str,
}

/// The newest snapshot time that is not in the future (restic's `findLatestTimestamp`).
pub(super) fn latest_time(
    snaps: &[&SnapshotWithId],
    now: DateTime<Utc>,
) -> Option<DateTime<FixedOffset>> {
    snaps.iter().map(|s| s.snap.time).filter(|t| *t < now).max()
}

/// Whether `t` is inside a `within` span starting at `since` (None: the span reaches back
/// past the calendar, or no snapshot is in the past; then everything is inside, as with restic,
/// whose zero "latest" time makes every snapshot qualify).
pub(super) fn inside(t: &DateTime<FixedOffset>, since: Option<DateTime<FixedOffset>>) -> bool {
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
