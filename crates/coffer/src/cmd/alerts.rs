//! `coffer alerts` (list, ack, check, deliveries) and `coffer silence` (add, list, expire):
//! the operator's side of alerting, over the catalog the daemon shares. Acks and silences
//! written here are picked up by a running daemon at its next evaluation (within
//! `evaluation_interval`); `alerts check` evaluates the rules itself, for when the daemon is
//! not running (cron on this or another host: the watcher must not depend on what it watches).

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use coffer_alerts::engine::{new_silence, parse_matcher, Alert};
use coffer_alerts::facts::RepoFacts;
use coffer_alerts::{Alerter, Options};
use coffer_catalog::Ack;
use coffer_i18n::t;

use crate::cmd::job::{audit, catalog, whoami};
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: Option<AlertsCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only alerts in this state (default: pending and firing)
    #[arg(long, value_parser = ["pending", "firing", "resolved", "all"])]
    state: Option<String>,
    /// Only alerts of this severity
    #[arg(long, value_parser = ["critical", "high", "medium", "low"])]
    severity: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum AlertsCommand {
    /// List alerts (the default)
    List(ListArgs),
    /// Acknowledge a firing alert: no more repeats of it until it resolves
    Ack {
        /// The alert's id (or a unique prefix of 6 characters or more)
        id: String,
        /// What you are doing about it
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Evaluate the rules once and send what is due, when the daemon is not running (from
    /// cron, on this host or another that shares the catalog); exit 1 if a delivery failed
    Check {
        /// Evaluate even though the daemon's heartbeat is fresh (it may then send twice)
        #[arg(long)]
        force: bool,
    },
    /// The notification log, newest first
    Deliveries {
        /// Only this channel
        #[arg(long)]
        channel: Option<String>,
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence alerts whose labels match every MATCHER (name=value, name!=value,
    /// name=~regex, name!~regex) for a while
    Add {
        /// Label matchers, e.g. backup_job=nightly alertname=BackupFailed
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long (2h, 30m, 1d)
        #[arg(long, conflicts_with = "until")]
        duration: Option<String>,
        /// Until this time (RFC 3339, e.g. 2026-12-01T06:00:00Z)
        #[arg(long)]
        until: Option<String>,
        /// Why (required)
        #[arg(long)]
        comment: String,
        /// Who (default: the user running the command)
        #[arg(long)]
        author: Option<String>,
    },
    /// List silences (active and pending; --expired for all)
    List {
        /// Include expired silences
        #[arg(long)]
        expired: bool,
    },
    /// End a silence now
    Expire {
        /// The silence's id (or a unique prefix of 6 characters or more)
        id: String,
    },
}

fn load(g: &GlobalOpts) -> anyhow::Result<coffer_config::Config> {
    g.config()?
        .context("alerting lives in the config file: use --config FILE or COFFER_CONFIG")
}

pub fn alerts(g: &GlobalOpts, a: AlertsArgs) -> anyhow::Result<i32> {
    match a.command.unwrap_or(AlertsCommand::List(a.list)) {
        AlertsCommand::List(l) => list(g, l),
        AlertsCommand::Ack { id, comment } => ack(g, &id, &comment),
        AlertsCommand::Check { force } => check(g, force),
        AlertsCommand::Deliveries { channel, limit } => deliveries(g, channel.as_deref(), limit),
    }
}

fn list(g: &GlobalOpts, l: ListArgs) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    let cat = catalog(&cfg)?;
    let rows = match l.state.as_deref() {
        Some("all") => cat.alert_query(None, l.severity.as_deref())?,
        Some(s) => cat.alert_query(Some(s), l.severity.as_deref())?,
        None => {
            let mut r = cat.alert_query(Some("firing"), l.severity.as_deref())?;
            r.extend(cat.alert_query(Some("pending"), l.severity.as_deref())?);
            r
        }
    };
    let alerts: Vec<Alert> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    if g.json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(0);
    }
    let l = crate::ui::lang();
    if alerts.is_empty() {
        println!("{}", t!(l, "alerts-none"));
        return Ok(0);
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let on = a
                .labels
                .get("backup_job")
                .or_else(|| a.labels.get("repository"))
                .or_else(|| a.labels.get("channel"))
                .cloned()
                .unwrap_or_default();
            // Whether anyone will be paged again is part of the state a person reads.
            let mut state = l.format(&format!("state-{}", a.state.as_str()), &[]);
            let mut note = String::new();
            if let Some(sup) = &a.suppressed_by {
                let word = if sup.starts_with("inhibited") {
                    t!(l, "state-inhibited")
                } else {
                    t!(l, "state-silenced")
                };
                state.push_str(&format!(", {word}"));
                note.push_str(&format!(" [{sup}]"));
            }
            if let Some(k) = &a.ack {
                state.push_str(&format!(", {}", t!(l, "state-acked")));
                note.push_str(&format!(" [acked by {}]", k.by));
            }
            vec![
                a.id.clone(),
                state,
                a.severity.as_str().to_string(),
                a.rule.clone(),
                on,
                super::job::local_time(a.firing_since.unwrap_or(a.active_since), now),
                format!("{}{note}", a.summary),
            ]
        })
        .collect();
    crate::ui::print_table(
        &super::job::headers(&[
            "col-id",
            "col-state",
            "col-severity",
            "col-alert",
            "col-on",
            "col-since",
            "col-summary",
        ]),
        &rows,
    );
    Ok(0)
}

fn ack(g: &GlobalOpts, id: &str, comment: &str) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    let cat = catalog(&cfg)?;
    let ack = Ack {
        by: whoami(),
        at: Utc::now(),
        comment: comment.to_string(),
    };
    let Some(full) = cat.ack(id, &ack)? else {
        audit(&cfg, &cat, "alert.ack", id, "not found");
        bail!("no firing alert has the id {id:?} (see `coffer alerts`; give 6 characters or more)");
    };
    audit(&cfg, &cat, "alert.ack", &full, "ok");
    if g.json {
        println!("{}", serde_json::json!({ "id": full, "acknowledged": ack }));
    } else if !g.quiet {
        println!(
            "alert {full} acknowledged by {}: no repeats until it resolves",
            ack.by
        );
    }
    Ok(0)
}

fn check(g: &GlobalOpts, force: bool) -> anyhow::Result<i32> {
    let cfg = Arc::new(load(g)?);
    let mut cat = catalog(&cfg)?;
    let now = Utc::now();
    let heartbeat: Option<DateTime<Utc>> = cat
        .meta("scheduler_heartbeat")?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let timeout = chrono::Duration::seconds(cfg.alerting.heartbeat_timeout.secs() as i64);
    if let Some(beat) = heartbeat.filter(|b| now - *b < timeout) {
        if !force {
            let age = (now - beat).num_seconds();
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "evaluated": false, "reason": "daemon alive", "heartbeat_age_seconds": age })
                );
            } else if !g.quiet {
                println!("the daemon is running (heartbeat {age}s ago) and evaluates the rules itself: nothing to do (--force to evaluate anyway)");
            }
            return Ok(0);
        }
    }
    let mut repos = Vec::new();
    for r in &cfg.repository {
        let measured = coffer_jobs::storage::measure(r, &cfg.server.storage).inspect_err(
            |e| tracing::warn!(repository = %r.name, error = %e, "storage not measured"),
        );
        let storage_known = measured.is_ok();
        let usage = measured.unwrap_or_default();
        repos.push(RepoFacts {
            name: r.name.clone(),
            storage_ratio: usage.as_ref().map(|u| u.ratio),
            storage_available: usage.as_ref().map(|u| u.available_bytes),
            storage_level: usage.map(|u| u.level.to_string()).unwrap_or_default(),
            storage_known,
            last_verify: None,
        });
    }
    let mut alerter = Alerter::new(Arc::clone(&cfg), &cat, &Options::default())?;
    let ev = alerter.evaluate(&mut cat, now, repos, heartbeat)?;
    let failed = ev.deliveries.iter().filter(|d| !d.ok).count();
    if g.json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else if !g.quiet {
        println!(
            "{} rule(s) evaluated: {} firing, {} pending, {} notification(s) sent, {failed} failed",
            alerter.rule_count(),
            ev.firing,
            ev.pending,
            ev.deliveries.len() - failed
        );
        for d in &ev.deliveries {
            let names: Vec<String> = d
                .alerts
                .iter()
                .map(|a| {
                    format!(
                        "{} {} ({})",
                        a.status,
                        a.alertname,
                        a.backup_job.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            println!(
                "  {} {}: {}{}",
                if d.ok { "OK    " } else { "FAILED" },
                d.channel,
                names.join(", "),
                d.error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            );
        }
        for e in &ev.rule_errors {
            eprintln!("rule error: {e}");
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn deliveries(g: &GlobalOpts, channel: Option<&str>, limit: usize) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    let cat = catalog(&cfg)?;
    let list: Vec<serde_json::Value> = cat
        .deliveries(channel, limit)?
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect();
    if g.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    for d in &list {
        let alerts: Vec<String> = d["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{} {}",
                            x["status"].as_str().unwrap_or(""),
                            x["alertname"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{} {:<16} {:<6} attempts={} {}{}",
            d["time"].as_str().unwrap_or(""),
            d["channel"].as_str().unwrap_or(""),
            if d["ok"].as_bool().unwrap_or(false) {
                "OK"
            } else {
                "FAILED"
            },
            d["attempts"],
            alerts.join(", "),
            d["error"]
                .as_str()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

pub fn silence(g: &GlobalOpts, c: SilenceCommand) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    let cat = catalog(&cfg)?;
    let now = Utc::now();
    match c {
        SilenceCommand::Add {
            matchers,
            duration,
            until,
            comment,
            author,
        } => {
            let matchers = matchers
                .iter()
                .map(|m| parse_matcher(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let ends = match (duration, until) {
                (Some(d), None) => {
                    let s = coffer_config::Span::parse_with_unit(&d)
                        .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
                    now + chrono::Duration::seconds(s.secs() as i64)
                }
                (None, Some(u)) => DateTime::parse_from_rfc3339(&u)
                    .with_context(|| {
                        format!("--until {u:?}: not an RFC 3339 time such as 2026-12-01T06:00:00Z")
                    })?
                    .with_timezone(&Utc),
                _ => bail!("give --duration (2h) or --until (RFC 3339 time)"),
            };
            let by = author.unwrap_or_else(whoami);
            let s =
                new_silence(matchers, now, ends, &by, &comment, now).map_err(anyhow::Error::msg)?;
            cat.add_silence(&s)?;
            audit(&cfg, &cat, "silence.add", &s.id, "ok");
            if g.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else if !g.quiet {
                println!("silence {} until {}", s.id, s.ends_at.to_rfc3339());
            }
        }
        SilenceCommand::List { expired } => {
            let list = cat.silences(expired, now, 1000)?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            if list.is_empty() {
                println!("no silences");
            }
            for s in &list {
                let m: Vec<String> = s
                    .matchers
                    .iter()
                    .map(|m| {
                        let op = match (m.is_equal, m.is_regex) {
                            (true, false) => "=",
                            (false, false) => "!=",
                            (true, true) => "=~",
                            (false, true) => "!~",
                        };
                        format!("{}{op}{}", m.name, m.value)
                    })
                    .collect();
                println!(
                    "{} {:<8} until {} by {}: {} — {}",
                    s.id,
                    s.state(now),
                    s.ends_at.format("%Y-%m-%d %H:%M:%S"),
                    s.created_by,
                    m.join(" "),
                    s.comment
                );
            }
        }
        SilenceCommand::Expire { id } => {
            let Some(full) = cat.expire_silence(&id, now)? else {
                audit(&cfg, &cat, "silence.expire", &id, "not found");
                bail!("no active or pending silence has the id {id:?} (see `coffer silence list`)");
            };
            audit(&cfg, &cat, "silence.expire", &full, "ok");
            if !g.quiet {
                println!("silence {full} expired");
            }
        }
    }
    Ok(0)
}
