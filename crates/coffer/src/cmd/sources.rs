//! `coffer sources`: the sources the config file declares, with their latest snapshot; and the
//! loader `backup --source` and `restore --source` share.

use anyhow::Context;
use coffer_sources::Source;

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {}

/// Builds a declared source; returns it with the name of its repository.
pub fn load(g: &GlobalOpts, name: &str) -> anyhow::Result<(Box<dyn Source>, Option<String>)> {
    let cfg = g
        .config()?
        .context("--source needs a config file: use --config FILE or COFFER_CONFIG")?;
    let entry = cfg.source(name)?;
    let src = coffer_sources::build(&cfg, entry)?;
    let repo = cfg.repository_for(Some(entry)).ok().map(|r| r.name.clone());
    Ok((src, repo))
}

pub fn run(g: &GlobalOpts, _a: Args) -> anyhow::Result<i32> {
    let cfg = g.config()?.context(
        "`coffer sources` lists the sources of a config file: use --config FILE or COFFER_CONFIG",
    )?;
    let mut rows = Vec::new();
    let mut repos = std::collections::HashMap::new();
    for entry in &cfg.source {
        let src = coffer_sources::build(&cfg, entry)?;
        let repo_name = cfg.repository_for(Some(entry)).ok().map(|r| r.name.clone());
        let key = repo_name.clone().unwrap_or_default();
        if !repos.contains_key(&key) {
            let snaps = g
                .open_named(repo_name.as_deref())
                .and_then(|r| Ok(r.snapshots()?))
                .map_err(|e| format!("{e:#}"));
            repos.insert(key.clone(), snaps);
        }
        let tag = format!("source:{}", entry.name);
        let last = match &repos[&key] {
            // An archived WAL file is not a backup of its own: the last base backup counts.
            Ok(snaps) => snaps
                .iter()
                .rfind(|s| {
                    s.snap.tags.contains(&tag) && !coffer_maint::chains::is_log_file(&s.snap)
                })
                .map(|s| {
                    (
                        s.id.short(),
                        s.snap.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                    )
                }),
            Err(_) => None,
        };
        rows.push(serde_json::json!({
            "name": entry.name,
            "type": src.kind(),
            "repository": repo_name,
            "target": src.describe(),
            "last_snapshot": last.as_ref().map(|l| l.0.clone()),
            "last_time": last.as_ref().map(|l| l.1.clone()),
            "repository_error": repos[&key].as_ref().err(),
        }));
    }
    if g.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(0);
    }
    println!(
        "{:<16} {:<9} {:<10} {:<10} {:<20} target",
        "name", "type", "repository", "last", "time"
    );
    for r in &rows {
        println!(
            "{:<16} {:<9} {:<10} {:<10} {:<20} {}",
            r["name"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["repository"].as_str().unwrap_or("-"),
            r["last_snapshot"].as_str().unwrap_or("never"),
            r["last_time"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or("")
        );
        if let Some(e) = r["repository_error"].as_str() {
            println!("    repository unavailable: {e}");
        }
    }
    Ok(0)
}
