use coffer_repo::lock::remove_locks;

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove all locks, even those of live processes
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let n = remove_locks(&repo, a.remove_all)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "unlock", "removed": n})
        );
    } else if !g.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(0)
}
