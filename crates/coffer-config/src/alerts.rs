//! `[[channel]]`: where alerts are sent. Parsed here and checked with everything that can be
//! checked without contacting a receiver (known type, the keys that type needs and only
//! those, a valid severity, unique names); sending belongs to `coffer-alerts`.
//!
//! ```toml
//! [[channel]]
//! name = "ops-mail"
//! type = "email"                  # email | webhook | slack | dingtalk | wecom | feishu | alertmanager
//! smtp = "smtp://mail.example.com:587"
//! from = "coffer@example.com"
//! to = ["ops@example.com"]
//! username = "coffer"
//! password = "${SMTP_PASSWORD}"
//! min_severity = "high"           # critical | high | medium | low (default low: everything)
//!
//! [[channel]]
//! name = "hooks"
//! type = "webhook"
//! url = "https://hooks.example.com/coffer"
//! secret = "${COFFER_WEBHOOK_SECRET}"
//! ```
//!
//! The table is flat (one struct with every key optional) rather than a serde enum tagged by
//! `type`, so that a mistake in one channel (an unknown type, a missing `url`) is reported
//! together with every other mistake in the file instead of stopping the parser at the first.
//! `url`, `secret`, `smtp`, `username` and `password` are [`EnvString`]s: chat robots carry
//! their token in the URL, so URLs are treated as secrets too and never printed.

use std::collections::HashSet;

use serde::Deserialize;

use crate::{Config, EnvString, Span};

/// One `[[channel]]` entry.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name, used by rules and by `coffer alert test --channel NAME`.
    pub name: String,
    /// `email`, `webhook`, `slack`, `dingtalk`, `wecom`, `feishu` or `alertmanager`; see
    /// [`ChannelConfig::kind`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The lowest severity this channel receives (`critical`, `high`, `medium`, `low`);
    /// default `low`, that is every alert.
    pub min_severity: Option<String>,
    /// HTTP channels: where to POST. `https://oapi.dingtalk.com/robot/send?access_token=…`,
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`,
    /// `https://open.feishu.cn/open-apis/bot/v2/hook/…`, `https://hooks.slack.com/services/…`;
    /// for `alertmanager` the base URL (`http://127.0.0.1:9093`).
    pub url: Option<EnvString>,
    /// `webhook`, `dingtalk`, `feishu`: the signing secret (see each channel's module in
    /// `coffer-alerts` for what is signed).
    pub secret: Option<EnvString>,
    /// `email`: `smtp://host:port` (default port 25) or `smtps://host:port` (TLS from the first
    /// byte, default port 465).
    pub smtp: Option<EnvString>,
    /// `email`: the sender address, `coffer@example.com` or `Coffer <coffer@example.com>`.
    pub from: Option<String>,
    /// `email`: recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// `email`: SMTP AUTH user (with `password`).
    pub username: Option<EnvString>,
    /// `email`: SMTP AUTH password (`${SMTP_PASSWORD}`).
    pub password: Option<EnvString>,
    /// `email`: `none` (plain text; only for a relay on loopback), `starttls` (required) or
    /// `tls` (implicit TLS). Default: `tls` for `smtps://`, and for `smtp://` STARTTLS whenever
    /// the server offers it (plain otherwise) — set `starttls` to refuse a server that does not.
    pub tls: Option<String>,
    /// How long one attempt may take (default 10s).
    pub timeout: Option<Span>,
    /// At most this many messages per period, `"20/1m"`; messages over the limit wait
    /// (default: `20/1m` for dingtalk and wecom, whose robots allow that much, none else).
    pub rate_limit: Option<String>,
    /// `en` or `zh-CN`: the language of the built-in alert texts this channel gets (default:
    /// `[server] language`, else English).
    pub language: Option<String>,
}

/// The channel types, one module each in `coffer-alerts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// SMTP.
    Email,
    /// Alertmanager webhook payload (version 4), optionally HMAC-signed.
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// DingTalk custom robot.
    Dingtalk,
    /// WeCom (WeChat Work) group robot.
    Wecom,
    /// Feishu / Lark custom bot.
    Feishu,
    /// Alertmanager API v2 push.
    Alertmanager,
}

impl ChannelKind {
    /// Every type, in the order the docs list them.
    pub const ALL: [ChannelKind; 7] = [
        ChannelKind::Email,
        ChannelKind::Webhook,
        ChannelKind::Slack,
        ChannelKind::Dingtalk,
        ChannelKind::Wecom,
        ChannelKind::Feishu,
        ChannelKind::Alertmanager,
    ];

    /// The `type = "…"` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Alertmanager => "alertmanager",
        }
    }

    /// Parses the `type = "…"` spelling.
    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn takes_secret(self) -> bool {
        matches!(
            self,
            ChannelKind::Webhook | ChannelKind::Dingtalk | ChannelKind::Feishu
        )
    }
}

/// Alert severity, lowest first so that `>=` means "at least as severe".
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Within a day.
    #[default]
    Low,
    /// Within the hour.
    Medium,
    /// Within 15 minutes.
    High,
    /// Now.
    Critical,
}

impl Severity {
    /// `critical`, `high`, `medium`, `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// Parses the lowercase spelling.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an `email` channel protects the SMTP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text.
    None,
    /// STARTTLS when the server offers it, plain otherwise (the `smtp://` default).
    Opportunistic,
    /// STARTTLS, or fail.
    Starttls,
    /// TLS from the first byte (`smtps://`).
    Tls,
}

impl ChannelConfig {
    /// The type, when it is a known one (validation has reported it otherwise).
    pub fn kind(&self) -> Option<ChannelKind> {
        ChannelKind::parse(&self.kind)
    }

    /// `min_severity`, `low` when unset (or invalid: validation has reported it).
    pub fn min_severity(&self) -> Severity {
        self.min_severity
            .as_deref()
            .and_then(Severity::parse)
            .unwrap_or_default()
    }

    /// The language of this channel's alert texts: its own, else `[server] language`, else
    /// English.
    pub fn lang(&self, server: &crate::ServerConfig) -> coffer_i18n::Lang {
        self.language
            .as_deref()
            .or(server.language.as_deref())
            .and_then(coffer_i18n::Lang::parse)
            .unwrap_or_default()
    }

    /// `rate_limit` as (messages, period), with the type's default.
    pub fn rate_limit(&self) -> Option<(u32, std::time::Duration)> {
        match &self.rate_limit {
            Some(r) => parse_rate(r).ok(),
            None => match self.kind() {
                Some(ChannelKind::Dingtalk | ChannelKind::Wecom) => {
                    Some((20, std::time::Duration::from_secs(60)))
                }
                _ => None,
            },
        }
    }

    /// The email channel's TLS mode, from `tls` or the `smtp` URL's scheme.
    pub fn smtp_tls(&self) -> SmtpTls {
        match self.tls.as_deref() {
            Some("none") => SmtpTls::None,
            Some("starttls") => SmtpTls::Starttls,
            Some("tls") => SmtpTls::Tls,
            _ if self
                .smtp
                .as_deref()
                .is_some_and(|s| s.starts_with("smtps://")) =>
            {
                SmtpTls::Tls
            }
            _ => SmtpTls::Opportunistic,
        }
    }
}

/// Checks every `[[channel]]`, appending one message per problem.
pub(crate) fn validate(cfg: &Config, errors: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for c in &cfg.channel {
        let at = format!("{}: channel {:?}", cfg.line_of("name", &c.name), c.name);
        if !seen.insert(&c.name) {
            errors.push(format!("{at} is declared twice"));
        }
        if c.name.is_empty()
            || c.name
                .contains(|ch: char| !(ch.is_ascii_alphanumeric() || "-_.".contains(ch)))
        {
            errors.push(format!(
                "{at}: the name may hold only letters, digits, '-', '_' and '.'"
            ));
        }
        if let Some(s) = &c.min_severity {
            if Severity::parse(s).is_none() {
                errors.push(format!(
                    "{at}: key `min_severity`: {s:?} is not one of critical, high, medium, low"
                ));
            }
        }
        if let Some(r) = &c.rate_limit {
            if let Err(e) = parse_rate(r) {
                errors.push(format!("{at}: key `rate_limit`: {e}"));
            }
        }
        if let Some(e) = crate::language_error(c.language.as_deref()) {
            errors.push(format!("{at}: key `language`: {e}"));
        }
        if c.timeout.is_some_and(|t| t.secs() == 0) {
            errors.push(format!("{at}: key `timeout` must be longer than 0s"));
        }
        let Some(kind) = c.kind() else {
            let known: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
            errors.push(format!(
                "{at}: key `type`: unknown channel type {:?} (one of {})",
                c.kind,
                known.join(", ")
            ));
            continue;
        };
        let t = kind.as_str();
        // Keys that belong to another type are mistakes (a `secret` on a Slack channel would
        // otherwise look like signing that never happens).
        let email_keys = [
            ("smtp", c.smtp.is_some()),
            ("from", c.from.is_some()),
            ("to", !c.to.is_empty()),
            ("username", c.username.is_some()),
            ("password", c.password.is_some()),
            ("tls", c.tls.is_some()),
        ];
        if kind == ChannelKind::Email {
            if c.url.is_some() {
                errors.push(format!(
                    "{at}: key `url` does not apply to an email channel (use `smtp`)"
                ));
            }
            if c.secret.is_some() {
                errors.push(format!(
                    "{at}: key `secret` does not apply to an email channel"
                ));
            }
            match c.smtp.as_deref() {
                None => errors.push(format!(
                    "{at}: key `smtp` is required (smtp://host:port or smtps://host:port)"
                )),
                Some(s) if parse_smtp_url(s).is_none() => errors.push(format!(
                    "{at}: key `smtp` must look like smtp://host:port or smtps://host:port"
                )),
                Some(_) => {}
            }
            match &c.from {
                None => errors.push(format!("{at}: key `from` is required")),
                Some(f) if !f.contains('@') => {
                    errors.push(format!("{at}: key `from`: {f:?} is not an email address"))
                }
                Some(_) => {}
            }
            if c.to.is_empty() {
                errors.push(format!("{at}: key `to` lists no recipient"));
            }
            for r in &c.to {
                if !r.contains('@') {
                    errors.push(format!("{at}: key `to`: {r:?} is not an email address"));
                }
            }
            if c.username.is_some() != c.password.is_some() {
                errors.push(format!(
                    "{at}: give both `username` and `password`, or neither"
                ));
            }
            if let Some(tls) = &c.tls {
                if !["none", "starttls", "tls"].contains(&tls.as_str()) {
                    errors.push(format!(
                        "{at}: key `tls`: {tls:?} is not one of none, starttls, tls"
                    ));
                }
            }
        } else {
            for (key, given) in email_keys {
                if given {
                    errors.push(format!("{at}: key `{key}` does not apply to a {t} channel"));
                }
            }
            match c.url.as_deref() {
                None => errors.push(format!("{at}: key `url` is required for a {t} channel")),
                // The URL may hold a token: say what is wrong without echoing it.
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => errors.push(
                    format!("{at}: key `url` must start with http:// or https://"),
                ),
                Some(_) => {}
            }
            if c.secret.is_some() && !kind.takes_secret() {
                errors.push(format!(
                    "{at}: key `secret` does not apply to a {t} channel (only webhook, dingtalk and feishu are signed)"
                ));
            }
        }
    }
}

/// `"20/1m"` → (20, 60 s).
pub fn parse_rate(s: &str) -> Result<(u32, std::time::Duration), String> {
    let bad = || format!("{s:?} is not a rate such as \"20/1m\" (messages / period)");
    let (n, per) = s.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let per: Span = per.trim().parse().map_err(|_| bad())?;
    if n == 0 || per.secs() == 0 {
        return Err(bad());
    }
    Ok((n, per.0))
}

/// `smtp://host[:port]` or `smtps://host[:port]` → (implicit TLS, host, port).
pub fn parse_smtp_url(s: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("smtps://") {
        (true, r)
    } else {
        (false, s.strip_prefix("smtp://")?)
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 465 } else { 25 };
    let (host, port) = match rest.rsplit_once(':') {
        // `[::1]:25` and `host:25`; a bare IPv6 literal needs brackets.
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse().ok()?),
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', '?']) {
        return None;
    }
    Some((tls, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_channels_and_defaults() {
        let cfg = parse(
            r#"
[[channel]]
name = "mail"
type = "email"
smtp = "smtp://127.0.0.1:2525"
from = "coffer@example.com"
to = ["ops@example.com"]
tls = "none"

[[channel]]
name = "ding"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=x"
secret = "SEC1"
min_severity = "high"
"#,
        )
        .unwrap();
        assert_eq!(cfg.channel.len(), 2);
        assert_eq!(cfg.channel[0].smtp_tls(), SmtpTls::None);
        assert_eq!(cfg.channel[0].min_severity(), Severity::Low);
        assert_eq!(cfg.channel[1].kind(), Some(ChannelKind::Dingtalk));
        assert_eq!(cfg.channel[1].min_severity(), Severity::High);
        // Secrets stay out of Debug output.
        let dbg = format!("{:?}", cfg.channel[1]);
        assert!(
            !dbg.contains("SEC1") && !dbg.contains("access_token"),
            "{dbg}"
        );
    }

    #[test]
    fn reports_every_problem_with_lines() {
        let e = parse(
            r#"[[channel]]
name = "a"
type = "pager"

[[channel]]
name = "b"
type = "webhook"
min_severity = "urgent"

[[channel]]
name = "b"
type = "slack"
url = "https://hooks.slack.com/x"
secret = "s"

[[channel]]
name = "m"
type = "email"
to = []
"#,
        )
        .unwrap_err();
        for want in [
            "line 2: channel \"a\": key `type`: unknown channel type \"pager\"",
            "line 6: channel \"b\": key `min_severity`: \"urgent\"",
            "line 6: channel \"b\": key `url` is required for a webhook channel",
            "channel \"b\" is declared twice",
            "key `secret` does not apply to a slack channel",
            "line 17: channel \"m\": key `smtp` is required",
            "channel \"m\": key `from` is required",
            "channel \"m\": key `to` lists no recipient",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn smtp_urls() {
        assert_eq!(
            parse_smtp_url("smtp://mail.example.com:587"),
            Some((false, "mail.example.com".into(), 587))
        );
        assert_eq!(
            parse_smtp_url("smtps://mail.example.com"),
            Some((true, "mail.example.com".into(), 465))
        );
        assert_eq!(
            parse_smtp_url("smtp://[::1]:25"),
            Some((false, "::1".into(), 25))
        );
        assert_eq!(parse_smtp_url("http://x"), None);
        assert_eq!(parse_smtp_url("smtp://"), None);
    }
}
