//! `coffer find PATTERN...`: entries of snapshots whose path matches a glob pattern, with
//! restic's matching rules (a port of restic's `filter.Match`): a pattern is split at `/` and
//! must match consecutive path components, anywhere in the path unless it starts with `/`;
//! `*`, `?`, `[...]` work within one component and `**` spans any number of them. So `*.conf`
//! matches by base name, and also everything below a directory named `x.conf`, as in restic.
//! `--tree ID` / `--blob ID` instead report where trees or data blobs (ids or prefixes) are
//! referenced.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use anyhow::bail;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::{Node, NodeType, Tree};
use coffer_repo::{Id, Repository};

use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Glob patterns (any of them matches); with --tree or --blob, ids or id prefixes
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id, prefix or "latest"; repeatable); default: all snapshots
    /// passing the filter
    #[arg(short = 's', long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Match patterns regardless of case
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Show mode and owner too
    #[arg(short, long)]
    pub long: bool,
    /// The patterns are tree ids: show which directories are these trees
    #[arg(long, conflicts_with = "blob")]
    pub tree: bool,
    /// The patterns are data blob ids: show which files contain these blobs
    #[arg(long)]
    pub blob: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

// ---------------------------------------------------------------------------------------------
// restic's pattern matching

/// Go's `filepath.Match` for one path component.
fn glob(pat: &[char], s: &[char]) -> anyhow::Result<bool> {
    let (mut p, mut i) = (0, 0);
    // Backtracking point for the last '*': (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p + 1, i));
                    p += 1;
                    continue;
                }
                '?' if i < s.len() => {
                    p += 1;
                    i += 1;
                    continue;
                }
                '[' if i < s.len() => {
                    let (ok, next) = class(pat, p, s[i])?;
                    if ok {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pat.len() && i < s.len() && pat[p + 1] == s[i] => {
                    p += 2;
                    i += 1;
                    continue;
                }
                '\\' if p + 1 >= pat.len() => bail!("syntax error in pattern: trailing \\"),
                c if c != '?' && c != '[' && c != '\\' && i < s.len() && c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                '[' => {
                    // Validate the class even when the string is exhausted (Go reports it).
                    class(pat, p, ' ')?;
                }
                _ => {}
            }
        } else if i == s.len() {
            return Ok(true);
        }
        match &mut star {
            Some((sp, si)) if *si < s.len() => {
                *si += 1;
                p = *sp;
                i = *si;
            }
            _ => {
                // Go checks the rest of the pattern for syntax errors; do the same for '['.
                for (k, c) in pat.iter().enumerate().skip(p) {
                    if *c == '[' {
                        class(pat, k, ' ')?;
                    }
                }
                return Ok(false);
            }
        }
    }
}

/// Matches `c` against the character class starting at `pat[start] == '['`; returns whether
/// it matched and the index after the class.
fn class(pat: &[char], start: usize, c: char) -> anyhow::Result<(bool, usize)> {
    let mut k = start + 1;
    let negated = pat.get(k) == Some(&'^');
    if negated {
        k += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let Some(&ch) = pat.get(k) else {
            bail!("syntax error in pattern: unterminated [");
        };
        if ch == ']' && !first {
            k += 1;
            break;
        }
        first = false;
        let lo = escaped(pat, &mut k)?;
        let mut hi = lo;
        if pat.get(k) == Some(&'-') && pat.get(k + 1).is_some_and(|c| *c != ']') {
            k += 1;
            hi = escaped(pat, &mut k)?;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Ok((matched != negated, k))
}

fn escaped(pat: &[char], k: &mut usize) -> anyhow::Result<char> {
    let Some(&c) = pat.get(*k) else {
        bail!("syntax error in pattern: unterminated [");
    };
    if c == '\\' {
        *k += 1;
        let Some(&e) = pat.get(*k) else {
            bail!("syntax error in pattern: trailing \\");
        };
        *k += 1;
        return Ok(e);
    }
    *k += 1;
    Ok(c)
}

/// One pattern component: literal text is compared directly, as restic does.
#[derive(Clone, Debug)]
struct Part {
    chars: Vec<char>,
    simple: bool,
}

/// A pattern split at `/` after Go's `filepath.Clean`. An absolute pattern starts with an
/// empty part.
#[derive(Clone, Debug)]
struct Pattern(Vec<Part>);

fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

impl Pattern {
    fn parse(p: &str) -> Pattern {
        let cleaned = clean(p);
        // "/" cleans to itself and splits into two empty parts, like Go's strings.Split.
        Pattern(
            cleaned
                .split('/')
                .map(|s| Part {
                    simple: !s.contains(['\\', '[', ']', '*', '?']),
                    chars: s.chars().collect(),
                })
                .collect(),
        )
    }

    fn double_star(parts: &[Part]) -> Option<usize> {
        parts.iter().position(|p| p.chars == ['*', '*'])
    }

    /// restic's `filter.Match` on a path split at `/`.
    fn matches(&self, strs: &[Vec<char>]) -> anyhow::Result<bool> {
        Self::match_parts(&self.0, strs)
    }

    fn match_parts(parts: &[Part], strs: &[Vec<char>]) -> anyhow::Result<bool> {
        if let Some(pos) = Self::double_star(parts) {
            // Expand '**' into 0, 1, 2, ... single-component wildcards.
            let star = Part {
                chars: vec!['*'],
                simple: false,
            };
            let max = (strs.len() + 1).saturating_sub(parts.len());
            for n in 0..=max {
                let mut p: Vec<Part> = parts[..pos].to_vec();
                p.extend(std::iter::repeat_n(star.clone(), n));
                p.extend_from_slice(&parts[pos + 1..]);
                if Self::match_parts(&p, strs)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        if parts.is_empty() && strs.is_empty() {
            return Ok(true);
        }
        if parts.is_empty() || parts.len() > strs.len() {
            return Ok(false);
        }
        let max_offset = if parts[0].chars.is_empty() {
            0
        } else {
            strs.len() - parts.len()
        };
        'outer: for offset in (0..=max_offset).rev() {
            for i in (0..parts.len()).rev() {
                let ok = if parts[i].simple {
                    parts[i].chars == strs[offset + i]
                } else {
                    glob(&parts[i].chars, &strs[offset + i])?
                };
                if !ok {
                    continue 'outer;
                }
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// restic's `filter.ChildMatch`: whether something below the directory `strs` may match.
    fn child_may_match(&self, strs: &[Vec<char>]) -> anyhow::Result<bool> {
        if !self.0[0].chars.is_empty() {
            // A relative pattern may match at any depth.
            return Ok(true);
        }
        let mut strs = strs;
        if let Some(pos) = Self::double_star(&self.0) {
            if strs.len() >= pos {
                strs = &strs[..pos];
            }
        }
        let l = strs.len().min(self.0.len());
        Self::match_parts(&self.0[..l], strs)
    }
}

// ---------------------------------------------------------------------------------------------
// Walking

/// Trees already parsed, kept up to a bound so that many snapshots of one large tree are cheap
/// while memory stays bounded for huge ones.
struct TreeCache<'a> {
    repo: &'a Repository,
    trees: HashMap<Id, Arc<Tree>>,
    nodes: usize,
}

const CACHE_NODES: usize = 1_000_000;

impl TreeCache<'_> {
    fn get(&mut self, id: &Id) -> anyhow::Result<Arc<Tree>> {
        if let Some(t) = self.trees.get(id) {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(self.repo.load_tree(id)?);
        if self.nodes + t.nodes.len() <= CACHE_NODES {
            self.nodes += t.nodes.len();
            self.trees.insert(*id, Arc::clone(&t));
        }
        Ok(t)
    }
}

fn split_path(path: &str) -> Vec<Vec<char>> {
    path.split('/').map(|c| c.chars().collect()).collect()
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Output of one snapshot's matches, printed as they are found.
struct Out<W: Write> {
    w: W,
    json: bool,
    long: bool,
    quiet: bool,
    /// JSON: an array was opened.
    opened: bool,
    /// Matches in the current snapshot so far.
    hits: u64,
}

impl<W: Write> Out<W> {
    fn hit(&mut self, snap: &SnapshotWithId, path: &[u8], n: &Node) -> anyhow::Result<()> {
        if self.json {
            if self.hits == 0 {
                write!(
                    self.w,
                    "{}{{\"matches\":[",
                    if self.opened { "," } else { "[" }
                )?;
                self.opened = true;
            } else {
                write!(self.w, ",")?;
            }
            let mut v = serde_json::to_value(n)?;
            if let Some(m) = v.as_object_mut() {
                // restic's find output: the node without name, content and other bulk.
                for k in [
                    "name",
                    "extended_attributes",
                    "generic_attributes",
                    "device",
                    "content",
                    "subtree",
                ] {
                    m.remove(k);
                }
                m.insert(
                    "path".into(),
                    String::from_utf8_lossy(path).into_owned().into(),
                );
                m.insert("permissions".into(), super::ls::mode_string(n.mode).into());
            }
            write!(self.w, "{v}")?;
        } else {
            if self.hits == 0 && !self.quiet {
                writeln!(
                    self.w,
                    "Found matching entries in snapshot {} from {}",
                    snap.id.short(),
                    snap.snap.time.format("%Y-%m-%d %H:%M:%S")
                )?;
            }
            let size = if n.kind == NodeType::File { n.size } else { 0 };
            let mtime = n.mtime.format("%Y-%m-%d %H:%M:%S");
            if self.long {
                let who = |name: &str, id: u32| {
                    if name.is_empty() {
                        id.to_string()
                    } else {
                        name.to_string()
                    }
                };
                write!(
                    self.w,
                    "{} {:>8} {:>8} {size:>12} {mtime} ",
                    super::ls::mode_string(n.mode),
                    who(&n.user, n.uid),
                    who(&n.group, n.gid),
                )?;
            } else {
                write!(self.w, "{size:>12} {mtime} ")?;
            }
            // Names need not be UTF-8: print them as stored.
            self.w.write_all(path)?;
            if n.kind == NodeType::Symlink && self.long {
                self.w.write_all(b" -> ")?;
                self.w.write_all(&n.link_target)?;
            }
            self.w.write_all(b"\n")?;
        }
        self.hits += 1;
        Ok(())
    }

    /// Ends one snapshot's matches.
    fn end_snapshot(&mut self, snap: &SnapshotWithId) -> anyhow::Result<()> {
        if self.hits > 0 {
            if self.json {
                write!(
                    self.w,
                    "],\"hits\":{},\"snapshot\":\"{}\"}}",
                    self.hits,
                    snap.id.to_hex()
                )?;
            } else if !self.quiet {
                writeln!(self.w)?;
            }
        }
        self.hits = 0;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if self.json {
            writeln!(self.w, "{}", if self.opened { "]" } else { "[]" })?;
        }
        self.w.flush()?;
        Ok(())
    }
}

struct PatternSearch<'a, W: Write> {
    patterns: Vec<Pattern>,
    ignore_case: bool,
    cache: TreeCache<'a>,
    out: Out<W>,
}

impl<W: Write> PatternSearch<'_, W> {
    fn walk(&mut self, snap: &SnapshotWithId, tree: &Id, prefix: &[u8]) -> anyhow::Result<()> {
        let t = self.cache.get(tree)?;
        for n in &t.nodes {
            let path = join(prefix, &n.name);
            let mut text = String::from_utf8_lossy(&path).into_owned();
            if self.ignore_case {
                text = text.to_lowercase();
            }
            let strs = split_path(&text);
            let mut found = false;
            for p in &self.patterns {
                if p.matches(&strs)? {
                    found = true;
                    break;
                }
            }
            let is_dir = n.kind == NodeType::Dir;
            let mut descend = is_dir;
            if found {
                self.out.hit(snap, &path, n)?;
            } else if is_dir {
                let mut may = false;
                for p in &self.patterns {
                    if p.child_may_match(&strs)? {
                        may = true;
                        break;
                    }
                }
                descend = may;
            }
            if descend {
                if let Some(st) = n.subtree {
                    self.walk(snap, &st, &path)?;
                }
            }
        }
        Ok(())
    }
}

/// One place a searched tree or blob is referenced.
struct IdHit {
    kind: &'static str,
    id: Id,
    path: Vec<u8>,
    parent: Id,
}

struct IdSearch<'a> {
    prefixes: Vec<String>,
    blobs: bool,
    cache: TreeCache<'a>,
    /// Trees known to reference none of the ids anywhere below: skipped on every later visit.
    clean: HashSet<Id>,
}

impl IdSearch<'_> {
    fn wanted(&self, id: &Id) -> bool {
        let hex = id.to_hex();
        self.prefixes.iter().any(|p| hex.starts_with(p.as_str()))
    }

    /// Collects hits below `tree`; returns whether there were any.
    fn walk(&mut self, tree: &Id, prefix: &[u8], hits: &mut Vec<IdHit>) -> anyhow::Result<bool> {
        if self.clean.contains(tree) {
            return Ok(false);
        }
        let before = hits.len();
        let t = self.cache.get(tree)?;
        for n in &t.nodes {
            let path = join(prefix, &n.name);
            match (&n.kind, n.subtree) {
                (NodeType::Dir, Some(st)) => {
                    if !self.blobs && self.wanted(&st) {
                        hits.push(IdHit {
                            kind: "tree",
                            id: st,
                            path: path.clone(),
                            parent: *tree,
                        });
                    }
                    self.walk(&st, &path, hits)?;
                }
                (NodeType::File, _) if self.blobs => {
                    for c in n.content.iter().flatten() {
                        if self.wanted(c) {
                            hits.push(IdHit {
                                kind: "blob",
                                id: *c,
                                path: path.clone(),
                                parent: *tree,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        let any = hits.len() > before;
        if !any {
            self.clean.insert(*tree);
        }
        Ok(any)
    }
}

fn find_ids(
    repo: &Repository,
    g: &GlobalOpts,
    a: &Args,
    snaps: &[SnapshotWithId],
) -> anyhow::Result<()> {
    let mut prefixes = Vec::new();
    for p in &a.patterns {
        let p = p.to_ascii_lowercase();
        if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{p:?} is not an id or id prefix (hex digits)");
        }
        prefixes.push(p);
    }
    let mut s = IdSearch {
        prefixes,
        blobs: a.blob,
        cache: TreeCache {
            repo,
            trees: HashMap::new(),
            nodes: 0,
        },
        clean: HashSet::new(),
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut json = Vec::new();
    for snap in snaps.iter().rev() {
        let root = snap.snap.tree;
        let mut hits = Vec::new();
        if !a.blob && s.wanted(&root) {
            hits.push(IdHit {
                kind: "tree",
                id: root,
                path: b"/".to_vec(),
                parent: root,
            });
        }
        s.walk(&root, b"/", &mut hits)?;
        let time = snap.snap.time.format("%Y-%m-%d %H:%M:%S");
        for h in hits {
            let path = String::from_utf8_lossy(&h.path).into_owned();
            if g.json {
                json.push(serde_json::json!({
                    "object_type": h.kind,
                    "id": h.id.to_hex(),
                    "path": path,
                    "parent_tree": h.parent.to_hex(),
                    "snapshot": snap.id.to_hex(),
                    "time": snap.snap.time,
                }));
            } else {
                writeln!(w, "Found {} {}", h.kind, h.id)?;
                if h.kind == "blob" {
                    writeln!(w, " ... in file {path}")?;
                    writeln!(w, "     (tree {})", h.parent)?;
                } else {
                    writeln!(w, " ... path {path}")?;
                }
                writeln!(w, " ... in snapshot {} ({time})", snap.id.short())?;
            }
        }
    }
    if g.json {
        writeln!(w, "{}", serde_json::Value::Array(json))?;
    }
    w.flush()?;
    Ok(())
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    repo.load_index()?;
    let snaps = super::stats::select_snapshots(&repo, &a.snapshots, &a.filter)?;
    if a.tree || a.blob {
        find_ids(&repo, g, &a, &snaps)?;
        return Ok(0);
    }
    let patterns: Vec<Pattern> = a
        .patterns
        .iter()
        .map(|p| {
            Pattern::parse(&if a.ignore_case {
                p.to_lowercase()
            } else {
                p.clone()
            })
        })
        .collect();
    // Reject malformed patterns before printing anything.
    for (p, text) in patterns.iter().zip(&a.patterns) {
        p.matches(&split_path("/x"))
            .map_err(|e| anyhow::anyhow!("pattern {text:?}: {e}"))?;
    }
    let stdout = std::io::stdout();
    let mut s = PatternSearch {
        patterns,
        ignore_case: a.ignore_case,
        cache: TreeCache {
            repo: &repo,
            trees: HashMap::new(),
            nodes: 0,
        },
        out: Out {
            w: std::io::BufWriter::new(stdout.lock()),
            json: g.json,
            long: a.long,
            quiet: g.quiet,
            opened: false,
            hits: 0,
        },
    };
    // Newest first, as restic 0.17 lists them.
    for snap in snaps.iter().rev() {
        s.walk(snap, &snap.snap.tree, b"/")?;
        s.out.end_snapshot(snap)?;
    }
    s.out.finish()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern).matches(&split_path(path)).unwrap()
    }

    #[test]
    fn restic_match_rules() {
        assert!(m("*.txt", "/a/b/c.txt"));
        assert!(
            m("b", "/a/b/c.txt"),
            "a relative pattern matches any component"
        );
        assert!(m("a/b", "/x/a/b/c"));
        assert!(!m("/a/b", "/x/a/b"));
        assert!(m("/x/a", "/x/a/b"));
        assert!(m("/x/**/c", "/x/a/b/c"));
        assert!(m("**/c", "/x/a/b/c"));
        assert!(m("f?le[0-9]", "/d/file7"));
        assert!(!m("f?le[^0-9]", "/d/file7"));
        assert!(m("\\*", "/d/*"));
        assert!(!m("*.txt", "/a/b/c.txt2"));
        assert!(Pattern::parse("[").matches(&split_path("/a")).is_err());
    }

    #[test]
    fn restic_child_match_rules() {
        let c = |pattern: &str, path: &str| {
            Pattern::parse(pattern)
                .child_may_match(&split_path(path))
                .unwrap()
        };
        assert!(c("*.txt", "/anything"));
        assert!(c("/a/b/c", "/a"));
        assert!(!c("/a/b/c", "/x"));
        assert!(c("/a/**/c", "/a/x/y"));
    }

    #[test]
    fn go_clean() {
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
    }
}
