//! `coffer completions SHELL` and `coffer man --dir DIR`: shell completion scripts
//! (clap_complete) and man pages (clap_mangen), both generated from the same argument
//! definitions as `--help`, so they never drift from the binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

use crate::global::Cli;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory for coffer.1 and one coffer-COMMAND.1 per command (created if missing)
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    // Generated into memory: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "coffer", &mut script);
    std::io::Write::write_all(&mut std::io::stdout(), &script)?;
    Ok(0)
}

pub fn man(a: ManArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let cmd = Cli::command();
    let mut pages = 0;
    let mut write = |cmd: clap::Command, name: String| -> anyhow::Result<()> {
        let path = a.dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        // clap names are 'static; a handful of page names for a command that exits.
        let title: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(cmd.name(title))
            .render(&mut out)
            .with_context(|| format!("rendering the man page of {name}"))?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        pages += 1;
        Ok(())
    };
    for sub in cmd.get_subcommands() {
        // Nested commands (`coffer key add`) are described on their parent's page.
        write(sub.clone(), format!("coffer-{}", sub.get_name()))?;
    }
    write(cmd, "coffer".into())?;
    println!("wrote {pages} man pages into {}", a.dir.display());
    Ok(0)
}
