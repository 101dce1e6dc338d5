//! `type = "webhook"`: the Alertmanager webhook payload (version 4), so that bridges written
//! for Alertmanager (prometheus-webhook-dingtalk and the like) work unchanged, optionally
//! signed.
//!
//! Signing, when `secret` is set: coffer sends
//! - `X-Coffer-Timestamp: <unix seconds>` and
//! - `X-Coffer-Signature: sha256=<hex of HMAC-SHA256(key = secret, message = timestamp + "." + body)>`
//!
//! where `body` is the raw request body, byte for byte. Including the timestamp lets a
//! receiver refuse replays (reject timestamps more than a few minutes old); verify with a
//! constant-time comparison. In Python:
//! `hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()`.

use std::collections::BTreeMap;

use coffer_config::alerts::ChannelConfig;
use serde_json::{json, Value};

use super::{hmac_sha256, post, to_json, Common};
use crate::notification::rfc3339;
use crate::{AlertStatus, Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

pub(crate) struct Webhook {
    common: Common,
    url: String,
    secret: Option<String>,
}

impl Webhook {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Webhook, ChannelError> {
        Ok(Webhook {
            url: common.url(cfg)?,
            secret: cfg.secret.as_ref().map(|s| s.0.clone()),
            common,
        })
    }
}

/// `sha256=<hex>` over `timestamp.body`.
pub(crate) fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!("sha256={}", hex::encode(hmac_sha256(secret, &msg)))
}

/// Alertmanager's zero time: what it writes as `endsAt` of an alert still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Labels (or annotations) every alert of the batch has with the same value.
fn common(maps: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = maps.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The payload, as Alertmanager's webhook receiver sends it.
pub(crate) fn payload(receiver: &str, external_url: &str, ns: &[Notification]) -> Value {
    let labels: Vec<_> = ns.iter().map(|n| n.labels()).collect();
    let annotations: Vec<_> = ns.iter().map(|n| n.annotations()).collect();
    let common_labels = common(&labels);
    let status = if ns.iter().all(|n| n.status == AlertStatus::Resolved) {
        "resolved"
    } else {
        "firing"
    };
    let alerts: Vec<Value> = ns
        .iter()
        .zip(&labels)
        .zip(&annotations)
        .map(|((n, l), a)| {
            json!({
                "status": n.status.as_str(),
                "labels": l,
                "annotations": a,
                "startsAt": rfc3339(&n.starts_at),
                "endsAt": n.ends_at.as_ref().map(rfc3339).unwrap_or_else(|| ZERO_TIME.into()),
                "generatorURL": n.generator_url.clone().unwrap_or_default(),
                "fingerprint": n.fingerprint,
            })
        })
        .collect();
    // coffer groups by alert name, as a default Alertmanager route groups by alertname.
    let mut group_labels = BTreeMap::new();
    if let Some(a) = common_labels.get("alertname") {
        group_labels.insert("alertname".to_string(), a.clone());
    }
    let group_key = format!(
        "{{}}:{{{}}}",
        group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common(&annotations),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        let body = to_json(&payload(
            &self.common.name,
            self.common.external_url.as_deref().unwrap_or(""),
            ns,
        ));
        self.common.with_retries(|| {
            let mut headers = Vec::new();
            if let Some(secret) = &self.secret {
                // A fresh timestamp per attempt, so a retry is not mistaken for a replay.
                let ts = chrono::Utc::now().timestamp();
                headers.push(("x-coffer-timestamp", ts.to_string()));
                headers.push((
                    "x-coffer-signature",
                    signature(secret.as_bytes(), ts, &body),
                ));
            }
            post(self.common.timeout, &self.url, &headers, body.clone(), None)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_notification;

    #[test]
    fn signature_known_vector() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"s3cret", b"1700000000." + b"{\"a\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, br#"{"a":1}"#),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn payload_shape() {
        let n = test_notification(Severity::Low, coffer_i18n::Lang::En);
        let v = payload("hooks", "", std::slice::from_ref(&n));
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "hooks");
        assert_eq!(v["commonLabels"]["backup_job"], "coffer-test");
        assert_eq!(v["groupLabels"]["alertname"], "CofferTest");
        assert_eq!(v["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(v["alerts"][0]["fingerprint"], n.fingerprint.as_str());
    }
}
