//! A job's croner schedule in the two other syntaxes that can run it: systemd `OnCalendar=`
//! specs and the five crontab time fields.
//!
//! The translation follows croner's semantics, which the daemon uses, not any one cron's:
//! when both day-of-month and day-of-week are restricted (neither is exactly `*` or `?`) a
//! day matches when EITHER does, unless day-of-week starts with croner's `+`, which makes it
//! AND. systemd ANDs the parts of one `OnCalendar=`, so the OR case becomes two specs.

use std::collections::BTreeSet;

use chrono::{Offset, TimeZone};

/// The days a schedule runs on, after croner's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Days {
    /// Every day.
    Any,
    /// Day-of-month only (day-of-week is `*`).
    Month,
    /// Day-of-week only (day-of-month is `*`).
    Week,
    /// Both restricted: either matching is enough (croner's and cron's default).
    Either,
    /// Both must match (croner's `+` before day-of-week).
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MonthDays {
    Set(Vec<u8>),
    /// croner's `L`: the last day of the month.
    Last,
}

/// A schedule reduced to sets of values, from which both output syntaxes are rendered.
#[derive(Debug, Clone)]
struct Parsed {
    seconds: Vec<u8>,
    minutes: Vec<u8>,
    hours: Vec<u8>,
    month_days: MonthDays,
    months: Vec<u8>,
    /// 0 = Sunday .. 6 = Saturday.
    weekdays: Vec<u8>,
    days: Days,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// systemd's names, Monday first as systemd orders them.
const SYSTEMD_WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn parse(expr: &str) -> Result<Parsed, String> {
    // Reject what croner rejects with croner's own message before reading it ourselves.
    crate::jobs::parse_schedule(expr)?;
    let upper = expr.trim().to_uppercase();
    let expanded = match upper.as_str() {
        "@YEARLY" | "@ANNUALLY" => "0 0 1 1 *",
        "@MONTHLY" => "0 0 1 * *",
        "@WEEKLY" => "0 0 * * 0",
        "@DAILY" => "0 0 * * *",
        "@HOURLY" => "0 * * * *",
        other => other,
    };
    let mut f: Vec<String> = expanded.split_whitespace().map(String::from).collect();
    if f.len() == 5 {
        f.insert(0, "0".into());
    }
    if f.len() != 6 {
        return Err(format!("{expr:?} does not have 5 or 6 fields"));
    }
    for (i, name) in MONTHS.iter().enumerate() {
        f[4] = f[4].replace(name, &(i + 1).to_string());
    }
    for (i, name) in WEEKDAYS.iter().enumerate() {
        f[5] = f[5].replace(name, &i.to_string());
    }
    let mut both = false;
    if let Some(rest) = f[5].strip_prefix('+') {
        both = true;
        f[5] = rest.to_string();
    }
    // croner reads `?` as `*`, including for the "is it unrestricted" test below.
    f[3] = f[3].replace('?', "*");
    f[5] = f[5].replace('?', "*");
    let unsupported = |what: &str| {
        Err(format!(
            "{expr:?} uses croner's {what}, which has no systemd OnCalendar= or cron form"
        ))
    };
    if f[3].contains('W') {
        return unsupported("W (nearest weekday)");
    }
    if f[5].contains('#') {
        return unsupported("# (nth weekday of the month)");
    }
    if f[5].contains('L') {
        return unsupported("L in day-of-week (last weekday of the month)");
    }
    if f[3] != "L" && f[3].contains('L') {
        return unsupported("L combined with other days of the month");
    }
    for (i, field) in f.iter().enumerate() {
        let last_day = i == 3 && field == "L";
        if !(last_day || field.chars().all(|c| "0123456789*,/-".contains(c))) {
            return Err(format!(
                "{expr:?}: field {field:?} is not plain cron syntax"
            ));
        }
    }
    let month_days = if f[3] == "L" {
        MonthDays::Last
    } else {
        MonthDays::Set(values(&f[3], 1, 31)?)
    };
    let weekdays: BTreeSet<u8> = values(&f[5], 0, 7)?.into_iter().map(|d| d % 7).collect();
    let weekdays: Vec<u8> = weekdays.into_iter().collect();
    let dom_star = f[3] == "*";
    let dow_star = f[5] == "*";
    let days = if both {
        Days::Both
    } else if dom_star && dow_star {
        Days::Any
    } else if dom_star {
        Days::Week
    } else if dow_star {
        Days::Month
    } else if month_days == MonthDays::Set((1..=31).collect()) || weekdays.len() == 7 {
        // OR with a field that matches every day matches every day.
        Days::Any
    } else {
        Days::Either
    };
    Ok(Parsed {
        seconds: values(&f[0], 0, 59)?,
        minutes: values(&f[1], 0, 59)?,
        hours: values(&f[2], 0, 23)?,
        month_days,
        months: values(&f[4], 1, 12)?,
        weekdays,
        days,
    })
}

/// The values one field selects, the way croner reads `*`, `a`, `a-b`, `*/n`, `a/n`, `a-b/n`
/// and lists of them.
fn values(field: &str, min: u8, max: u8) -> Result<Vec<u8>, String> {
    let num = |s: &str| -> Result<u8, String> {
        s.parse::<u8>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{s:?} is not a number from {min} to {max}"))
    };
    let mut set = BTreeSet::new();
    for part in field.split(',').filter(|p| !p.is_empty()) {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u8>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("step {s:?} in {part:?} is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else if part.contains('/') {
            (num(range)?, max)
        } else {
            let n = num(range)?;
            (n, n)
        };
        if a > b {
            return Err(format!("range {part:?} runs backwards"));
        }
        set.extend((a..=b).step_by(step as usize));
    }
    if set.is_empty() {
        return Err(format!("field {field:?} selects nothing"));
    }
    Ok(set.into_iter().collect())
}

/// How a set of values is written, syntax aside.
enum Shape {
    All,
    /// start, end, step (step > 1).
    Progression(u8, u8, u8),
    /// Runs of consecutive values, (first, last).
    Runs(Vec<(u8, u8)>),
}

fn shape(v: &[u8], min: u8, max: u8) -> Shape {
    if v.len() == (max - min) as usize + 1 {
        return Shape::All;
    }
    if v.len() >= 2 {
        let (first, last, step) = (v[0], v[v.len() - 1], v[1] - v[0]);
        // Two values read better as a step only as a whole `*/n` of a time field (`*/30`),
        // not as `01/6` for January and July.
        let whole =
            max - min >= 23 && first == min && u16::from(last) + u16::from(step) > u16::from(max);
        if step > 1 && (v.len() >= 3 || whole) && v.windows(2).all(|w| w[1] - w[0] == step) {
            return Shape::Progression(first, last, step);
        }
    }
    Shape::Runs(runs(v))
}

/// Consecutive values grouped, as (first, last).
fn runs(v: &[u8]) -> Vec<(u8, u8)> {
    let mut out: Vec<(u8, u8)> = Vec::new();
    for &x in v {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == x => *end = x,
            _ => out.push((x, x)),
        }
    }
    out
}

/// One field in OnCalendar syntax: `*`, `05/20`, `09..17/2`, `01,15`, `01..05`.
fn systemd_field(v: &[u8], min: u8, max: u8) -> String {
    match shape(v, min, max) {
        Shape::All => "*".into(),
        // `a/n` repeats to the field's end (for days: the month's), `a..b/n` stops at b.
        Shape::Progression(a, b, n) if u16::from(b) + u16::from(n) > u16::from(max) => {
            format!("{a:02}/{n}")
        }
        Shape::Progression(a, b, n) => format!("{a:02}..{b:02}/{n}"),
        Shape::Runs(runs) => runs
            .iter()
            .flat_map(|&(a, b)| match b - a {
                0 => vec![format!("{a:02}")],
                1 => vec![format!("{a:02}"), format!("{b:02}")],
                _ => vec![format!("{a:02}..{b:02}")],
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Weekdays in OnCalendar syntax (`Mon..Fri`, `Sat,Sun`), which has no steps.
fn systemd_weekdays(days: &[u8]) -> String {
    // systemd's week starts on Monday, so Sunday (0) sorts last.
    let mut monday_first: Vec<u8> = days.iter().map(|&d| (d + 6) % 7).collect();
    monday_first.sort_unstable();
    runs(&monday_first)
        .iter()
        .flat_map(|&(a, b)| {
            let name = |i: u8| SYSTEMD_WEEKDAYS[i as usize];
            match b - a {
                0 => vec![name(a).to_string()],
                1 => vec![name(a).to_string(), name(b).to_string()],
                _ => vec![format!("{}..{}", name(a), name(b))],
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The `OnCalendar=` specs of a schedule: one, or two when croner's day-of-month OR
/// day-of-week rule applies (a timer fires on the union of its specs).
pub fn on_calendar(expr: &str, timezone: Option<&str>) -> Result<Vec<String>, String> {
    let p = parse(expr)?;
    let time = format!(
        "{}:{}:{}",
        systemd_field(&p.hours, 0, 23),
        systemd_field(&p.minutes, 0, 59),
        systemd_field(&p.seconds, 0, 59)
    );
    let months = systemd_field(&p.months, 1, 12);
    let date = |with_days: bool| match (&p.month_days, with_days) {
        (MonthDays::Last, true) => format!("*-{months}~01"),
        (MonthDays::Set(d), true) => format!("*-{months}-{}", systemd_field(d, 1, 31)),
        (_, false) => format!("*-{months}-*"),
    };
    let week = || {
        if p.weekdays.len() == 7 {
            String::new()
        } else {
            format!("{} ", systemd_weekdays(&p.weekdays))
        }
    };
    let specs = match p.days {
        Days::Any => vec![date(false)],
        Days::Month => vec![date(true)],
        Days::Week => vec![format!("{}{}", week(), date(false))],
        Days::Both => vec![format!("{}{}", week(), date(true))],
        Days::Either => vec![date(true), format!("{}{}", week(), date(false))],
    };
    let tz = timezone.map(|t| format!(" {t}")).unwrap_or_default();
    Ok(specs
        .into_iter()
        .map(|d| format!("{d} {time}{tz}"))
        .collect())
}

/// One field in crontab syntax. `star_ok` is false for the day fields, where a leading `*`
/// would switch cron from OR to AND.
fn cron_field(v: &[u8], min: u8, max: u8, star_ok: bool) -> String {
    match shape(v, min, max) {
        Shape::All => "*".into(),
        Shape::Progression(a, b, n)
            if star_ok && a == min && u16::from(b) + u16::from(n) > u16::from(max) =>
        {
            format!("*/{n}")
        }
        Shape::Progression(a, b, n) => format!("{a}-{b}/{n}"),
        Shape::Runs(runs) => runs
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The five crontab time fields of a schedule.
pub fn cron_fields(expr: &str) -> Result<String, String> {
    let p = parse(expr)?;
    if p.seconds != [0] {
        return Err(format!(
            "{expr:?} runs at seconds other than :00, and cron has no seconds: use --systemd or the daemon, or a 5-field schedule"
        ));
    }
    let month_days = match &p.month_days {
        MonthDays::Set(d) => d,
        MonthDays::Last => {
            return Err(format!(
                "{expr:?} uses L (last day of the month), which cron cannot express: use --systemd or the daemon"
            ))
        }
    };
    let dom = cron_field(month_days, 1, 31, false);
    let dow = cron_field(&p.weekdays, 0, 6, false);
    let (dom, dow) = match p.days {
        Days::Any => ("*".to_string(), "*".to_string()),
        Days::Month => (dom, "*".into()),
        Days::Week => ("*".into(), dow),
        Days::Either => (dom, dow),
        Days::Both if p.weekdays.len() == 7 => (dom, "*".into()),
        Days::Both if month_days.len() == 31 => ("*".into(), dow),
        Days::Both => {
            return Err(format!(
                "{expr:?} requires day-of-month AND day-of-week (croner's +), which cron cannot express: use --systemd or the daemon"
            ))
        }
    };
    Ok(format!(
        "{} {} {dom} {} {dow}",
        cron_field(&p.minutes, 0, 59, true),
        cron_field(&p.hours, 0, 23, true),
        cron_field(&p.months, 1, 12, true)
    ))
}

/// Whether `tz` keeps the same UTC offset as the local zone (chrono's: `TZ`, else
/// /etc/localtime) at every hour of the coming year. Comparing offsets rather than names
/// accepts aliases such as `UTC` and `Etc/UTC`, and catches zones whose daylight saving time
/// starts on other dates.
pub fn same_as_host<Z: TimeZone>(tz: &Z) -> bool {
    let now = chrono::Utc::now().naive_utc();
    (0..366 * 24).all(|h| {
        let t = now + chrono::Duration::hours(h);
        chrono::Local.offset_from_utc_datetime(&t).fix() == tz.offset_from_utc_datetime(&t).fix()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDateTime, Utc};
    use std::process::Command as Process;

    fn oc(expr: &str) -> Vec<String> {
        on_calendar(expr, None).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn on_calendar_forms() {
        assert_eq!(oc("0 2 * * *"), ["*-*-* 02:00:00"]);
        assert_eq!(oc("@daily"), ["*-*-* 00:00:00"]);
        assert_eq!(oc("*/15 * * * *"), ["*-*-* *:00/15:00"]);
        assert_eq!(oc("0 */15 * * * *"), ["*-*-* *:00/15:00"]);
        assert_eq!(oc("*/10 * * * * *"), ["*-*-* *:*:00/10"]);
        assert_eq!(oc("*/30 * * * * *"), ["*-*-* *:*:00/30"]);
        assert_eq!(oc("0 8,12 * * *"), ["*-*-* 08,12:00:00"]);
        assert_eq!(oc("5/20 * * * *"), ["*-*-* *:05/20:00"]);
        assert_eq!(oc("0 9-17/2 * * *"), ["*-*-* 09..17/2:00:00"]);
        assert_eq!(oc("0 0-30/10 1 * * *"), ["*-*-* 01:00..30/10:00"]);
        assert_eq!(oc("0 8,12,18 * * *"), ["*-*-* 08,12,18:00:00"]);
        assert_eq!(oc("0 1-4,6 * * *"), ["*-*-* 01..04,06:00:00"]);
        assert_eq!(
            on_calendar("30 1 * * 1-5", Some("Asia/Shanghai")).unwrap(),
            ["Mon..Fri *-*-* 01:30:00 Asia/Shanghai"]
        );
        assert_eq!(oc("0 0 * * 7"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(oc("0 0 * * 0"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(oc("0 0 * * sat,SUN"), ["Sat,Sun *-*-* 00:00:00"]);
        assert_eq!(oc("0 0 * * 5-7"), ["Fri..Sun *-*-* 00:00:00"]);
        assert_eq!(oc("0 0 * * MON-FRI"), ["Mon..Fri *-*-* 00:00:00"]);
        assert_eq!(oc("0 0 1 JAN,jul *"), ["*-01,07-01 00:00:00"]);
        assert_eq!(oc("0 0 1 */3 *"), ["*-01/3-01 00:00:00"]);
        assert_eq!(oc("0 0 L * *"), ["*-*~01 00:00:00"]);
        assert_eq!(oc("0 0 ? * 1"), ["Mon *-*-* 00:00:00"]);
        // cron's OR of the two day fields becomes two specs.
        assert_eq!(
            oc("0 3 1,15 * 0"),
            ["*-*-01,15 03:00:00", "Sun *-*-* 03:00:00"]
        );
        // croner counts `*/2` as restricted (only exactly `*` is not), so this is OR too.
        assert_eq!(
            oc("0 0 */2 * 1"),
            ["*-*-01/2 00:00:00", "Mon *-*-* 00:00:00"]
        );
        // OR with a field that allows every day.
        assert_eq!(oc("0 0 1-31 * 1"), ["*-*-* 00:00:00"]);
        // croner's `+`: AND.
        assert_eq!(oc("0 0 1-7 * +1"), ["Mon *-*-01..07 00:00:00"]);
    }

    #[test]
    fn unsupported_schedules_name_the_extension() {
        for (expr, what) in [
            ("0 0 15W * *", "W (nearest weekday)"),
            ("0 0 * * 5#2", "# (nth weekday"),
            ("0 0 * * 5L", "L in day-of-week"),
            ("0 0 1,L * *", "L combined"),
        ] {
            let e = on_calendar(expr, None).unwrap_err();
            assert!(e.contains(what) && e.contains(expr), "{expr}: {e}");
        }
        assert!(on_calendar("0 25 * * *", None)
            .unwrap_err()
            .contains("not a valid cron expression"));
    }

    #[test]
    fn cron_forms() {
        let c = |e: &str| cron_fields(e).unwrap_or_else(|x| panic!("{e}: {x}"));
        assert_eq!(c("0 2 * * *"), "0 2 * * *");
        assert_eq!(c("0 */15 * * * *"), "*/15 * * * *");
        assert_eq!(c("0 */30 * * * *"), "*/30 * * * *");
        assert_eq!(c("5/20 * * * *"), "5-45/20 * * * *");
        assert_eq!(c("0 0 * * SAT,SUN"), "0 0 * * 0,6");
        assert_eq!(c("0 0 * * 7"), "0 0 * * 0");
        assert_eq!(c("0 3 1,15 * 0"), "0 3 1,15 * 0");
        // A leading `*` in a day field would make cron AND the two fields.
        assert_eq!(c("0 0 */2 * 1"), "0 0 1-31/2 * 1");
        assert_eq!(c("0 0 1-31 * 1"), "0 0 * * *");
        assert_eq!(c("@monthly"), "0 0 1 * *");
        assert!(cron_fields("*/10 * * * * *")
            .unwrap_err()
            .contains("cron has no seconds"));
        assert!(cron_fields("0 0 L * *")
            .unwrap_err()
            .contains("L (last day"));
        assert!(cron_fields("0 0 1-7 * +1").unwrap_err().contains("AND"));
    }

    /// Instants systemd-analyze lists for a spec, with TZ=UTC so they print in UTC.
    fn analyze(spec: &str, n: usize) -> Option<Vec<DateTime<Utc>>> {
        let out = Process::new("systemd-analyze")
            .env("TZ", "UTC")
            .args(["calendar", &format!("--iterations={n}"), spec])
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "systemd-analyze rejects {spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Some(
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(": ")?;
                    let k = k.trim();
                    (k == "Next elapse" || k.starts_with("Iter. #")).then_some(v.trim())
                })
                .map(|v| {
                    let v = v.strip_suffix(" UTC").unwrap_or(v);
                    NaiveDateTime::parse_from_str(v, "%a %Y-%m-%d %H:%M:%S")
                        .unwrap_or_else(|e| panic!("{v:?}: {e}"))
                        .and_utc()
                })
                .collect(),
        )
    }

    /// The next `n` occurrences by croner, as the daemon computes them.
    fn croner_next(expr: &str, tz: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let cron = crate::jobs::parse_schedule(expr).unwrap();
        let tz = crate::jobs::parse_timezone(tz).unwrap();
        let mut t = from.with_timezone(&tz);
        (0..n)
            .map(|_| {
                t = cron.find_next_occurrence(&t, false).unwrap();
                t.with_timezone(&Utc)
            })
            .collect()
    }

    /// The conversion is checked against systemd's own calendar arithmetic: the instants
    /// systemd-analyze lists for the generated specs must be croner's next occurrences.
    #[test]
    fn conversions_agree_with_systemd_analyze() {
        const N: usize = 5;
        let cases = [
            ("0 2 * * *", "UTC"),
            ("*/15 * * * *", "UTC"),
            ("*/10 * * * * *", "UTC"),
            ("0 */12 * * *", "Asia/Kolkata"),
            ("5/20 9-17/2 * * *", "UTC"),
            ("30 1 * * 1-5", "Asia/Shanghai"),
            ("0 3 1,15 * 0", "UTC"),
            ("0 4 1,15 * SUN", "America/New_York"),
            ("0 0 */2 * 1", "Europe/Berlin"),
            ("0 0 L * *", "UTC"),
            ("0 6 1-7 * +1", "UTC"),
            ("0 0 1 */3 *", "Australia/Sydney"),
            ("15 12 29 2 *", "UTC"),
            ("@weekly", "UTC"),
            // The day clocks go back: both run at the first 02:30. (The day they go forward
            // they differ: croner runs a 02:30 that does not exist at 03:00, systemd skips it;
            // README.md says so.)
            ("30 2 31 10 *", "Europe/Berlin"),
        ];
        if Process::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("systemd-analyze is not installed: conversions not checked against it");
            return;
        }
        for (expr, tz) in cases {
            let specs = on_calendar(expr, Some(tz)).unwrap();
            // systemd-analyze counts from its own now; a second attempt covers an occurrence
            // falling between the two clocks.
            let mut last = None;
            for _ in 0..3 {
                // Whole seconds, as the daemon asks croner (it keeps a fraction it is given).
                let from =
                    chrono::DurationRound::duration_trunc(Utc::now(), chrono::Duration::seconds(1))
                        .unwrap();
                let mut sys: Vec<DateTime<Utc>> = specs
                    .iter()
                    .flat_map(|s| analyze(s, N).expect("systemd-analyze runs"))
                    .collect();
                sys.sort();
                sys.dedup();
                sys.truncate(N);
                let want = croner_next(expr, tz, from, N);
                if sys == want {
                    last = None;
                    break;
                }
                last = Some((sys, want));
            }
            if let Some((sys, want)) = last {
                panic!("{expr} ({tz}) as {specs:?}: systemd {sys:?}, croner {want:?}");
            }
        }
    }
}
