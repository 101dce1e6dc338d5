//! Counts (`-1` or `unlimited` for all) and tag lists of a policy.

use super::*;

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

pub(super) fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
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

pub(super) fn is_zero(n: &i32) -> bool {
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
