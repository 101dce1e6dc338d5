use crate::global::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {}

pub fn run(_g: &GlobalOpts, _c: Command) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
