//! The secrets this process knows (passwords, secret keys, tokens), so that log output can
//! be scrubbed of them: a third-party crate's debug line (a credential provider's `Debug`, a
//! request dump) is not ours to word, but it is ours to redact before it reaches a terminal,
//! a log file or the journal.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter values are not redacted: they would blank out ordinary words and numbers.
const MIN_LEN: usize = 4;

/// Remembers a secret value; [`redact`] replaces it from now on.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|k| k == secret) {
        s.push(secret.to_string());
        // Longest first, so that a secret containing another is replaced whole.
        s.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// Registers the password of a URL (`user:PASS@`, `?password=`), if it has one.
pub fn register_url(url: &str) {
    if let (_, Some(p)) = crate::split_url_password(url) {
        register(&p);
        // As written in the URL, too (percent-encoded).
        if let Some(raw) = url
            .split_once("://")
            .and_then(|(_, r)| r.rsplit_once('@'))
            .and_then(|(u, _)| u.split_once(':'))
        {
            register(raw.1);
        }
    }
}

/// Whether an environment variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "PASSPHRASE",
        "PRIVATE_KEY",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Registers every environment variable whose name says it holds a secret
/// (`AWS_SECRET_ACCESS_KEY`, `COFFER_PASSWORD`, `PGPASSWORD`, `*_TOKEN`).
pub fn register_env() {
    for (k, v) in std::env::vars_os() {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
            if is_secret_name(k) {
                register(v);
            }
        }
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let s = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|k| text.contains(k.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for k in s.iter() {
        out = out.replace(k.as_str(), "***");
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_registered_values() {
        register("hunter22-secret");
        register("ab");
        register_url("postgresql://u:p%40ssword9@h/db");
        assert_eq!(
            redact("key: \"hunter22-secret\", x ab"),
            "key: \"***\", x ab"
        );
        assert_eq!(redact("pw p@ssword9 / p%40ssword9"), "pw *** / ***");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
        assert!(is_secret_name("AWS_SECRET_ACCESS_KEY") && is_secret_name("coffer_password"));
        assert!(!is_secret_name("HOME"));
    }
}
