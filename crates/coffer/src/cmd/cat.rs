use anyhow::bail;
use coffer_repo::backend::FileType;
use coffer_repo::index::IndexFile;
use coffer_repo::keyfile::KeyFile;
use coffer_repo::pack::read_header;
use coffer_repo::snapshot::Snapshot;
use coffer_repo::Id;

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to print: config, snapshot, index, key, pack (its header), masterkey-id
    pub what: String,
    /// Id (or prefix for snapshots); "latest" works for snapshots
    pub id: Option<String>,
}

fn full_id(repo: &coffer_repo::Repository, t: FileType, s: &str) -> anyhow::Result<Id> {
    if let Ok(id) = s.parse() {
        return Ok(id);
    }
    let ids: Vec<Id> = repo
        .backend()
        .list_ids(t)?
        .into_iter()
        .filter(|i| i.has_prefix(s))
        .collect();
    match ids.len() {
        1 => Ok(ids[0]),
        0 => bail!("no {t} file matches {s:?}"),
        _ => bail!("{t} prefix {s:?} is ambiguous"),
    }
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let need_id = || -> anyhow::Result<&str> {
        a.id.as_deref()
            .ok_or_else(|| anyhow::anyhow!("cat {} needs an id", a.what))
    };
    let v: serde_json::Value = match a.what.as_str() {
        "config" => serde_json::to_value(repo.config())?,
        "snapshot" => {
            let s = need_id()?;
            let id = if s == "latest" {
                repo.find_snapshot("latest", |_| true)?.id
            } else {
                full_id(&repo, FileType::Snapshot, s)?
            };
            serde_json::to_value(repo.load_json::<Snapshot>(FileType::Snapshot, &id)?)?
        }
        "index" => {
            let id = full_id(&repo, FileType::Index, need_id()?)?;
            serde_json::to_value(repo.load_json::<IndexFile>(FileType::Index, &id)?)?
        }
        "key" => {
            let id = match a.id.as_deref() {
                Some(s) => full_id(&repo, FileType::Key, s)?,
                None => repo.key_id(),
            };
            let bytes = repo.backend().read(FileType::Key, &id.to_hex())?;
            serde_json::to_value(serde_json::from_slice::<KeyFile>(&bytes)?)?
        }
        "masterkey-id" => serde_json::json!(repo.key_id().to_hex()),
        "pack" => {
            let id = full_id(&repo, FileType::Pack, need_id()?)?;
            let bytes = repo.backend().read(FileType::Pack, &id.to_hex())?;
            let blobs = read_header(repo.key(), &bytes)?;
            serde_json::json!(blobs
                .iter()
                .map(|b| serde_json::json!({
                    "id": b.id.to_hex(),
                    "type": b.kind.to_string(),
                    "offset": b.offset,
                    "length": b.length,
                    "uncompressed_length": b.uncompressed_length,
                }))
                .collect::<Vec<_>>())
        }
        other => {
            bail!("cannot cat {other:?}: use config, snapshot, index, key, pack or masterkey-id")
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}
