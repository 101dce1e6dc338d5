//! `type = "slack"`: a Slack incoming webhook (`https://hooks.slack.com/services/…`). The
//! message is `text` (what notifications and old clients show) plus one mrkdwn section block.
//! Slack does not sign incoming webhooks: the URL is the secret.

use coffer_config::alerts::ChannelConfig;
use serde_json::{json, Value};

use super::{post, to_json, Common};
use crate::notification::{batch_title, plain_text};
use crate::{Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

pub(crate) struct Slack {
    common: Common,
    url: String,
}

impl Slack {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Slack, ChannelError> {
        Ok(Slack {
            url: common.url(cfg)?,
            common,
        })
    }
}

pub(crate) fn payload(ns: &[Notification]) -> Value {
    json!({
        "text": batch_title(ns),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": plain_text(ns)}},
        ],
    })
}

impl Channel for Slack {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        let body = to_json(&payload(ns));
        self.common
            .with_retries(|| post(self.common.timeout, &self.url, &[], body.clone(), None))
    }
}
