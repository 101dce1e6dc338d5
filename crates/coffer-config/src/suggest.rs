//! "Did you mean ...?": the nearest valid name to a misspelt one, for unknown keys, source
//! types and names that refer to nothing.

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo
/// (at most a third of the word's length, and at least one edit allowed).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)`, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Damerau-Levenshtein distance (optimal string alignment): a swap of two neighbours is one
/// edit, as in `databsaes`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Rewrites serde's `unknown field `x`, expected one of `a`, `b`` (and `unknown variant`)
/// into `unknown key `x` (did you mean `a`?; valid keys: a, b)`.
pub fn improve_serde_message(message: &str) -> String {
    for (pattern, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = message.find(pattern).map(|i| &message[i + pattern.len()..]) else {
            continue;
        };
        let Some(end) = rest.find('`') else { continue };
        let word = &rest[..end];
        let tail = &rest[end + 1..];
        let expected: Vec<&str> = tail
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .collect();
        let hint = match nearest(word, expected.iter().copied()) {
            Some(c) => format!(" (did you mean `{c}`?)"),
            None if expected.is_empty() => String::new(),
            None => format!(" (valid: {})", expected.join(", ")),
        };
        return format!("unknown {what} `{word}`{hint}");
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_matched() {
        let keys = ["url", "databases", "mode", "exclude_databases"];
        assert_eq!(nearest("databses", keys), Some("databases"));
        assert_eq!(nearest("databsaes", keys), Some("databases"));
        assert_eq!(nearest("URL", keys), Some("url"));
        assert_eq!(nearest("password", keys), None);
        assert_eq!(
            improve_serde_message(
                "unknown field `databses`, expected one of `url`, `databases`, `mode`"
            ),
            "unknown key `databses` (did you mean `databases`?)"
        );
        assert_eq!(
            improve_serde_message("unknown field `zzz`, expected `url` or `mode`"),
            "unknown key `zzz` (valid: url, mode)"
        );
    }
}
