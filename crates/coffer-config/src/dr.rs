//! Disaster recovery in the config: each source's recovery targets (`rpo`, `rto`; defaults by
//! type from the seeds' table), `[[scenario]]` runbooks of ordered steps with a timeout each,
//! `[dr]` (the order of a full recovery, how old the last good drill may be), and the built-in
//! scenarios every config has: `<source>_failure` per source, `database_failure` and
//! `redis_failure` when such sources exist, and `full_disaster` (every source, databases before
//! caches before files). A declared scenario replaces a built-in one of the same name.
//!
//! ```toml
//! [[source]]
//! name = "pg-main"
//! type = "postgres"
//! rpo = "1h"
//! rto = "30m"
//!
//! [[scenario]]
//! name = "database_failure"
//! rto = "30m"
//! drill_schedule = "0 3 1 * *"
//! steps = [
//!   { run = ["systemctl", "stop", "shop-api"], timeout = "1m" },
//!   { restore = "pg-main", database = "shop", clean = true },
//!   { check = "pg-main", sql = "SELECT count(*) > 0 FROM orders" },
//!   { wait_for = "tcp://127.0.0.1:8080", timeout = "2m" },
//! ]
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::jobs::{parse_schedule, Span};
use crate::{Config, SourceEntry};

/// `[dr]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrConfig {
    /// The order of sources in `full_disaster` (default: databases, then caches, then the rest,
    /// each in config order). Sources not named come after, in the default order.
    #[serde(default)]
    pub order: Vec<String>,
    /// A scenario whose newest good drill is older than this is overdue (default 35d).
    #[serde(default = "default_drill_max_age")]
    pub drill_max_age: Span,
    /// The whole site's targets, used by `full_disaster` (default 4h / 2h, the seeds' table).
    #[serde(default = "default_site_rpo")]
    pub site_rpo: Span,
    /// See `site_rpo`.
    #[serde(default = "default_site_rto")]
    pub site_rto: Span,
    /// Where drills write their reports (default: `drills/` beside the catalog).
    pub reports: Option<String>,
}

impl Default for DrConfig {
    fn default() -> Self {
        DrConfig {
            order: Vec::new(),
            drill_max_age: default_drill_max_age(),
            site_rpo: default_site_rpo(),
            site_rto: default_site_rto(),
            reports: None,
        }
    }
}

fn default_drill_max_age() -> Span {
    Span(Duration::from_secs(35 * 86_400))
}

fn default_site_rpo() -> Span {
    Span(Duration::from_secs(4 * 3600))
}

fn default_site_rto() -> Span {
    Span(Duration::from_secs(2 * 3600))
}

/// A source's recovery targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Targets {
    /// Maximum acceptable age of the data a recovery brings back.
    pub rpo: Duration,
    /// Maximum acceptable time to bring it back.
    pub rto: Duration,
}

/// The seeds' table: databases 1h / 30m, Redis 15m / 10m, everything else 24h / 4h.
pub fn default_targets(kind: &str) -> Targets {
    let (rpo, rto) = match kind {
        "postgres" | "mariadb" => (3600, 1800),
        "redis" => (900, 600),
        _ => (86_400, 4 * 3600),
    };
    Targets {
        rpo: Duration::from_secs(rpo),
        rto: Duration::from_secs(rto),
    }
}

/// How a source type ranks in a full recovery: databases first, caches next, the rest last.
fn tier(kind: &str) -> u8 {
    match kind {
        "postgres" | "mariadb" => 0,
        "redis" => 1,
        _ => 2,
    }
}

/// `[[scenario]]`: a named runbook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Unique name (`coffer dr recover --scenario NAME`).
    pub name: String,
    /// What happened, in a sentence.
    #[serde(default)]
    pub description: String,
    /// The recovery time target (default: the longest `rto` of the sources it restores).
    pub rto: Option<Span>,
    /// Cron schedule on which the daemon runs this scenario's drill.
    pub drill_schedule: Option<String>,
    /// The steps, in order. Left out for a built-in scenario's name (`full_disaster`,
    /// `<source>_failure`, ...): the built-in's steps, with this entry's description, `rto`
    /// and `drill_schedule` where given.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Runs a command (skipped in drills unless `drill = true`).
    Run(RunStep),
    /// Restores a source from a snapshot.
    Restore(RestoreStep),
    /// Checks a restored source (SQL that must return true, or the type's own checks).
    Check(CheckStep),
    /// Waits until a TCP port accepts connections.
    WaitFor(WaitStep),
}

/// `{ run = [...] }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunStep {
    /// The program and its arguments (no shell).
    pub run: Vec<String>,
    /// Default 10m.
    pub timeout: Option<Span>,
    /// Run it in drills too (they run against scratch instances; default false).
    #[serde(default)]
    pub drill: bool,
}

/// `{ restore = "SOURCE", ... }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestoreStep {
    /// The source to restore.
    pub restore: String,
    /// Only this database (postgres, mariadb).
    pub database: Option<String>,
    /// Restore into a database of this name.
    pub to_database: Option<String>,
    /// Replace what is there.
    #[serde(default)]
    pub clean: bool,
    /// Files: the directory to restore into (default `/`, the original paths).
    pub target: Option<String>,
    /// Redis: the server to load into (default: the source's own `url`).
    pub to_url: Option<String>,
    /// Default: the source's `rto`.
    pub timeout: Option<Span>,
}

/// `{ check = "SOURCE", sql = "..." }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckStep {
    /// The source to check.
    pub check: String,
    /// A query whose first column of the first row must be true.
    pub sql: Option<String>,
    /// The database the query runs in (default: the restore step's, else the server's default).
    pub database: Option<String>,
    /// Default 5m.
    pub timeout: Option<Span>,
}

/// `{ wait_for = "tcp://HOST:PORT" }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// `tcp://HOST:PORT`.
    pub wait_for: String,
    /// Default 2m.
    pub timeout: Option<Span>,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        use serde::de::Error;
        let t = toml::Table::deserialize(d)?;
        let kinds: Vec<&str> = ["run", "restore", "check", "wait_for"]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .collect();
        let v = toml::Value::Table(t);
        let msg = |e: toml::de::Error| D::Error::custom(e.message().to_string());
        match kinds.as_slice() {
            ["run"] => v.try_into().map(Step::Run).map_err(msg),
            ["restore"] => v.try_into().map(Step::Restore).map_err(msg),
            ["check"] => v.try_into().map(Step::Check).map_err(msg),
            ["wait_for"] => v.try_into().map(Step::WaitFor).map_err(msg),
            [] => Err(D::Error::custom(
                "a step needs one of `run`, `restore`, `check` or `wait_for`",
            )),
            many => Err(D::Error::custom(format!(
                "a step does one thing: it has {} (write one step each)",
                many.join(" and ")
            ))),
        }
    }
}

impl Step {
    /// The source the step restores or checks.
    pub fn source(&self) -> Option<&str> {
        match self {
            Step::Restore(r) => Some(&r.restore),
            Step::Check(c) => Some(&c.check),
            _ => None,
        }
    }

    /// One line: `restore pg-main (database shop, clean)`.
    pub fn describe(&self) -> String {
        match self {
            Step::Run(r) => format!(
                "run {}{}",
                r.run.join(" "),
                if r.drill { " (also in drills)" } else { "" }
            ),
            Step::Restore(r) => {
                let mut opts = Vec::new();
                if let Some(d) = &r.database {
                    opts.push(format!("database {d}"));
                }
                if let Some(d) = r.to_database.as_ref().or(r.target.as_ref()) {
                    opts.push(format!("into {d}"));
                }
                if r.clean {
                    opts.push("clean".into());
                }
                if opts.is_empty() {
                    format!("restore {}", r.restore)
                } else {
                    format!("restore {} ({})", r.restore, opts.join(", "))
                }
            }
            Step::Check(c) => match &c.sql {
                Some(q) => format!("check {}: {q}", c.check),
                None => format!("check {}", c.check),
            },
            Step::WaitFor(w) => format!("wait for {}", w.wait_for),
        }
    }
}

/// A scenario as it will run: declared or built in, with its targets resolved.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it recovers from.
    pub description: String,
    /// Declared in the config (false: built in).
    pub declared: bool,
    /// Recovery time target.
    pub rto: Duration,
    /// Recovery point target: the tightest `rpo` of the sources it restores.
    pub rpo: Option<Duration>,
    /// Drill schedule, when declared.
    pub drill_schedule: Option<String>,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Config {
    /// A source's recovery targets: its `rpo` and `rto`, else its type's defaults.
    pub fn targets(&self, source: &SourceEntry) -> Targets {
        let d = default_targets(&source.kind);
        Targets {
            rpo: source.rpo.map_or(d.rpo, |s| s.0),
            rto: source.rto.map_or(d.rto, |s| s.0),
        }
    }

    /// The sources in the order of a full recovery: `[dr] order` first, then databases,
    /// caches and the rest, each in config order.
    pub fn recovery_order(&self) -> Vec<&SourceEntry> {
        let mut out: Vec<&SourceEntry> = self
            .dr
            .order
            .iter()
            .filter_map(|n| self.source.iter().find(|s| &s.name == n))
            .collect();
        let mut rest: Vec<&SourceEntry> = self
            .source
            .iter()
            .filter(|s| !self.dr.order.contains(&s.name))
            .collect();
        rest.sort_by_key(|s| tier(&s.kind));
        out.extend(rest);
        out
    }

    /// Every scenario: built-in ones, then declared ones (a declared one replaces the built-in
    /// of the same name, at the built-in's place).
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut out = self.builtin_scenarios();
        for s in &self.scenario {
            match out.iter_mut().find(|b| b.name == s.name) {
                // Only a schedule, a target or a description for a built-in.
                Some(b) if s.steps.is_empty() => {
                    if !s.description.is_empty() {
                        b.description = s.description.clone();
                    }
                    if let Some(r) = s.rto {
                        b.rto = r.0;
                    }
                    b.drill_schedule = s.drill_schedule.clone();
                    b.declared = true;
                }
                Some(b) => *b = self.resolve_scenario(s),
                None => out.push(self.resolve_scenario(s)),
            }
        }
        out
    }

    /// One scenario by name, or an error listing the names there are.
    pub fn find_scenario(&self, name: &str) -> Result<Scenario, String> {
        let all = self.scenarios();
        let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
        all.into_iter().find(|s| s.name == name).ok_or_else(|| {
            let hint = crate::suggest::did_you_mean(name, names.iter().map(String::as_str));
            format!(
                "no scenario is named {name:?}{hint}; there are: {} (coffer dr scenarios lists them)",
                names.join(", ")
            )
        })
    }

    fn resolve_scenario(&self, s: &ScenarioConfig) -> Scenario {
        let sources: Vec<&SourceEntry> = s
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::Restore(r) => self.source.iter().find(|e| e.name == r.restore),
                _ => None,
            })
            .collect();
        let rto = s.rto.map(|r| r.0).unwrap_or_else(|| {
            sources
                .iter()
                .map(|e| self.targets(e).rto)
                .max()
                .unwrap_or(self.dr.site_rto.0)
        });
        Scenario {
            name: s.name.clone(),
            description: s.description.clone(),
            declared: true,
            rto,
            rpo: sources.iter().map(|e| self.targets(e).rpo).min(),
            drill_schedule: s.drill_schedule.clone(),
            steps: s.steps.clone(),
        }
    }

    fn builtin_scenarios(&self) -> Vec<Scenario> {
        let restore_and_check = |sources: &[&SourceEntry]| -> Vec<Step> {
            sources
                .iter()
                .flat_map(|e| {
                    [
                        Step::Restore(RestoreStep {
                            restore: e.name.clone(),
                            database: None,
                            to_database: None,
                            clean: true,
                            target: None,
                            to_url: None,
                            timeout: None,
                        }),
                        Step::Check(CheckStep {
                            check: e.name.clone(),
                            sql: None,
                            database: None,
                            timeout: None,
                        }),
                    ]
                })
                .collect()
        };
        let group = |name: &str, description: String, sources: Vec<&SourceEntry>| Scenario {
            name: name.into(),
            description,
            declared: false,
            rto: sources
                .iter()
                .map(|e| self.targets(e).rto)
                .max()
                .unwrap_or_default(),
            rpo: sources.iter().map(|e| self.targets(e).rpo).min(),
            drill_schedule: None,
            steps: restore_and_check(&sources),
        };
        let order = self.recovery_order();
        let mut out: Vec<Scenario> = order
            .iter()
            .map(|e| {
                group(
                    &format!("{}_failure", e.name),
                    format!(
                        "{} ({}) lost: restore it from its newest backup",
                        e.name, e.kind
                    ),
                    vec![*e],
                )
            })
            .collect();
        let dbs: Vec<&SourceEntry> = order
            .iter()
            .copied()
            .filter(|e| tier(&e.kind) == 0)
            .collect();
        if !dbs.is_empty() {
            out.push(group(
                "database_failure",
                "Database servers lost: restore every PostgreSQL and MariaDB source".into(),
                dbs,
            ));
        }
        let caches: Vec<&SourceEntry> = order
            .iter()
            .copied()
            .filter(|e| e.kind == "redis")
            .collect();
        if !caches.is_empty() {
            out.push(group(
                "redis_failure",
                "Redis lost: restore every Redis source".into(),
                caches,
            ));
        }
        if !order.is_empty() {
            let mut full = group(
                "full_disaster",
                "The whole site lost: restore every source, databases before caches before files"
                    .into(),
                order,
            );
            full.rto = self.dr.site_rto.0;
            full.rpo = Some(self.dr.site_rpo.0);
            out.push(full);
        }
        out
    }

    pub(crate) fn validate_dr(&self, errors: &mut Vec<String>) {
        for s in &self.source {
            for (k, v) in [("rpo", s.rpo), ("rto", s.rto)] {
                if v.is_some_and(|v| v.0.is_zero()) {
                    errors.push(format!(
                        "{}: source {:?}: key `{k}` must be longer than 0s",
                        self.line_of("name", &s.name),
                        s.name
                    ));
                }
            }
        }
        for n in &self.dr.order {
            if !self.declared("source", n) {
                errors.push(format!(
                    "[dr] order: no [[source]] is named {n:?}{}",
                    crate::suggest::did_you_mean(n, self.source.iter().map(|s| s.name.as_str()))
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let builtin: Vec<String> = self
            .builtin_scenarios()
            .into_iter()
            .map(|b| b.name)
            .collect();
        for s in &self.scenario {
            let at = self.line_of("name", &s.name);
            if !seen.insert(&s.name) {
                errors.push(format!("{at}: scenario {:?} is declared twice", s.name));
            }
            if s.name.is_empty() || s.name.contains(|c: char| c.is_whitespace() || c == '/') {
                errors.push(format!(
                    "{at}: scenario name {:?} must be non-empty, without spaces or '/'",
                    s.name
                ));
            }
            if s.steps.is_empty() && !builtin.contains(&s.name) {
                errors.push(format!(
                    "{at}: scenario {:?} has no steps (only a built-in scenario's name, such as \
                     full_disaster, may leave them out to take the built-in's)",
                    s.name
                ));
            }
            if let Some(c) = &s.drill_schedule {
                if let Err(e) = parse_schedule(c) {
                    errors.push(format!(
                        "{at}: scenario {:?}: key `drill_schedule`: {e}",
                        s.name
                    ));
                }
            }
            for (i, st) in s.steps.iter().enumerate() {
                let step = format!("{at}: scenario {:?}, step {}", s.name, i + 1);
                if let Some(src) = st.source() {
                    if !self.declared("source", src) {
                        errors.push(format!(
                            "{step}: no [[source]] is named {src:?}{}",
                            crate::suggest::did_you_mean(
                                src,
                                self.source.iter().map(|s| s.name.as_str())
                            )
                        ));
                    }
                }
                match st {
                    Step::Run(r) if r.run.first().is_none_or(|p| p.is_empty()) => {
                        errors.push(format!("{step}: `run` needs a program"))
                    }
                    Step::WaitFor(w) if parse_tcp(&w.wait_for).is_err() => errors.push(format!(
                        "{step}: `wait_for` {:?} is not tcp://HOST:PORT",
                        w.wait_for
                    )),
                    _ => {}
                }
            }
        }
    }
}

/// Parses `tcp://HOST:PORT` into `HOST:PORT`.
pub fn parse_tcp(s: &str) -> Result<&str, String> {
    let hp = s
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("{s:?} is not tcp://HOST:PORT"))?;
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(hp),
        _ => Err(format!("{s:?} is not tcp://HOST:PORT")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<Config, String> {
        let t = format!(
            "[[repository]]\nname = \"r\"\nurl = \"/x\"\n\
             [[source]]\nname = \"etc\"\ntype = \"files\"\npaths = [\"/etc\"]\n\
             [[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"redis://127.0.0.1\"\n\
             [[source]]\nname = \"pg\"\ntype = \"postgres\"\nurl = \"postgresql://127.0.0.1/\"\nrpo = \"2h\"\n\
             {extra}"
        );
        Config::parse(&t, std::path::Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn builtins_follow_the_seeds_table_and_order() {
        let c = parse("").unwrap();
        let names: Vec<String> = c.scenarios().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "pg_failure",
                "cache_failure",
                "etc_failure",
                "database_failure",
                "redis_failure",
                "full_disaster"
            ]
        );
        let pg = c.targets(&c.source[2]);
        assert_eq!((pg.rpo.as_secs(), pg.rto.as_secs()), (7200, 1800));
        let redis = c.find_scenario("redis_failure").unwrap();
        assert_eq!(redis.rto.as_secs(), 600);
        let full = c.find_scenario("full_disaster").unwrap();
        assert_eq!(full.rto.as_secs(), 7200);
        assert_eq!(full.steps[0].describe(), "restore pg (clean)");
        assert!(c
            .find_scenario("redis_failur")
            .unwrap_err()
            .contains("did you mean `redis_failure`"));
        let c = parse("[dr]\norder = [\"etc\"]\n").unwrap();
        assert_eq!(c.recovery_order()[0].name, "etc");
        // A built-in's name without steps: its steps, with a schedule and a target of its own.
        let c = parse(
            "[[scenario]]\nname = \"full_disaster\"\nrto = \"3h\"\ndrill_schedule = \"0 3 1 * *\"\n",
        )
        .unwrap();
        let full = c.find_scenario("full_disaster").unwrap();
        assert_eq!(full.steps[0].describe(), "restore pg (clean)");
        assert_eq!(full.rto.as_secs(), 3 * 3600);
        assert_eq!(full.drill_schedule.as_deref(), Some("0 3 1 * *"));
        let e = parse("[[scenario]]\nname = \"mine\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no steps"), "{e}");
    }

    #[test]
    fn declared_scenarios_parse_and_replace_builtins() {
        let c = parse(
            "[[scenario]]\nname = \"database_failure\"\nrto = \"20m\"\ndrill_schedule = \"0 3 1 * *\"\nsteps = [\n\
             { run = [\"true\"], timeout = \"1m\" },\n\
             { restore = \"pg\", database = \"shop\", clean = true },\n\
             { check = \"pg\", sql = \"SELECT true\" },\n\
             { wait_for = \"tcp://127.0.0.1:8080\" },\n]\n",
        )
        .unwrap();
        let s = c.find_scenario("database_failure").unwrap();
        assert!(s.declared);
        assert_eq!(s.rto.as_secs(), 1200);
        assert_eq!(s.rpo.map(|d| d.as_secs()), Some(7200));
        assert_eq!(s.steps.len(), 4);
        assert_eq!(c.scenarios().len(), 6);
    }

    #[test]
    fn bad_scenarios_say_what_is_wrong() {
        let e = parse(
            "[[scenario]]\nname = \"x\"\nsteps = [ { restore = \"pgg\" }, { wait_for = \"localhost:80\" }, \
             { run = [\"a\"], check = \"pg\" } ]\n",
        )
        .unwrap_err();
        assert!(e.contains("a step does one thing"), "{e}");
        let e = parse(
            "[[scenario]]\nname = \"x\"\ndrill_schedule = \"0 25 * * *\"\nsteps = [ { restore = \"pgg\" }, \
             { wait_for = \"localhost:80\" } ]\n[dr]\norder = [\"nope\"]\n",
        )
        .unwrap_err();
        for want in [
            "no [[source]] is named \"pgg\" (did you mean `pg`?)",
            "is not tcp://HOST:PORT",
            "drill_schedule",
            "[dr] order: no [[source]] is named \"nope\"",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
        assert!(parse(
            "[[source]]\nname = \"z\"\ntype = \"files\"\npaths = [\"/z\"]\nrto = \"0s\"\n"
        )
        .unwrap_err()
        .contains("`rto` must be longer than 0s"));
    }
}
