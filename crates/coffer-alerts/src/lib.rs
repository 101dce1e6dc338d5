/*!
coffer's alerting: rules, the alert lifecycle and the channels that deliver notifications.

- [`facts`]: what rules look at (per job, repository, channel, and the scheduler's
  heartbeat), read from the catalog with a cache keyed by each job's newest run.
- [`rules`]: the built-in rules (`coffer_config::rules::BUILTIN_RULES`) and the user's
  `[[rule]]`s, CEL over `coffer_config::rules::FIELDS`, turned into hits.
- [`engine`]: pending → firing → resolved, deduplication by rule + labels, grouping with
  group wait/interval, repeat per severity, silences, acknowledgements and inhibition.
- [`Alerter`]: one evaluation against the catalog, sending what is due through the
  channels in parallel and logging every delivery. The daemon runs it on each finished run
  and every `evaluation_interval`; `coffer alerts check` runs it once from outside.
- Channels: [`build`] turns a `[[channel]]` into a `Box<dyn Channel>`; adding a channel
  type is one file under `channels/` and one match arm there. Every channel retries
  connection errors, timeouts, HTTP 5xx and 429 with exponential backoff ([`RetryPolicy`]);
  other failures are final at once. Channels are synchronous (blocking HTTP and SMTP).
- Secrets (signing keys, SMTP passwords, and URLs, since chat robots carry their token in
  the URL) never appear in `Debug` output, errors or logs.

```no_run
use coffer_alerts::{build, test_notification, Options};
# fn main() -> Result<(), Box<dyn std::error::Error>> {
let cfg = coffer_config::Config::load(std::path::Path::new("/etc/coffer/coffer.toml"))?;
for c in &cfg.channel {
    let channel = build(c, &Options::default())?;
    let n = test_notification(c.min_severity(), c.lang(&cfg.server));
    match channel.send(&[n]) {
        Ok(d) => println!("{}: OK after {} attempt(s)", channel.name(), d.attempts),
        Err(e) => println!("{e}"),
    }
}
# Ok(())
# }
```
*/

mod alerter;
mod channels;
pub mod engine;
pub mod facts;
mod notification;
pub mod pings;
pub mod rules;

use std::time::Duration;

pub use alerter::{AlertError, Alerter, DeliveredAlert, DeliveryRecord, Evaluation};
pub use channels::build;
pub use coffer_config::alerts::{ChannelKind, Severity};
pub use notification::{fingerprint, test_notification, AlertStatus, Notification};

/// Delivers notifications somewhere.
pub trait Channel: Send + Sync {
    /// The `[[channel]]` name.
    fn name(&self) -> &str;
    /// The channel type.
    fn kind(&self) -> ChannelKind;
    /// The lowest severity this channel wants; callers filter with it.
    fn min_severity(&self) -> Severity;
    /// Sends the batch as one message (retrying as the [`RetryPolicy`] says). An error
    /// carries the [`Delivery`] record of the failed attempts.
    fn send(&self, notifications: &[Notification]) -> Result<Delivery, ChannelError>;
}

/// What happened when a batch was sent to one channel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// The channel's name.
    pub channel: String,
    /// The channel's type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// How many attempts were made (1 when the first one succeeded).
    pub attempts: u32,
    /// The HTTP status of the last attempt, when one got that far (SMTP: the reply code).
    pub status: Option<u16>,
    /// From the first attempt to the last answer, backoff included.
    #[serde(serialize_with = "ser_millis", rename = "duration_ms")]
    pub duration: Duration,
    /// Why the last attempt failed (`None` on success). Never holds a secret or a URL.
    pub error: Option<String>,
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Delivery {
    /// Whether the batch was delivered.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Why a channel could not be built or could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The `[[channel]]` table cannot make a working channel (config validation catches
    /// this first; the check here covers callers that skip it).
    #[error("channel {channel:?}: {message}")]
    Build {
        /// The channel's name.
        channel: String,
        /// What is wrong.
        message: String,
    },
    /// Every attempt failed, or the receiver refused the message.
    #[error("channel {:?} ({}): delivery failed after {} attempt(s): {}", .0.channel, .0.kind, .0.attempts, .0.error.as_deref().unwrap_or("unknown error"))]
    Delivery(Box<Delivery>),
}

impl ChannelError {
    /// The record of the failed delivery, when attempts were made.
    pub fn delivery(&self) -> Option<&Delivery> {
        match self {
            ChannelError::Delivery(d) => Some(d),
            ChannelError::Build { .. } => None,
        }
    }
}

/// How often, and how patiently, a channel retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each further one.
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `next` (2, 3, …).
    pub fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(16);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// Settings shared by every channel that the config file does not hold.
#[derive(Clone, Debug)]
pub struct Options {
    /// Retries.
    pub retry: RetryPolicy,
    /// How long one attempt may take, unless the channel's `timeout` says otherwise.
    pub timeout: Duration,
    /// The URL alerts link back to (the daemon's dashboard), when there is one.
    pub external_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            external_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        assert_eq!(p.delay_before(2), Duration::from_millis(100));
        assert_eq!(p.delay_before(3), Duration::from_millis(200));
        assert_eq!(p.delay_before(4), Duration::from_millis(350));
    }
}
