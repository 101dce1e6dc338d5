//! Calendar durations (`1y6m2w3d4h`) for `within` rules.

use super::*;

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
