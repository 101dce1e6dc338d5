//! `coffer forget`: remove snapshots by a retention policy or by id. The plan (groups, host
//! and paths by default; kept snapshots with reasons; WAL decisions) comes from
//! `coffer_maint::forget`, this command prints it (text, or restic's JSON) and removes the
//! snapshot files under the exclusive lock. Only snapshot files go: the data they used stays
//! until `prune` (or `forget --prune`).
//!
//! Also owns the helpers `tag` shares: resolving snapshot arguments, removing snapshot files,
//! restic's JSON form of a snapshot, and a plain text table.

use anyhow::{bail, Context};
use coffer_maint::forget::{self, ForgetPlan};
use coffer_maint::retention::{self, GroupBy, KeepDuration, Policy, TagList};
use coffer_repo::lock::LockGuard;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::{Id, Repository};

use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to forget (ids, unique id prefixes or "latest"), instead of a policy
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots (-1 or "unlimited": all)
    #[arg(short = 'l', long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the last N hours
    #[arg(long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub keep_hourly: Option<i32>,
    /// Keep the newest snapshot of each of the last N days
    #[arg(short = 'd', long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub keep_daily: Option<i32>,
    /// Keep the newest snapshot of each of the last N ISO weeks
    #[arg(short = 'w', long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub keep_weekly: Option<i32>,
    /// Keep the newest snapshot of each of the last N months
    #[arg(short = 'm', long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub keep_monthly: Option<i32>,
    /// Keep the newest snapshot of each of the last N years
    #[arg(short = 'y', long, value_name = "N", value_parser = count, allow_negative_numbers = true)]
    pub keep_yearly: Option<i32>,
    /// Keep every snapshot newer than DURATION before the newest one (e.g. 1y6m2w3d4h)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_within: Option<KeepDuration>,
    /// Keep hourly snapshots newer than DURATION before the newest one
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_within_hourly: Option<KeepDuration>,
    /// Keep daily snapshots newer than DURATION before the newest one
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_within_daily: Option<KeepDuration>,
    /// Keep weekly snapshots newer than DURATION before the newest one
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_within_weekly: Option<KeepDuration>,
    /// Keep monthly snapshots newer than DURATION before the newest one
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_within_monthly: Option<KeepDuration>,
    /// Keep yearly snapshots newer than DURATION before the newest one
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_within_yearly: Option<KeepDuration>,
    /// Keep snapshots carrying all of these comma-separated tags (repeatable: any list)
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Apply the policy per group of host, paths and/or tags ("" for one group)
    #[arg(short = 'g', long, value_name = "GROUPING", default_value = "host,paths", value_parser = group_by)]
    pub group_by: GroupBy,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards if snapshots were removed
    #[arg(long)]
    pub prune: bool,
}

fn count(s: &str) -> Result<i32, String> {
    retention::parse_count(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<KeepDuration, String> {
    s.parse().map_err(|e: retention::PolicyError| e.to_string())
}

fn group_by(s: &str) -> Result<GroupBy, String> {
    s.parse().map_err(|e: retention::PolicyError| e.to_string())
}

impl Args {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within.unwrap_or_default(),
            within_hourly: self.keep_within_hourly.unwrap_or_default(),
            within_daily: self.keep_within_daily.unwrap_or_default(),
            within_weekly: self.keep_within_weekly.unwrap_or_default(),
            within_monthly: self.keep_within_monthly.unwrap_or_default(),
            within_yearly: self.keep_within_yearly.unwrap_or_default(),
            tags: self.keep_tag.iter().map(|t| TagList::parse(t)).collect(),
        }
    }
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let policy = a.policy();
    policy.validate()?;
    if a.snapshots.is_empty() && policy.is_empty() {
        bail!(
            "no policy given, nothing would be removed: use --keep-last, --keep-hourly, \
             --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within, \
             --keep-within-hourly/-daily/-weekly/-monthly/-yearly or --keep-tag, \
             or name the snapshots to forget"
        );
    }
    if !a.snapshots.is_empty() && !policy.is_empty() {
        bail!("give either snapshot ids or --keep-* options, not both");
    }

    let repo = g.open()?;
    // The lock comes before listing, so that the snapshots the policy saw are the ones there.
    let lock = if a.dry_run {
        None
    } else {
        Some(g.lock(&repo, true)?)
    };
    let (all, unreadable) = repo.snapshots_and_damage()?;
    // A damaged snapshot file named by its id is removed like any other: nothing of it can
    // be read, and it would otherwise block prune.
    let (named_damaged, unreadable): (Vec<_>, Vec<_>) = unreadable.into_iter().partition(|d| {
        a.snapshots
            .iter()
            .any(|spec| spec.len() >= 4 && spec != "latest" && d.id.has_prefix(spec))
    });
    unreadable.iter().for_each(|d| d.warn());
    let specs: Vec<String> = a
        .snapshots
        .iter()
        .filter(|spec| !named_damaged.iter().any(|d| d.id.has_prefix(spec)))
        .cloned()
        .collect();
    let snaps: Vec<SnapshotWithId> = all
        .iter()
        .filter(|s| a.filter.matches(&s.snap))
        .cloned()
        .collect();
    let text = !g.json && !g.quiet;

    let remove: Vec<&SnapshotWithId> = if a.snapshots.is_empty() {
        apply_policy(g, &a, &policy, &snaps, &all)?
    } else {
        let chosen = resolve(&snaps, &specs)?;
        if text {
            println!(
                "{} {} snapshots:",
                if a.dry_run { "would remove" } else { "remove" },
                chosen.len()
            );
            print_snapshots(&chosen, None);
            println!();
        }
        chosen
    };

    if text {
        for d in &named_damaged {
            println!(
                "{} damaged snapshot file {} ({})",
                if a.dry_run { "would remove" } else { "remove" },
                d.id.short(),
                d.reason
            );
        }
    }
    if a.dry_run {
        if text {
            println!("would remove {} snapshots (dry run)", remove.len());
        }
    } else if let Some(lock) = &lock {
        let mut ids: Vec<Id> = named_damaged.iter().map(|d| d.id).collect();
        ids.extend(remove.iter().map(|s| s.id));
        remove_snapshot_files(&repo, &ids, lock)?;
        let ids: Vec<Id> = remove.iter().map(|s| s.id).collect();
        record_forgotten(g, &ids);
        if text {
            println!("removed {} snapshots", ids.len());
        }
    }
    drop(lock);

    if a.prune && !(remove.is_empty() && named_damaged.is_empty()) {
        if a.dry_run {
            if text {
                println!("dry run: prune not run");
            }
        } else {
            if text {
                println!("running prune");
            }
            return super::prune::run_default(g);
        }
    }
    Ok(0)
}

/// Notes the removed snapshots in the run catalog of the config, when there is one, so that
/// a restore asking for one of them says why it is gone. Never creates a catalog.
fn record_forgotten(g: &GlobalOpts, ids: &[Id]) {
    let Ok(Some(cfg)) = g.config() else {
        return;
    };
    if ids.is_empty() || !super::job::catalog_path(&cfg).exists() {
        return;
    }
    let hex: Vec<String> = ids.iter().map(|i| i.to_hex()).collect();
    let by = format!("coffer forget ({})", super::job::whoami());
    if let Err(e) = super::job::catalog(&cfg).and_then(|c| Ok(c.record_forgotten(&hex, &by)?)) {
        tracing::warn!(error = %e, "recording removed snapshots in the run catalog");
    }
}

/// Plans the policy (`coffer_maint::forget`) and prints the plan; returns the snapshots to
/// remove. `all` is every snapshot, filter or not (a base backup outside the filter still
/// holds its WAL).
fn apply_policy<'a>(
    g: &GlobalOpts,
    a: &Args,
    policy: &Policy,
    snaps: &'a [SnapshotWithId],
    all: &[SnapshotWithId],
) -> anyhow::Result<Vec<&'a SnapshotWithId>> {
    let (logs, backups) = forget::split_logs(snaps);
    let groups = retention::group(backups, a.group_by);
    let plan = forget::plan(groups, &logs, all, policy, chrono::Utc::now());
    if g.json {
        println!("{}", plan_json(&plan));
    } else if !g.quiet {
        println!("Applying policy: {policy}");
        print_plan(&plan);
    }
    Ok(plan.removed())
}

fn print_plan(plan: &ForgetPlan<'_>) {
    for group in &plan.groups {
        let kept: Vec<&retention::Decision<'_>> = group.outcome.kept().collect();
        let removed: Vec<&SnapshotWithId> = group.outcome.removed().collect();
        println!("snapshots for {}:", group.key);
        if !kept.is_empty() {
            println!("keep {} snapshots:", kept.len());
            // Oldest first, as `snapshots` lists them.
            let list: Vec<&SnapshotWithId> = kept.iter().rev().map(|d| d.snapshot).collect();
            let reasons: Vec<String> = kept.iter().rev().map(|d| d.reasons.join(", ")).collect();
            print_snapshots(&list, Some(&reasons));
            println!();
        }
        if !removed.is_empty() {
            println!("remove {} snapshots:", removed.len());
            let list: Vec<&SnapshotWithId> = removed.iter().rev().copied().collect();
            print_snapshots(&list, None);
            println!();
        }
    }
    if let Some(d) = &plan.logs {
        println!("archived log files (WAL), kept while a remaining base backup needs them:");
        for (chain, start) in &d.chains {
            match start {
                Some(p) => println!("  {chain}: oldest remaining base backup starts at {p}"),
                None => println!("  {chain}: no base backup remains, all its files are kept"),
            }
        }
        println!(
            "keep {} WAL snapshots, remove {}",
            d.keep.len(),
            d.remove.len()
        );
        println!();
    }
}

/// restic's `[]ForgetGroup`; the parts not grouped by are null / "" as with restic. WAL is
/// one more group tagged "wal", with each chain's oldest remaining start.
fn plan_json(plan: &ForgetPlan<'_>) -> serde_json::Value {
    let mut groups: Vec<serde_json::Value> = plan
        .groups
        .iter()
        .map(|group| {
            let kept: Vec<&retention::Decision<'_>> = group.outcome.kept().collect();
            serde_json::json!({
                "tags": group.key.tags,
                "host": group.key.hostname.clone().unwrap_or_default(),
                "paths": group.key.paths,
                "keep": kept.iter().map(|d| snapshot_json(d.snapshot)).collect::<Vec<_>>(),
                "remove": group.outcome.removed().map(snapshot_json).collect::<Vec<_>>(),
                "reasons": kept
                    .iter()
                    .map(|d| serde_json::json!({
                        "snapshot": snapshot_json(d.snapshot),
                        "matches": d.reasons,
                        "counters": counters_json(&d.counters),
                    }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    if let Some(d) = &plan.logs {
        groups.push(serde_json::json!({
            "tags": ["wal"],
            "host": "",
            "paths": null,
            "keep": d.keep.iter().map(|s| snapshot_json(s)).collect::<Vec<_>>(),
            "remove": d.remove.iter().map(|s| snapshot_json(s)).collect::<Vec<_>>(),
            "reasons": [],
            "chains": d.chains,
        }));
    }
    serde_json::Value::Array(groups)
}

/// restic's counters object: rules that are off (0) are left out.
fn counters_json(c: &retention::Counters) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("last", c.last),
        ("hourly", c.hourly),
        ("daily", c.daily),
        ("weekly", c.weekly),
        ("monthly", c.monthly),
        ("yearly", c.yearly),
    ] {
        if v != 0 {
            m.insert(k.into(), v.into());
        }
    }
    serde_json::Value::Object(m)
}

/// A snapshot as restic's `--json` output shows it: the file's fields plus `id` and `short_id`.
pub(crate) fn snapshot_json(s: &SnapshotWithId) -> serde_json::Value {
    let mut v = serde_json::to_value(&s.snap).unwrap_or_default();
    v["id"] = s.id.to_hex().into();
    v["short_id"] = s.id.short().into();
    v
}

/// Resolves snapshot arguments (full ids, unique prefixes, `latest`) among `snaps` (oldest
/// first), without duplicates; every argument must match, so nothing is changed on a typo.
pub(crate) fn resolve<'a>(
    snaps: &'a [SnapshotWithId],
    specs: &[String],
) -> anyhow::Result<Vec<&'a SnapshotWithId>> {
    let mut out: Vec<&SnapshotWithId> = Vec::new();
    for spec in specs {
        let found = coffer_repo::snapshot::resolve(snaps, spec)?;
        if !out.iter().any(|s| s.id == found.id) {
            out.push(found);
        }
    }
    Ok(out)
}

/// Deletes snapshot files from the repository and the local cache, under the exclusive lock.
pub(crate) fn remove_snapshot_files(
    repo: &Repository,
    ids: &[Id],
    lock: &LockGuard,
) -> anyhow::Result<()> {
    forget::remove(repo, ids, lock).with_context(|| {
        format!(
            "removing {} snapshot files (those already removed stay removed; run the command again)",
            ids.len()
        )
    })
}

/// Prints snapshots as a table, with a reasons column when given (one entry per snapshot).
pub(crate) fn print_snapshots(list: &[&SnapshotWithId], reasons: Option<&[String]>) {
    let mut header = vec!["ID", "Time", "Host", "Tags", "Paths"];
    if reasons.is_some() {
        header.push("Reasons");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut r = vec![
                s.id.short(),
                s.snap.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                s.snap.hostname.clone(),
                s.snap.tags.join(","),
                s.snap.paths.join(","),
            ];
            if let Some(rs) = reasons {
                r.push(rs.get(i).cloned().unwrap_or_default());
            }
            r
        })
        .collect();
    crate::ui::print_table(&header, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's config form of a policy parses into the same policy as the options.
    #[test]
    fn policy_from_toml_table() {
        #[derive(serde::Deserialize)]
        struct Config {
            retention: Policy,
        }
        let c: Config = toml::from_str("retention = { daily = 7, weekly = 4, monthly = 12 }")
            .expect("TOML policy");
        assert_eq!(
            c.retention,
            Policy {
                daily: 7,
                weekly: 4,
                monthly: 12,
                ..Policy::default()
            }
        );
        let c: Config = toml::from_str(
            "[retention]\nlast = 3\nyearly = \"unlimited\"\nwithin = \"1y6m\"\ntags = [\"keep\", [\"a\", \"b\"]]\n",
        )
        .expect("TOML policy");
        assert_eq!(c.retention.yearly, -1);
        assert_eq!(c.retention.within.to_string(), "1y6m");
        assert_eq!(c.retention.tags.len(), 2);
        assert!(toml::from_str::<Config>("retention = { daly = 7 }").is_err());
    }
}
