use coffer_repo::{InitOptions, Repository};

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(g: &GlobalOpts, _a: Args) -> anyhow::Result<i32> {
    let t = g.target(true)?;
    let repo = Repository::init(&t.location, &t.password, &InitOptions::default())?;
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
