//! `type = "alertmanager"`: pushes to Alertmanager's API v2, `POST {url}/api/v2/alerts` with a
//! JSON array of alerts (labels, annotations, startsAt, endsAt, generatorURL), the way
//! Prometheus does. Alertmanager then groups, routes, silences and inhibits them itself.
//!
//! Alertmanager identifies an alert by its label set, so re-sending the same alert refreshes
//! it rather than duplicating it; a firing alert must be re-sent within its `resolve_timeout`
//! (default 5 min) or it expires, and a resolved one is sent once with `endsAt` set. The
//! re-sending belongs to the alert lifecycle, not to this module.

use coffer_config::alerts::ChannelConfig;
use serde_json::{json, Value};

use super::{post, to_json, Common};
use crate::notification::rfc3339;
use crate::{Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

pub(crate) struct Alertmanager {
    common: Common,
    endpoint: String,
}

impl Alertmanager {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Alertmanager, ChannelError> {
        let base = common.url(cfg)?;
        Ok(Alertmanager {
            endpoint: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
            common,
        })
    }
}

pub(crate) fn payload(ns: &[Notification], external_url: Option<&str>) -> Value {
    Value::Array(
        ns.iter()
            .map(|n| {
                let mut a = json!({
                    "labels": n.labels(),
                    "annotations": n.annotations(),
                    "startsAt": rfc3339(&n.starts_at),
                });
                // Without endsAt a firing alert lasts until resolve_timeout; with one in the
                // past it is resolved.
                if let Some(e) = &n.ends_at {
                    a["endsAt"] = Value::String(rfc3339(e));
                }
                // Alertmanager checks generatorURL is a URI: leave it out rather than send "".
                if let Some(g) = n.generator_url.as_deref().or(external_url) {
                    a["generatorURL"] = Value::String(g.to_string());
                }
                a
            })
            .collect(),
    )
}

impl Channel for Alertmanager {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Alertmanager
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        let body = to_json(&payload(ns, self.common.external_url.as_deref()));
        self.common
            .with_retries(|| post(self.common.timeout, &self.endpoint, &[], body.clone(), None))
    }
}
