//! `type = "feishu"`: a Feishu (Lark) custom bot
//! (`https://open.feishu.cn/open-apis/bot/v2/hook/…`), text message.
//!
//! Signing, when `secret` is set, as Feishu documents it — note that key and message are the
//! other way round from DingTalk's: `string_to_sign = timestamp_seconds + "\n" + secret` is the
//! HMAC-SHA256 *key* over an empty message; `sign = base64(mac)`. Both go in the JSON body as
//! `"timestamp"` (a string of seconds) and `"sign"`.
//!
//! Feishu answers HTTP 200 to refusals; the body's `code` (or, from older endpoints,
//! `StatusCode`) is then non-zero and `msg` says why.

use base64::Engine;
use coffer_config::alerts::ChannelConfig;
use serde_json::{json, Value};

use super::{hmac_sha256, post, to_json, Common};
use crate::notification::plain_text;
use crate::{Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

pub(crate) struct Feishu {
    common: Common,
    url: String,
    secret: Option<String>,
}

impl Feishu {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Feishu, ChannelError> {
        Ok(Feishu {
            url: common.url(cfg)?,
            secret: cfg.secret.as_ref().map(|s| s.0.clone()),
            common,
        })
    }
}

/// The `sign` field.
pub(crate) fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

pub(crate) fn payload(ns: &[Notification], signed: Option<(i64, String)>) -> Value {
    let mut v = json!({
        "msg_type": "text",
        "content": {"text": plain_text(ns)},
    });
    if let Some((ts, sign)) = signed {
        v["timestamp"] = Value::String(ts.to_string());
        v["sign"] = Value::String(sign);
    }
    v
}

fn check(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    let code = v
        .get("code")
        .or_else(|| v.get("StatusCode"))
        .and_then(Value::as_i64);
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(format!(
            "refused: code {c}: {}",
            v.get("msg")
                .or_else(|| v.get("StatusMessage"))
                .and_then(Value::as_str)
                .unwrap_or("")
        )),
        None => Err("unexpected answer: no `code` in the JSON body".into()),
    }
}

impl Channel for Feishu {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Feishu
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        self.common.with_retries(|| {
            // The timestamp is part of the body, so each attempt builds it afresh.
            let signed = self.secret.as_ref().map(|s| {
                let ts = chrono::Utc::now().timestamp();
                (ts, sign(s, ts))
            });
            post(
                self.common.timeout,
                &self.url,
                &[],
                to_json(&payload(ns, signed)),
                Some(check),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_known_vector() {
        // python3: base64.b64encode(hmac.new(b"1700000000\nfeishuSecret", b"",
        //   hashlib.sha256).digest())
        assert_eq!(
            sign("feishuSecret", 1_700_000_000),
            "s1kXC05eKiEHuyy1iNXgtQd2PntVWKcAeZLZlUt2XGA="
        );
    }

    #[test]
    fn refusals_in_the_body() {
        assert!(check(br#"{"code":0,"msg":"success","data":{}}"#).is_ok());
        assert!(check(br#"{"StatusCode":0,"StatusMessage":"success"}"#).is_ok());
        let e = check(br#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#).unwrap_err();
        assert!(e.contains("19021"), "{e}");
    }
}
