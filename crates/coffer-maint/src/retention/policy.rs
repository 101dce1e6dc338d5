//! The keep policy: its rules and how it reads and prints.

use super::*;

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
