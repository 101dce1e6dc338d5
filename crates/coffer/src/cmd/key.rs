//! `coffer key list | add | remove | passwd`: the repository's key files, each wrapping the one
//! master key under its own password. Output and rules follow restic 0.17; the key files are
//! restic's, so both tools open the repository with any of them.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::global::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the keys; the one this command opened the repository with is marked with *
    List,
    /// Add a key (password) that opens the repository, next to the existing ones
    Add(NewKey),
    /// Remove a key by id or unique id prefix (not the one in use, never the last)
    Remove {
        /// Key id or unique prefix, as `coffer key list` shows it
        id: String,
    },
    /// Change the password: add a key with the new password, then remove the current key
    Passwd(NewKey),
}

/// Where the new password and the key's labels come from.
#[derive(clap::Args, Debug)]
pub struct NewKey {
    /// File holding the new password (surrounding whitespace is ignored); without it coffer
    /// prompts twice on the terminal
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// User name recorded in the new key (default: the current user)
    #[arg(long)]
    pub user: Option<String>,
    /// Host name recorded in the new key (default: this host)
    #[arg(long)]
    pub host: Option<String>,
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    match c {
        Command::List => list(g),
        Command::Add(a) => add(g, a),
        Command::Remove { id } => remove(g, &id),
        Command::Passwd(a) => passwd(g, a),
    }
}

/// restic's time format for key listings.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

fn list(g: &GlobalOpts) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let current = repo.key_id();
    let keys = repo.keys()?;
    let created = |k: &coffer_repo::keyfile::KeyFile| {
        k.created
            .map(|t| t.format(TIME_FORMAT).to_string())
            .unwrap_or_default()
    };
    if g.json {
        let list: Vec<serde_json::Value> = keys
            .iter()
            .map(|(id, k)| {
                serde_json::json!({
                    "current": *id == current,
                    "id": id.to_hex(),
                    "userName": k.username,
                    "hostName": k.hostname,
                    "created": created(k),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    let rows: Vec<[String; 4]> = keys
        .iter()
        .map(|(id, k)| {
            [
                format!("{}{}", if *id == current { '*' } else { ' ' }, id.short()),
                k.username.clone(),
                k.hostname.clone(),
                created(k),
            ]
        })
        .collect();
    let header = [" ID", "User", "Host", "Created"].map(String::from);
    let mut widths = [0usize; 4];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |r: &[String; 4]| {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        cells.join("  ").trim_end().to_string()
    };
    let rule = "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1));
    println!("{}", line(&header));
    println!("{rule}");
    for r in &rows {
        println!("{}", line(r));
    }
    println!("{rule}");
    Ok(0)
}

/// The new password: from --new-password-file, else asked twice on the terminal.
fn new_password(a: &NewKey) -> anyhow::Result<String> {
    if let Some(f) = &a.new_password_file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("reading new password file {}", f.display()))?;
        // Trimmed like the repository password file, so one file serves coffer and restic.
        let p = s.trim().to_string();
        if p.is_empty() {
            bail!("new password file {} is empty", f.display());
        }
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new password given: use --new-password-file FILE (no terminal to prompt on)");
    }
    let p = rpassword::prompt_password("enter new password: ")
        .context("reading the new password from the terminal")?;
    let again = rpassword::prompt_password("enter password again: ")
        .context("reading the new password from the terminal")?;
    if again != p {
        bail!("passwords do not match");
    }
    if p.is_empty() {
        bail!("an empty password is not allowed");
    }
    Ok(p)
}

fn add(g: &GlobalOpts, a: NewKey) -> anyhow::Result<i32> {
    let repo = g.open()?;
    // Read the password before locking, so a slow typist does not hold the lock.
    let password = new_password(&a)?;
    let _lock = g.lock(&repo, false)?;
    let id = repo
        .add_key(&password, a.user.as_deref(), a.host.as_deref())
        .with_context(|| format!("adding a key to {}", repo.backend().location()))?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "key_added", "id": id.to_hex()})
        );
    } else if !g.quiet {
        println!("saved new key with ID {id}");
    }
    Ok(0)
}

fn remove(g: &GlobalOpts, prefix: &str) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let _lock = g.lock(&repo, true)?;
    let ids = repo
        .backend()
        .list_ids(coffer_repo::backend::FileType::Key)?;
    let found: Vec<_> = ids.iter().filter(|id| id.has_prefix(prefix)).collect();
    let id = match found.as_slice() {
        [] => bail!("no key with id {prefix:?} in the repository (`coffer key list` shows them)"),
        [one] => **one,
        _ => bail!(
            "key id prefix {prefix:?} is ambiguous ({} keys match): give more digits",
            found.len()
        ),
    };
    repo.remove_key(&id)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "key_removed", "id": id.to_hex()})
        );
    } else if !g.quiet {
        println!("removed key {id}");
    }
    Ok(0)
}

fn passwd(g: &GlobalOpts, a: NewKey) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let password = new_password(&a)?;
    let _lock = g.lock(&repo, true)?;
    let (new, old) = repo
        .change_password(&password, a.user.as_deref(), a.host.as_deref())
        .with_context(|| format!("changing the password of {}", repo.backend().location()))?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "key_changed",
                "id": new.to_hex(),
                "removed": old.to_hex(),
            })
        );
    } else if !g.quiet {
        println!("saved new key with ID {new}");
        println!("removed the old key {old}");
    }
    Ok(0)
}
