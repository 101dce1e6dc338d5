use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_g: &GlobalOpts, _a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}

/// Prune with default settings; `forget --prune` calls this after forgetting, with the
/// repository it already opened (the caller must not hold a lock any more).
pub fn run_default(g: &GlobalOpts) -> anyhow::Result<i32> {
    let _ = g;
    anyhow::bail!("not implemented yet")
}
