use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_g: &GlobalOpts, _a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
