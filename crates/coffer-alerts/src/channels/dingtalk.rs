//! `type = "dingtalk"`: a DingTalk custom robot
//! (`https://oapi.dingtalk.com/robot/send?access_token=…`), markdown message.
//!
//! Signing, when `secret` (the robot's `SEC…` key) is set, as DingTalk documents it:
//! `sign = urlencode(base64(HMAC-SHA256(key = secret, message = timestamp_ms + "\n" + secret)))`,
//! appended to the URL as `&timestamp=<ms>&sign=<sign>`. DingTalk refuses timestamps more than
//! an hour off, so each attempt signs afresh.
//!
//! DingTalk answers HTTP 200 even when it refuses a message (bad signature, keyword filter,
//! rate limit of 20 messages a minute): the refusal is `errcode != 0` in the JSON body.

use base64::Engine;
use coffer_config::alerts::ChannelConfig;
use serde_json::{json, Value};

use super::{check_errcode, hmac_sha256, post, to_json, Common};
use crate::notification::{batch_title, markdown};
use crate::{Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

pub(crate) struct Dingtalk {
    common: Common,
    url: String,
    secret: Option<String>,
}

impl Dingtalk {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Dingtalk, ChannelError> {
        Ok(Dingtalk {
            url: common.url(cfg)?,
            secret: cfg.secret.as_ref().map(|s| s.0.clone()),
            common,
        })
    }
}

/// The `sign` parameter, URL-encoded.
pub(crate) fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mac = hmac_sha256(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    );
    coffer_config::percent_encode(&base64::engine::general_purpose::STANDARD.encode(mac))
}

pub(crate) fn payload(ns: &[Notification]) -> Value {
    json!({
        "msgtype": "markdown",
        "markdown": {"title": batch_title(ns), "text": markdown(ns)},
    })
}

impl Channel for Dingtalk {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Dingtalk
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        let body = to_json(&payload(ns));
        self.common.with_retries(|| {
            let url = match &self.secret {
                Some(secret) => {
                    let ts = chrono::Utc::now().timestamp_millis();
                    let sep = if self.url.contains('?') { '&' } else { '?' };
                    format!("{}{sep}timestamp={ts}&sign={}", self.url, sign(secret, ts))
                }
                None => self.url.clone(),
            };
            post(
                self.common.timeout,
                &url,
                &[],
                body.clone(),
                Some(check_errcode),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_known_vector() {
        // python3: s = base64.b64encode(hmac.new(b"SECabc123", b"1700000000123\nSECabc123",
        //   hashlib.sha256).digest()); urllib.parse.quote_plus(s)
        assert_eq!(
            sign("SECabc123", 1_700_000_000_123),
            "etIBQNvdgq9e1O4P4gRnRS05m9vXVgr6%2F5xt3Azj2s8%3D"
        );
    }

    #[test]
    fn payload_shape() {
        let v = payload(&[crate::test_notification(
            Severity::Low,
            coffer_i18n::Lang::En,
        )]);
        assert_eq!(v["msgtype"], "markdown");
        assert!(v["markdown"]["title"]
            .as_str()
            .unwrap()
            .contains("CofferTest"));
        assert!(v["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("backup_job: coffer-test"));
    }
}
