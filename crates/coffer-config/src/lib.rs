//! `coffer.toml`, the configuration file: repositories, sources, jobs, the daemon's server,
//! alerting (rules, channels), audit and disaster-recovery scenarios, and the translation of
//! job schedules for systemd and cron ([`schedule`]). Owns parsing and validation only; what
//! a source does with its settings belongs to `coffer-sources`.
//!
//! ```toml
//! [[repository]]
//! name = "local"
//! url = "/var/backups/coffer"
//! password_file = "/etc/coffer/password"
//!
//! [[source]]
//! name = "pg-main"
//! type = "postgres"
//! url = "postgresql://postgres:${PGPASSWORD}@127.0.0.1:5432/"
//! ```
//!
//! - `${VAR}` (and `${VAR:-default}`) in any string value is replaced by the environment
//!   variable, so secrets stay out of the file; an unset variable is an error that names it.
//! - Every error names the file and, where it can be found, the line and key.
//! - Unknown keys are errors (a misspelt `databse` must not silently mean "every database").

pub mod alerts;
pub mod dr;
mod env;
pub mod jobs;
mod load;
pub mod rules;
pub mod schedule;
pub mod secrets;
pub mod suggest;
pub mod units;
pub mod when;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use env::{expand, EnvString};
pub use jobs::{JobConfig, Misfire, Role, ServerConfig, Span, TokenConfig};
pub use load::sort_by_line;

/// A commented coffer.toml with every section (`coffer config example`); `config check`
/// accepts it as it is.
pub const EXAMPLE: &str = include_str!("../example.toml");

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[repository]]` entries.
    #[serde(default)]
    pub repository: Vec<RepositoryConfig>,
    /// `[[source]]` entries, each checked by its type's module in `coffer-sources`.
    #[serde(default)]
    pub source: Vec<SourceEntry>,
    /// `[server]`: the daemon's settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[job]]` entries: what the daemon runs and when.
    #[serde(default)]
    pub job: Vec<JobConfig>,
    /// `[[channel]]` entries: where alerts are sent.
    #[serde(default)]
    pub channel: Vec<alerts::ChannelConfig>,
    /// `[[rule]]` entries: user alert rules and changes to the built-in ones.
    #[serde(default)]
    pub rule: Vec<rules::RuleConfig>,
    /// `[alerting]`: grouping, repeat intervals, evaluation.
    #[serde(default)]
    pub alerting: rules::AlertingConfig,
    /// `[audit]`: the tamper-evident audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[[scenario]]` entries: disaster-recovery runbooks.
    #[serde(default)]
    pub scenario: Vec<dr::ScenarioConfig>,
    /// `[dr]`: recovery order and drill settings.
    #[serde(default)]
    pub dr: dr::DrConfig,
    /// Where the file was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
    /// The file's text (for locating keys in messages).
    #[serde(skip)]
    pub text: String,
    /// Entries that did not parse, as (section, name): validation does not report
    /// references to them as dangling (their own error is already there).
    #[serde(skip)]
    pub broken: Vec<(&'static str, String)>,
}

/// `[audit]`: where the HMAC-chained audit log and its key live.
///
/// ```toml
/// [audit]
/// log = "/var/lib/coffer/audit.log"      # default: audit.log beside the catalog
/// key_file = "/etc/coffer/audit.key"     # default: /etc/coffer/audit.key (root), else
///                                         # $XDG_CONFIG_HOME/coffer/audit.key; created if missing
/// ```
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `false` keeps only the catalog's audit table (not tamper-evident).
    pub enabled: bool,
    /// The log file.
    pub log: Option<EnvString>,
    /// The key; never in the log's directory.
    pub key_file: Option<EnvString>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            log: None,
            key_file: None,
        }
    }
}

impl AuditConfig {
    /// The log file: `log`, else `audit.log` beside `catalog`.
    pub fn log_path(&self, catalog: &Path) -> PathBuf {
        match &self.log {
            Some(p) => PathBuf::from(&**p),
            None => catalog.parent().unwrap_or(Path::new(".")).join("audit.log"),
        }
    }

    /// The key file: `key_file`, else /etc/coffer/audit.key for root and
    /// `$XDG_CONFIG_HOME/coffer/audit.key` (`~/.config/...`) for others.
    pub fn key_path(&self) -> PathBuf {
        if let Some(p) = &self.key_file {
            return PathBuf::from(&**p);
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/etc/coffer/audit.key");
        }
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("coffer/audit.key")
    }
}

/// One repository.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Name sources and jobs refer to.
    pub name: String,
    /// A path or `s3:http://HOST:PORT/BUCKET/PREFIX`.
    pub url: EnvString,
    /// File holding the password.
    pub password_file: Option<EnvString>,
    /// The password itself (prefer password_file or `${ENV}`).
    pub password: Option<EnvString>,
    /// The storage the repository may use (`500G`, `2T`): the capacity the storage guard
    /// measures against, for stores without one (S3 buckets). A local repository without a
    /// quota is measured against its filesystem.
    pub quota: Option<EnvString>,
}

/// Percent-encodes everything but RFC 3986's unreserved characters: for values from the
/// config placed into URLs (database names, signatures of chat robots).
pub fn percent_encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Why a `language` value is not one coffer speaks, if it is not.
pub(crate) fn language_error(value: Option<&str>) -> Option<String> {
    let v = value?;
    match coffer_i18n::Lang::parse(v) {
        Some(_) => None,
        None => Some(format!("{v:?} is not a language coffer speaks (en, zh-CN)")),
    }
}

/// A URL without its password (the user stays), for messages and the audit trail.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The URL without its password, and the password (percent-decoded), taken from the user
/// info (`user:PASS@`) or a `password=` query parameter: a child process gets the password in
/// its environment, never on its command line, where every local user can read it.
pub fn split_url_password(url: &str) -> (String, Option<String>) {
    // A password that does not decode is passed as written.
    let decode = |p: &str| units::percent_decode(p).unwrap_or_else(|_| p.to_string());
    let mut password = None;
    let mut out = url.to_string();
    if let (Some(s), Some(at)) = (url.find("://"), url.rfind('@')) {
        let userinfo = &url[s + 3..at];
        if let Some((_, p)) = userinfo.split_once(':') {
            password = Some(decode(p));
            out = redact_url(url);
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = (&out[..q], &out[q + 1..]);
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("password", v)) => password = Some(decode(v)),
                _ => kept.push(pair),
            }
        }
        out = match kept.is_empty() {
            true => base.to_string(),
            false => format!("{base}?{}", kept.join("&")),
        };
    }
    (out, password)
}

/// One source: its name, type, repository, and the type's own settings (left as a table for
/// the type's module to check).
#[derive(Debug, Deserialize, Clone)]
pub struct SourceEntry {
    /// Unique name, used as `--source NAME` and as the snapshot tag.
    pub name: String,
    /// postgres | mariadb | redis | files | command
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (optional when only one is declared).
    pub repository: Option<String>,
    /// Recovery point target (default by type: see `dr::default_targets`).
    pub rpo: Option<Span>,
    /// Recovery time target.
    pub rto: Option<Span>,
    /// Everything else.
    #[serde(flatten)]
    pub settings: toml::Table,
    /// Where the entry is in the file (byte range), for the line of a key in messages.
    #[serde(skip)]
    pub span: std::ops::Range<usize>,
}

impl SourceEntry {
    /// A copy with `key` set to `value` and no longer tied to its place in the file, whose
    /// settings would otherwise win: a drill points a source at its scratch server this way.
    pub fn with_setting(&self, key: &str, value: &str) -> SourceEntry {
        let mut e = self.clone();
        e.settings
            .insert(key.to_string(), toml::Value::String(value.to_string()));
        e.span = 0..0;
        e
    }
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Syntax, types, unknown keys, unset variables: every one found, each with its line.
    #[error("config file {path}: {}", errors.join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What and where, one per mistake.
        errors: Vec<String>,
    },
}

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Reads a file for `config check`: what could be read, with every mistake found (each
    /// with its line), so that the caller can check more (sources) and report all at once.
    /// An error only when the file cannot be read or its syntax is broken.
    pub fn load_lenient(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        load::parse_lenient(&text, path)
    }

    /// Parses text read from `path`, reporting every mistake at once.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        load::parse(text, path)
    }

    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            errors: vec![message],
        }
    }

    /// Whether a `[[section]]` entry called `name` exists (or was written but did not parse,
    /// and is reported as such).
    pub(crate) fn declared(&self, section: &str, name: &str) -> bool {
        let found = match section {
            "repository" => self.repository.iter().any(|x| x.name == name),
            "source" => self.source.iter().any(|x| x.name == name),
            "channel" => self.channel.iter().any(|x| x.name == name),
            "scenario" => self.scenario.iter().any(|x| x.name == name),
            _ => false,
        };
        found || self.broken.iter().any(|(s, n)| *s == section && n == name)
    }

    /// Everything that can be checked without a server, beyond what deserializing checked.
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in &self.repository {
            if !seen.insert(&r.name) {
                errors.push(format!(
                    "{}: repository {:?} is declared twice",
                    self.line_of("name", &r.name),
                    r.name
                ));
            }
            if let Some(q) = &r.quota {
                if units::parse_size(q).map_or(true, |n| n == 0) {
                    errors.push(format!(
                        "{}: repository {:?}: key `quota`: {:?} is not a size such as \"500G\" or \"2T\"",
                        self.line_of("name", &r.name),
                        r.name,
                        &**q
                    ));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.source {
            let at = self.line_of("name", &s.name);
            if !seen.insert(&s.name) {
                errors.push(format!("{at}: source {:?} is declared twice", s.name));
            }
            if s.name.is_empty()
                || s.name
                    .contains(|c: char| c.is_whitespace() || c == '/' || c == ',')
            {
                errors.push(format!(
                    "{at}: source name {:?} must be non-empty, without spaces, '/' or ','",
                    s.name
                ));
            }
            match &s.repository {
                Some(r) if !self.declared("repository", r) => errors.push(format!(
                    "{at}: source {:?}: key `repository`: no [[repository]] is named {r:?}",
                    s.name
                )),
                // Without one, jobs name the repository and `backup --source` needs
                // `--repository` (see repository_for).
                _ => {}
            }
        }
        self.validate_jobs(&mut errors);
        self.validate_dr(&mut errors);
        alerts::validate(self, &mut errors);
        rules::validate(self, &mut errors);
        errors
    }

    fn validate_jobs(&self, errors: &mut Vec<String>) {
        let st = &self.server.storage;
        if !(0.0 < st.low && st.low <= st.high && st.high <= st.critical && st.critical <= 100.0) {
            errors.push(format!(
                "[server.storage]: thresholds must satisfy 0 < low <= high <= critical <= 100 (got {} / {} / {})",
                st.low, st.high, st.critical
            ));
        }
        if let Some(e) = language_error(self.server.language.as_deref()) {
            errors.push(format!("[server]: key `language`: {e}"));
        }
        if self.server.max_concurrent_jobs == 0 {
            errors.push("[server]: key `max_concurrent_jobs` must be at least 1".into());
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!(
                "[server]: key `listen`: {:?} is not an address such as 127.0.0.1:8081",
                self.server.listen
            ));
        }
        self.validate_tokens(errors);
        let repo_known = |r: &str| self.declared("repository", r);
        let mut seen = std::collections::HashSet::new();
        for j in &self.job {
            let at = format!("{}: job {:?}", self.line_of("name", &j.name), j.name);
            if !seen.insert(&j.name) {
                errors.push(format!("{at} is declared twice"));
            }
            if j.name.is_empty()
                || j.name
                    .contains(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            {
                errors.push(format!("{at}: the name may hold only letters, digits, '-', '_' and '.' (it becomes part of run ids)"));
            }
            if let Some(u) = j.ping_url.as_deref() {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    errors.push(format!(
                        "{at}: key `ping_url` must start with http:// or https://"
                    ));
                }
            }
            if j.sources.is_empty() {
                errors.push(format!("{at}: key `sources` lists no source"));
            }
            for s in &j.sources {
                if !self.declared("source", s) {
                    errors.push(format!("{at}: key `sources`: no [[source]] is named {s:?}"));
                }
            }
            match &j.repository {
                Some(r) if !repo_known(r) => errors.push(format!(
                    "{at}: key `repository`: no [[repository]] is named {r:?}"
                )),
                None if self.repository.len() > 1 => errors.push(format!(
                    "{at}: key `repository` is required when several repositories are declared"
                )),
                None if self.repository.is_empty() => {
                    errors.push(format!("{at}: no [[repository]] is declared"))
                }
                _ => {}
            }
            let main = j
                .repository
                .clone()
                .or_else(|| self.repository.first().map(|r| r.name.clone()));
            for c in &j.copy_to {
                if !repo_known(c) {
                    errors.push(format!(
                        "{at}: key `copy_to`: no [[repository]] is named {c:?}"
                    ));
                } else if Some(c) == main.as_ref() {
                    errors.push(format!(
                        "{at}: key `copy_to` names the job's own repository {c:?}"
                    ));
                }
            }
            if let Err(e) = jobs::parse_schedule(&j.schedule) {
                errors.push(format!("{at}: key `schedule`: {e}"));
            }
            if let Some(v) = &j.verify_schedule {
                if let Err(e) = jobs::parse_schedule(v) {
                    errors.push(format!("{at}: key `verify_schedule`: {e}"));
                }
            }
            if let Some(tz) = &j.timezone {
                if let Err(e) = jobs::parse_timezone(tz) {
                    errors.push(format!("{at}: key `timezone`: {e}"));
                }
            }
            if let Some(r) = &j.retention {
                for e in jobs::check_retention(r) {
                    errors.push(format!("{at}: key `retention`: {e}"));
                }
            }
            if j.max_runtime.secs() == 0 {
                errors.push(format!("{at}: key `max_runtime` must be longer than 0s"));
            }
            if j.rpo.is_some_and(|r| r.secs() == 0) {
                errors.push(format!("{at}: key `rpo` must be longer than 0s"));
            }
        }
    }

    fn validate_tokens(&self, errors: &mut Vec<String>) {
        let mut names = std::collections::HashSet::new();
        for t in &self.server.token {
            let at = format!("{}: token {:?}", self.line_of("name", &t.name), t.name);
            if !names.insert(&t.name) {
                errors.push(format!("{at} is declared twice"));
            }
            let given = [
                t.token.is_some(),
                t.token_file.is_some(),
                t.token_sha256.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if given != 1 {
                errors.push(format!(
                    "{at}: give exactly one of `token`, `token_file` or `token_sha256`"
                ));
            }
            if let Some(tok) = &t.token {
                if tok.len() < 16 {
                    errors.push(format!(
                        "{at}: key `token` is shorter than 16 characters (generate one with `head -c 32 /dev/urandom | base64`)"
                    ));
                }
            }
            if let Some(h) = &t.token_sha256 {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    errors.push(format!(
                        "{at}: key `token_sha256` must be 64 hex digits (`printf %s TOKEN | sha256sum`)"
                    ));
                }
            }
        }
        if let Ok(addr) = self.server.listen.parse::<std::net::SocketAddr>() {
            if !addr.ip().is_loopback() && self.server.token.is_empty() {
                errors.push(format!(
                    "[server]: key `listen`: {} is not a loopback address and no [[server.token]] is declared: the API would be open to the network (declare tokens, or listen on 127.0.0.1)",
                    self.server.listen
                ));
            }
        }
    }

    /// The language of commands run with this config: the locale's when it asks for Chinese
    /// (`LANG=zh_CN.UTF-8`), else `[server] language`, else English.
    pub fn lang(&self) -> coffer_i18n::Lang {
        match coffer_i18n::Lang::from_env() {
            coffer_i18n::Lang::En => self
                .server
                .language
                .as_deref()
                .and_then(coffer_i18n::Lang::parse)
                .unwrap_or_default(),
            l => l,
        }
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Result<&JobConfig, ConfigError> {
        self.job.iter().find(|j| j.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.job.iter().map(|j| j.name.as_str()).collect();
            self.invalid(format!(
                "no [[job]] is named {name:?} (declared: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// "line N" of the first `key = "value"` line, for messages about a table.
    pub fn line_of(&self, key: &str, value: &str) -> String {
        let quoted = format!("\"{value}\"");
        for (i, l) in self.text.lines().enumerate() {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix(key) {
                let rest = rest.trim_start();
                if let Some(v) = rest.strip_prefix('=') {
                    if v.trim() == quoted {
                        return format!("line {}", i + 1);
                    }
                }
            }
        }
        format!("[{key} = {quoted}]")
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Result<&SourceEntry, ConfigError> {
        self.source.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.source.iter().map(|s| s.name.as_str()).collect();
            self.invalid(format!(
                "no [[source]] is named {name:?} (declared: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The repository a job backs up into: its `repository`, or the only one declared.
    pub fn job_repository(&self, job: &JobConfig) -> Result<&RepositoryConfig, ConfigError> {
        match &job.repository {
            Some(name) => self
                .repository
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| {
                    self.invalid(format!(
                        "job {:?}: no [[repository]] is named {name:?}",
                        job.name
                    ))
                }),
            None => self.repository_for(None),
        }
    }

    /// The repository a source writes to: its `repository`, or the only one declared.
    pub fn repository_for(
        &self,
        source: Option<&SourceEntry>,
    ) -> Result<&RepositoryConfig, ConfigError> {
        match source.and_then(|s| s.repository.as_ref()) {
            Some(name) => self
                .repository
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| self.invalid(format!("no [[repository]] is named {name:?}"))),
            None if self.repository.len() > 1 => Err(self.invalid(format!(
                "{}several repositories are declared: name one with --repository NAME{}",
                source
                    .map(|s| format!("source {:?} has no key `repository` and ", s.name))
                    .unwrap_or_default(),
                source
                    .map(|_| " (or set the source's `repository`)")
                    .unwrap_or_default()
            ))),
            None => self
                .repository
                .first()
                .ok_or_else(|| self.invalid("no [[repository]] is declared".to_string())),
        }
    }

    /// A message about one source's settings, with its line.
    pub fn source_error(
        &self,
        source: &SourceEntry,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        self.source_error_at(source, None, message)
    }

    /// The same, at a known line (a key's own) instead of the entry's `name` line.
    pub(crate) fn source_error_at(
        &self,
        source: &SourceEntry,
        line: Option<usize>,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        let at = match line {
            Some(l) => format!("line {l}"),
            None => self.line_of("name", &source.name),
        };
        self.invalid(format!(
            "{at}: source {:?} (type {}): {message}",
            source.name, source.kind
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_urls() {
        let split = |u: &str| split_url_password(u);
        assert_eq!(
            split("postgresql://postgres:p%40ss%3Aw@127.0.0.1:5432/app?sslmode=disable"),
            (
                "postgresql://postgres@127.0.0.1:5432/app?sslmode=disable".to_string(),
                Some("p@ss:w".to_string())
            )
        );
        assert_eq!(
            split("postgresql://u@h/db?password=x%20y&sslmode=require"),
            (
                "postgresql://u@h/db?sslmode=require".to_string(),
                Some("x y".to_string())
            )
        );
        assert_eq!(
            split("postgresql://u@h/db?password=x"),
            ("postgresql://u@h/db".to_string(), Some("x".to_string()))
        );
        assert_eq!(
            split("postgresql://h/db"),
            ("postgresql://h/db".to_string(), None)
        );
    }

    fn parse(t: &str) -> Result<Config, String> {
        Config::parse(t, Path::new("coffer.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn full_example() {
        std::env::set_var("COFFER_TEST_PW", "s3cr\"et");
        let c = parse(
            r#"
[[repository]]
name = "local"
url = "/var/backups/coffer"
password_file = "/etc/coffer/password"

[[source]]
name = "pg-main"
type = "postgres"
url = "postgresql://postgres:${COFFER_TEST_PW}@127.0.0.1:5432/"
databases = ["app"]
mode = "logical"
repository = "local"
"#,
        )
        .unwrap();
        assert_eq!(c.source[0].kind, "postgres");
        assert_eq!(
            c.source[0].settings["databases"].as_array().unwrap().len(),
            1
        );
        assert!(c.source[0].settings.get("name").is_none());
        assert_eq!(c.repository_for(Some(&c.source[0])).unwrap().name, "local");
    }

    #[test]
    fn jobs_and_server() {
        let base = "[[repository]]\nname = \"local\"\nurl = \"/x\"\n[[repository]]\nname = \"off\"\nurl = \"/y\"\n\
                    [[source]]\nname = \"etc\"\ntype = \"files\"\nrepository = \"local\"\npaths = [\"/etc\"]\n";
        let c = parse(&format!(
            "{base}[server]\nlisten = \"127.0.0.1:9000\"\n[[job]]\nname = \"nightly\"\nsources = [\"etc\"]\n\
             repository = \"local\"\ncopy_to = [\"off\"]\nschedule = \"0 2 * * *\"\ntimezone = \"Asia/Shanghai\"\n\
             rpo = \"26h\"\nretention = {{ daily = 7, weekly = 4 }}\nretries = 2\n"
        ))
        .unwrap();
        let j = c.job("nightly").unwrap();
        assert_eq!(
            (j.rpo.unwrap().secs(), j.retries, j.max_runtime.secs()),
            (26 * 3600, 2, 12 * 3600)
        );
        assert_eq!(c.server.listen, "127.0.0.1:9000");
        assert_eq!(c.server.storage.critical, 95.0);
        assert!(c.job("nope").unwrap_err().to_string().contains("nightly"));

        // Every mistake at once, each with its line and key.
        let e = parse(&format!(
            "{base}[[job]]\nname = \"bad job\"\nsources = [\"etc\", \"ghost\"]\nschedule = \"0 25 * * *\"\n\
             timezone = \"Mars/Base\"\nretention = {{ dayly = 7 }}\ncopy_to = [\"local\"]\nrepository = \"local\"\n\
             [[job]]\nname = \"j2\"\nsources = [\"etc\"]\nschedule = \"* * *\"\n"
        ))
        .unwrap_err();
        for want in [
            "line 13",
            "ghost",
            "`schedule`",
            "Mars/Base",
            "dayly",
            "`copy_to` names the job's own",
            "only letters",
            "line 21",
            "3 fields",
            "`repository` is required",
        ] {
            assert!(e.contains(want), "{want:?} missing in {e}");
        }
        let e = parse("[server]\nlisten = \"nowhere\"\n[server.storage]\nlow = 90\nhigh = 80\n")
            .unwrap_err();
        assert!(e.contains("listen") && e.contains("low <= high"), "{e}");
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("[[repository]]\nname = \"a\"\nurl = \"/x\"\nbogus = 1\n").unwrap_err();
        assert!(
            e.contains("coffer.toml") && e.contains("line 4") && e.contains("bogus"),
            "{e}"
        );
        let e =
            parse("[[repository]]\nname = \"a\"\nurl = \"${COFFER_SURELY_UNSET}\"\n").unwrap_err();
        assert!(
            e.contains("COFFER_SURELY_UNSET") && e.contains("line 3"),
            "{e}"
        );
        // A source without a repository among several is fine in the file (jobs name theirs);
        // using it without one is the error, naming what to do.
        let c = parse(
            "[[repository]]\nname = \"a\"\nurl = \"/x\"\n[[repository]]\nname = \"b\"\nurl = \"/y\"\n[[source]]\nname = \"s\"\ntype = \"files\"\n",
        )
        .unwrap();
        let e = c
            .repository_for(Some(&c.source[0]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--repository NAME") && e.contains("\"s\""),
            "{e}"
        );
        let e = parse("[[source]]\nname = \"s\"\ntype = \"files\"\nrepository = \"nope\"\n")
            .unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }
}
