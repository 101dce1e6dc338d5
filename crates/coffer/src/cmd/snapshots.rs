//! `coffer snapshots`: the snapshot list, restic's table or JSON. Archived WAL files (one
//! snapshot each) are left out unless asked for.

use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Only the latest N snapshots of each host and path set
    #[arg(long)]
    pub latest: Option<usize>,
    /// Also list archived WAL files (one snapshot each; shown anyway with --tag wal)
    #[arg(long)]
    pub all: bool,
    /// Only the snapshots of this source of the config file (tag source:NAME)
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    // A busy PostgreSQL cluster archives hundreds of WAL files a day, each its own snapshot:
    // listed only when asked for.
    let show_logs = a.all
        || a.filter
            .tags
            .iter()
            .any(|t| t.split(',').any(|t| t == "wal"));
    let mut hidden = 0usize;
    let mut snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|s| a.filter.matches(&s.snap))
        .filter(|s| {
            a.source
                .as_ref()
                .is_none_or(|n| s.snap.tags.contains(&format!("source:{n}")))
        })
        .filter(|s| {
            let shown = show_logs || !coffer_maint::chains::is_log_file(&s.snap);
            hidden += usize::from(!shown);
            shown
        })
        .collect();
    if let Some(n) = a.latest {
        let mut keep = Vec::new();
        let mut groups: std::collections::HashMap<(String, Vec<String>), usize> =
            Default::default();
        for s in snaps.into_iter().rev() {
            let c = groups
                .entry((s.snap.hostname.clone(), s.snap.paths.clone()))
                .or_default();
            if *c < n {
                *c += 1;
                keep.push(s);
            }
        }
        keep.reverse();
        snaps = keep;
    }
    if g.json {
        let list: Vec<serde_json::Value> = snaps
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s.snap).unwrap_or_default();
                v["id"] = s.id.to_hex().into();
                v["short_id"] = s.id.short().into();
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    // The source gets its own column; the audit chain's tag is for `audit verify`, not for
    // reading, and would make every row as wide as its MAC.
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            let tag = |p: &str| s.snap.tags.iter().find_map(|t| t.strip_prefix(p));
            let source = match (tag("source:"), tag("type:")) {
                (Some(n), Some(k)) => format!("{n} ({k})"),
                (Some(n), None) => n.to_string(),
                _ => "-".into(),
            };
            let tags: Vec<&str> = s
                .snap
                .tags
                .iter()
                .map(String::as_str)
                .filter(|t| {
                    !["source:", "type:", "audit:"]
                        .iter()
                        .any(|p| t.starts_with(p))
                })
                .collect();
            vec![
                s.id.short(),
                s.snap.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                s.snap.hostname.clone(),
                source,
                tags.join(","),
                s.snap.paths.join(", "),
            ]
        })
        .collect();
    crate::ui::print_table(&["ID", "Time", "Host", "Source", "Tags", "Paths"], &rows);
    println!("{} snapshots", snaps.len());
    if hidden > 0 {
        println!("({hidden} archived WAL files not listed: --all or --tag wal lists them)");
    }
    Ok(0)
}
