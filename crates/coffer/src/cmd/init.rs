use coffer_repo::{InitOptions, Repository};

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Use the chunker parameters of --from-repo, so that `copy` between the two deduplicates
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    #[command(flatten)]
    pub from: super::copy::FromRepo,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let mut opts = InitOptions::default();
    if a.copy_chunker_params {
        let src = a.from.open(g)?;
        opts.chunker_polynomial = Some(src.config().chunker_polynomial);
    }
    let t = g.target(true)?;
    let repo = Repository::init(&t.location, &t.password, &opts)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "initialized",
                "id": repo.config().id,
                "repository": t.location.to_string(),
            })
        );
    } else if !g.quiet {
        println!(
            "created coffer repository {} at {}\n\nPlease note that knowledge of your password is required to access\nthe repository. Losing your password means that your data is\nirrecoverably lost.",
            &repo.config().id[..10],
            t.location
        );
    }
    Ok(0)
}
