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
