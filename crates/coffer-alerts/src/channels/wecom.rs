//! `type = "wecom"`: a WeCom (WeChat Work) group robot
//! (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`), markdown message (at most 4096
//! bytes; longer batches are cut). The robot is not signed: the key in the URL is the secret.
//! Refusals come back as HTTP 200 with `errcode != 0`.

use coffer_config::alerts::ChannelConfig;
use serde_json::{json, Value};

use super::{check_errcode, post, to_json, Common};
use crate::notification::markdown;
use crate::{Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

/// WeCom's limit on markdown content, in bytes.
const MAX_CONTENT: usize = 4096;

pub(crate) struct Wecom {
    common: Common,
    url: String,
}

impl Wecom {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Wecom, ChannelError> {
        Ok(Wecom {
            url: common.url(cfg)?,
            common,
        })
    }
}

pub(crate) fn payload(ns: &[Notification]) -> Value {
    let mut content = markdown(ns);
    if content.len() > MAX_CONTENT {
        // Cut on a character boundary rather than have the whole message refused.
        let mut end = MAX_CONTENT - 3;
        while !content.is_char_boundary(end) {
            end -= 1;
        }
        content.truncate(end);
        content.push('…');
    }
    json!({"msgtype": "markdown", "markdown": {"content": content}})
}

impl Channel for Wecom {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Wecom
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        let body = to_json(&payload(ns));
        self.common.with_retries(|| {
            post(
                self.common.timeout,
                &self.url,
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
    fn long_batches_are_cut_to_the_limit() {
        let ns: Vec<_> = (0..100)
            .map(|_| crate::test_notification(Severity::Low, coffer_i18n::Lang::En))
            .collect();
        let v = payload(&ns);
        assert!(v["markdown"]["content"].as_str().unwrap().len() <= MAX_CONTENT);
    }
}
