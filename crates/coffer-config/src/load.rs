//! Reading `coffer.toml` so that every mistake is reported at once, each at its own line.
//!
//! The file is parsed into spanned TOML first (a syntax error stops there: nothing after it
//! can be trusted), then each section, and each entry of a `[[...]]` list, is deserialized on
//! its own: a wrong key in one `[[source]]` does not hide a wrong schedule in a `[[job]]`.
//! Entries that fail are left out, and their names are remembered ([`Config::broken`]) so
//! that validation does not add "no [[source]] is named X" on top of the real error.

use std::ops::Range;
use std::path::Path;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::suggest::{did_you_mean, improve_serde_message};
use crate::{Config, ConfigError};

/// The top-level keys of the file.
const SECTIONS: [&str; 10] = [
    "repository",
    "source",
    "server",
    "job",
    "channel",
    "rule",
    "alerting",
    "audit",
    "scenario",
    "dr",
];

/// Line numbers of byte offsets in one text.
pub(crate) struct Lines<'a>(pub &'a str);

impl Lines<'_> {
    /// The 1-based line holding byte `offset`.
    pub fn of(&self, offset: usize) -> usize {
        self.0[..offset.min(self.0.len())].matches('\n').count() + 1
    }

    /// `line N: message` for a TOML error, with serde's wording made readable. The parser's
    /// own Display quotes the offending line, which may hold a password: never used.
    pub fn error(&self, e: &toml::de::Error) -> String {
        let msg = improve_serde_message(e.message().trim_end());
        match e.span() {
            Some(s) => format!("line {}: {msg}", self.of(s.start)),
            None => msg,
        }
    }

    /// The same inside an entry (`job "nightly"`), naming the key of the error's line.
    pub fn error_in(&self, e: &toml::de::Error, what: &str) -> String {
        let msg = improve_serde_message(e.message().trim_end());
        let Some(s) = e.span() else {
            return format!("{what}: {msg}");
        };
        let key = self
            .key_at(s.start)
            .filter(|_| !msg.starts_with("unknown key"));
        format!(
            "line {}: {what}: {}{msg}",
            self.of(s.start),
            key.map(|k| format!("key `{k}`: ")).unwrap_or_default()
        )
    }

    /// The key a `key = value` line at `offset` sets.
    fn key_at(&self, offset: usize) -> Option<&str> {
        let start = self.0[..offset.min(self.0.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = self.0[start..].lines().next()?.trim_start();
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
        .then_some(key)
    }
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let (cfg, errors) = parse_lenient(text, path)?;
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            errors,
        })
    }
}

/// What could be read of the file, and every mistake found; an error only when nothing
/// could be read (a syntax error).
pub(crate) fn parse_lenient(text: &str, path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    let lines = Lines(text);
    let invalid = |errors: Vec<String>| ConfigError::Invalid {
        path: path.to_path_buf(),
        errors,
    };
    let doc = DeTable::parse(text).map_err(|e| invalid(vec![lines.error(&e)]))?;
    let mut cfg = Config {
        path: path.to_path_buf(),
        text: text.to_string(),
        ..Config::default()
    };
    let mut errors = Vec::new();
    let mut p = Parser {
        lines: &lines,
        errors: &mut errors,
        broken: &mut cfg.broken,
    };
    for (key, value) in doc.into_inner() {
        let given: &str = key.get_ref();
        let Some(name) = SECTIONS.iter().copied().find(|s| *s == given) else {
            p.errors.push(format!(
                "line {}: unknown section `{given}`{}",
                lines.of(key.span().start),
                did_you_mean(given, SECTIONS)
            ));
            continue;
        };
        match name {
            "repository" => {
                cfg.repository = p.list(value, name).into_iter().map(|(r, _)| r).collect()
            }
            "source" => {
                cfg.source = p
                    .list(value, name)
                    .into_iter()
                    .map(|(mut s, span): (crate::SourceEntry, _)| {
                        s.span = span;
                        s
                    })
                    .collect()
            }
            "job" => cfg.job = p.list(value, name).into_iter().map(|(j, _)| j).collect(),
            "channel" => cfg.channel = p.list(value, name).into_iter().map(|(c, _)| c).collect(),
            "rule" => cfg.rule = p.list(value, name).into_iter().map(|(r, _)| r).collect(),
            "server" => cfg.server = p.table(value, name).unwrap_or_default(),
            "alerting" => cfg.alerting = p.table(value, name).unwrap_or_default(),
            "audit" => cfg.audit = p.table(value, name).unwrap_or_default(),
            "scenario" => cfg.scenario = p.list(value, name).into_iter().map(|(s, _)| s).collect(),
            "dr" => cfg.dr = p.table(value, name).unwrap_or_default(),
            _ => unreachable!("every name of SECTIONS has an arm"),
        }
    }
    errors.extend(cfg.validate());
    sort_by_line(&mut errors);
    Ok((cfg, errors))
}

/// Orders messages by the line they start with (`line 12: ...`); others keep their place
/// after them.
pub fn sort_by_line(errors: &mut [String]) {
    let line = |e: &String| {
        e.strip_prefix("line ")
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(line);
}

struct Parser<'a> {
    lines: &'a Lines<'a>,
    errors: &'a mut Vec<String>,
    broken: &'a mut Vec<(&'static str, String)>,
}

impl Parser<'_> {
    /// A `[[section]]` list: every entry that deserializes, with its span.
    fn list<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        section: &'static str,
    ) -> Vec<(T, Range<usize>)> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.errors.push(format!(
                "line {}: `{section}` must be a list of tables: write [[{section}]]",
                self.lines.of(span.start)
            ));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter().cloned() {
            let span = item.span();
            let name = item
                .get_ref()
                .get("name")
                .and_then(|n| n.get_ref().as_str())
                .map(str::to_string);
            let what = match &name {
                Some(n) => format!("{section} {n:?}"),
                None => format!("a [[{section}]] entry"),
            };
            match self.entry(item, &what) {
                Some(t) => out.push((t, span)),
                None => {
                    if let Some(n) = name {
                        self.broken.push((section, n));
                    }
                }
            }
        }
        out
    }

    /// One entry. A key that does not deserialize is reported and left out, and the entry
    /// tried again without it, so that the entry's other mistakes (a bad schedule beside a
    /// bad duration, a source that does not exist) are found in the same run. `None` when
    /// the entry cannot be read even so (a required key was the bad one).
    fn entry<T: DeserializeOwned>(&mut self, item: Spanned<DeValue<'_>>, what: &str) -> Option<T> {
        let span = item.span();
        let DeValue::Table(mut table) = item.into_inner() else {
            self.errors.push(format!(
                "line {}: {what}: must be a table",
                self.lines.of(span.start)
            ));
            return None;
        };
        let mut removed: Vec<String> = Vec::new();
        loop {
            let value = Spanned::new(span.clone(), DeValue::Table(table.clone()));
            let e = match T::deserialize(value.into_deserializer()) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            // Leaving out a bad key may leave a required one missing: that is the same
            // mistake, already reported.
            if removed
                .iter()
                .any(|k| e.message().contains(&format!("missing field `{k}`")))
            {
                return None;
            }
            self.errors.push(self.lines.error_in(&e, what));
            let at = e.span()?.start;
            let bad = table
                .iter()
                .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
                .map(|(k, _)| k.clone())?;
            removed.push(bad.get_ref().to_string());
            table = table.into_iter().filter(|(k, _)| *k != bad).collect();
        }
    }

    /// A `[section]` table, or `None` (and the error noted) when it does not deserialize.
    fn table<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        section: &'static str,
    ) -> Option<T> {
        let span = value.span();
        if !value.get_ref().is_table() {
            self.errors.push(format!(
                "line {}: `{section}` must be a table: write [{section}]",
                self.lines.of(span.start)
            ));
            return None;
        }
        T::deserialize(value.into_deserializer())
            .map_err(|e| {
                self.errors
                    .push(self.lines.error_in(&e, &format!("[{section}]")))
            })
            .ok()
    }
}

impl Config {
    /// A `[[source]]` entry's type-specific settings as `T` (the source module's struct),
    /// deserialized from the file itself so that an error names the line of the key it is
    /// about, with a suggestion for a misspelt key.
    pub fn source_settings<T: DeserializeOwned>(
        &self,
        entry: &crate::SourceEntry,
    ) -> Result<T, ConfigError> {
        let at_name = |e: String| self.source_error_at(entry, None, e);
        let spanned = DeTable::parse(&self.text).ok().and_then(|doc| {
            let list = doc.get_ref().get("source")?.get_ref().as_array()?.clone();
            list.iter().find(|v| v.span() == entry.span).cloned()
        });
        let Some(item) = spanned else {
            // Not read from a file (built in code): no lines to name.
            return toml::Value::Table(entry.settings.clone())
                .try_into()
                .map_err(|e: toml::de::Error| at_name(improve_serde_message(e.message())));
        };
        let span = item.span();
        let DeValue::Table(table) = item.into_inner() else {
            return Err(at_name("not a table".into()));
        };
        let table: DeTable<'_> = table
            .into_iter()
            .filter(|(k, _)| {
                let k: &str = k.get_ref();
                !["name", "type", "repository", "rpo", "rto"].contains(&k)
            })
            .collect();
        T::deserialize(Spanned::new(span, DeValue::Table(table)).into_deserializer()).map_err(|e| {
            let line = e.span().map(|s| Lines(&self.text).of(s.start));
            self.source_error_at(entry, line, improve_serde_message(e.message().trim_end()))
        })
    }
}
