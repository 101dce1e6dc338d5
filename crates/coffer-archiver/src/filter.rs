//! Path patterns for `--exclude` on backup and `--include`/`--exclude` on restore, with
//! restic's meaning: a pattern starting with `/` is anchored at the root, any other pattern
//! matches at any depth (`*.log`, `cache/tmp`), `*` stops at `/`, `**` crosses directories,
//! and a pattern that matches a directory covers everything below it.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A bad pattern.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {source}")]
pub struct PatternError {
    /// The pattern given.
    pub pattern: String,
    /// Why globset rejected it.
    #[source]
    pub source: globset::Error,
}

/// A compiled list of patterns.
#[derive(Clone, Debug)]
pub struct PatternSet {
    set: GlobSet,
    patterns: Vec<String>,
}

impl PatternSet {
    /// Compiles patterns (empty lines and `#` comments are skipped).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<PatternSet, PatternError> {
        let mut b = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim_end_matches(['\r', '\n']);
            let t = p.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let p = p.trim_end_matches('/');
            let glob = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("**/{p}")
            };
            let g = GlobBuilder::new(&glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| PatternError {
                    pattern: p.to_string(),
                    source,
                })?;
            b.add(g);
            kept.push(p.to_string());
        }
        let set = b.build().map_err(|source| PatternError {
            pattern: kept.join(", "),
            source,
        })?;
        Ok(PatternSet {
            set,
            patterns: kept,
        })
    }

    /// Patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True if there is no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` itself matches.
    pub fn matches(&self, path: &Path) -> bool {
        !self.is_empty() && self.set.is_match(path)
    }

    /// The indices (into [`PatternSet::patterns`]) of the patterns `path` itself matches.
    pub fn matching(&self, path: &Path) -> Vec<usize> {
        if self.is_empty() {
            return Vec::new();
        }
        self.set.matches(path)
    }

    /// Whether `path` or one of its ancestors matches.
    pub fn matches_or_below(&self, path: &Path) -> bool {
        !self.is_empty() && path.ancestors().any(|a| self.set.is_match(a))
    }

    /// Whether `path` could contain a match (used to keep walking parent directories of an
    /// include pattern). Conservative: true unless an anchored pattern rules it out.
    pub fn may_contain_match(&self, path: &Path) -> bool {
        let s = path.to_string_lossy();
        self.patterns.iter().any(|p| {
            if !p.starts_with('/') {
                return true;
            }
            // The directory is on the way to an anchored pattern when its components agree
            // with the pattern's leading components (wildcards agree with anything).
            let pc: Vec<&str> = p.split('/').collect();
            let dc: Vec<&str> = s.split('/').collect();
            dc.len() <= pc.len()
                && dc
                    .iter()
                    .zip(&pc)
                    .all(|(d, p)| p.contains(['*', '?', '[']) || d == p)
        })
    }
}

/// Reads patterns from a file, one per line.
pub fn read_pattern_file(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(|l| l.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_semantics() {
        let p = PatternSet::new(&["*.log", "/srv/data/tmp", "cache/x*", "# comment", ""]).unwrap();
        assert_eq!(p.patterns().len(), 3);
        assert!(p.matches(Path::new("/var/log/a.log")));
        assert!(!p.matches(Path::new("/var/log/a.log.gz")));
        assert!(p.matches(Path::new("/srv/data/tmp")));
        assert!(!p.matches(Path::new("/other/srv/data/tmp")));
        assert!(p.matches(Path::new("/home/u/cache/xyz")));
        assert!(p.matches_or_below(Path::new("/srv/data/tmp/deep/file")));
        assert!(!p.matches_or_below(Path::new("/srv/data/keep")));
        let only = PatternSet::new(&["/srv/data/tmp"]).unwrap();
        assert!(only.may_contain_match(Path::new("/srv/data")));
        assert!(!only.may_contain_match(Path::new("/etc")));
    }
}
