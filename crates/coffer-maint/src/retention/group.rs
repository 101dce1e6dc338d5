//! Grouping snapshots (by host, paths, tags) before a policy is applied to each group.

use super::*;

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
