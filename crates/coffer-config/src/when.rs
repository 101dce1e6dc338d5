//! Points in time as people type them on a command line (`--time`, `--target-time`, `--at`,
//! `--from-time`): RFC 3339, PostgreSQL's own style with an offset (`2026-12-01 06:00:00+08`),
//! or a date and time without an offset, taken in the local time zone.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};

/// Parses a point in time; the error says which forms are accepted.
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let t = s.trim();
    if let Ok(v) = DateTime::parse_from_rfc3339(t) {
        return Ok(v);
    }
    // PostgreSQL prints offsets as +00 or +05:30.
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(v) = DateTime::parse_from_str(t, f) {
            return Ok(v);
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return chrono::Local
                .from_local_datetime(&n)
                .single()
                .map(|v| v.fixed_offset())
                .ok_or_else(|| {
                    format!("{s:?} is ambiguous or does not exist in the local time zone (a clock change): add an offset such as +08:00")
                });
        }
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-12-01T06:00:00+08:00) or \"YYYY-MM-DD HH:MM[:SS[.ffffff]][+HH[:MM]]\" (local time without an offset)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_forms() {
        let utc = |s| parse_time(s).unwrap().timestamp();
        assert_eq!(utc("2026-12-01T06:00:00Z"), 1_796_104_800);
        assert_eq!(utc("2026-12-01 14:00:00+08"), 1_796_104_800);
        assert_eq!(utc("2026-12-01 14:00:00.5+08:00"), 1_796_104_800);
        assert!(parse_time("2026-12-01 14:00").is_ok());
        assert!(parse_time("2026-12-01 14:00:07.25").is_ok());
        let e = parse_time("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
