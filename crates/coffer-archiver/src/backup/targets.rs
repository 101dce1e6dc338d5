//! The backup targets as given: made absolute, cleaned lexically, deduplicated, and arranged
//! as a tree of the directories above them.

use super::*;

/// A tree of backup targets and the directories above them.
#[derive(Default)]
pub(super) struct VDir {
    pub(super) children: BTreeMap<Vec<u8>, VEntry>,
}

pub(super) enum VEntry {
    Target(PathBuf),
    Dir(PathBuf, VDir),
}

pub(super) fn normalize(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BackupError> {
    let cwd = std::env::current_dir().map_err(|e| BackupError::Target {
        path: ".".into(),
        source: e,
    })?;
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        };
        // Lexical clean-up of `.` and `..` (not following symlinks, as restic does).
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::Normal(n) => clean.push(n),
                _ => {}
            }
        }
        if let Err(e) = std::fs::symlink_metadata(&clean) {
            return Err(BackupError::Target {
                path: p.clone(),
                source: e,
            });
        }
        out.push(clean);
    }
    out.sort();
    out.dedup();
    // A target inside another target is already covered.
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok(out)
}
