//! `${VAR}` interpolation. Done while deserializing each string, so that an unset variable is
//! reported by the TOML parser with the line and key it appears in.

use serde::{Deserialize, Deserializer};

/// A string from the config file with `${VAR}` / `${VAR:-default}` expanded.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl std::fmt::Debug for EnvString {
    // Expanded values may hold secrets: never print them in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvString(..)")
    }
}

impl std::ops::Deref for EnvString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let value = expand(&raw).map_err(serde::de::Error::custom)?;
        crate::secrets::register_url(&value);
        Ok(EnvString(value))
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub fn expand(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated ${{...}} in {s:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in ${{{expr}}}"));
            }
            match (std::env::var(name), default) {
                (Ok(v), _) => {
                    if crate::secrets::is_secret_name(name) {
                        crate::secrets::register(&v);
                    }
                    out.push_str(&v)
                }
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => {
                    return Err(format!(
                        "environment variable {name} is not set (used as ${{{name}}}; write ${{{name}:-default}} for a default)"
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands() {
        std::env::set_var("COFFER_ENV_T", "v");
        assert_eq!(expand("a${COFFER_ENV_T}b").unwrap(), "avb");
        assert_eq!(expand("${COFFER_ENV_NOPE:-d}").unwrap(), "d");
        assert_eq!(expand("$$x $y").unwrap(), "$x $y");
        assert!(expand("${COFFER_ENV_NOPE}")
            .unwrap_err()
            .contains("COFFER_ENV_NOPE"));
        assert!(expand("${oops").is_err());
    }
}
