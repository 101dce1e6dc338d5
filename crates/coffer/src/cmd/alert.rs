//! `coffer alert test [--channel NAME]`: sends a test notification through the config file's
//! `[[channel]]`s and prints the outcome per channel. The channels are `coffer_alerts`'; this
//! module picks them, sends, and prints (never a URL or secret).

use anyhow::{bail, Context};
use coffer_alerts::{build, test_notification, ChannelError, Delivery, Options};

use crate::global::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Send a test notification to every channel (or one) and print the outcome per channel;
    /// exit 0 when all were delivered, 1 otherwise
    Test {
        /// Only this channel
        #[arg(long)]
        channel: Option<String>,
    },
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    let Command::Test { channel } = c;
    let cfg = g
        .config()?
        .context("channels live in the config file: use --config FILE or COFFER_CONFIG")?;
    let chosen: Vec<_> = match &channel {
        Some(name) => {
            let Some(c) = cfg.channel.iter().find(|c| &c.name == name) else {
                let known: Vec<&str> = cfg.channel.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "no [[channel]] is named {name:?} (declared: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            vec![c]
        }
        None => cfg.channel.iter().collect(),
    };
    if chosen.is_empty() {
        bail!("the config file declares no [[channel]]");
    }
    let opts = Options::default();
    let server = &cfg.server;
    // Channels are independent: send to all at once so one slow receiver does not hold up
    // the report of the others.
    let results: Vec<(String, &'static str, Result<Delivery, ChannelError>)> =
        std::thread::scope(|s| {
            let handles: Vec<_> = chosen
                .iter()
                .map(|c| {
                    let opts = &opts;
                    s.spawn(move || {
                        let kind = c.kind().map(|k| k.as_str()).unwrap_or("unknown");
                        let r = build(c, opts).and_then(|ch| {
                            ch.send(&[test_notification(c.min_severity(), c.lang(server))])
                        });
                        (c.name.clone(), kind, r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(_) => (
                        "?".into(),
                        "unknown",
                        Err(ChannelError::Build {
                            channel: "?".into(),
                            message: "the sending thread panicked".into(),
                        }),
                    ),
                })
                .collect()
        });
    let mut all_ok = true;
    if !g.json {
        println!(
            "{:<20} {:<13} {:<7} {:>8} {:>6} {:>9}  ERROR",
            "CHANNEL", "TYPE", "RESULT", "ATTEMPTS", "HTTP", "DURATION"
        );
    }
    for (name, kind, r) in results {
        let d = match &r {
            Ok(d) => d.clone(),
            Err(e) => e.delivery().cloned().unwrap_or_else(|| Delivery {
                channel: name.clone(),
                kind,
                attempts: 0,
                status: None,
                duration: Default::default(),
                error: Some(e.to_string()),
            }),
        };
        all_ok &= d.ok();
        if g.json {
            let mut v = serde_json::to_value(&d)?;
            v["message_type"] = "alert_test".into();
            v["ok"] = d.ok().into();
            println!("{v}");
        } else {
            println!(
                "{:<20} {:<13} {:<7} {:>8} {:>6} {:>8}ms  {}",
                d.channel,
                d.kind,
                if d.ok() { "OK" } else { "FAILED" },
                d.attempts,
                d.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.duration.as_millis(),
                d.error.as_deref().unwrap_or("")
            );
        }
    }
    Ok(if all_ok { 0 } else { 1 })
}
