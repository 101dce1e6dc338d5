//! `type = "email"`: one plain-text message per batch over SMTP (`lettre`), with STARTTLS or
//! implicit TLS and AUTH when `username`/`password` are set.
//!
//! TLS (`tls` key): `smtps://` means TLS from the first byte; for `smtp://` the default is
//! STARTTLS whenever the server offers it and plain text otherwise, `tls = "starttls"` refuses
//! a server without it, and `tls = "none"` never upgrades (a relay on loopback, the tests).
//! Transient SMTP failures (4xx replies, connection errors) are retried; permanent ones (5xx:
//! unknown recipient, refused sender) are not.

use coffer_config::alerts::{parse_smtp_url, ChannelConfig, SmtpTls};
use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use super::{Attempt, Common};
use crate::notification::{batch_title, plain_text};
use crate::{Channel, ChannelError, ChannelKind, Delivery, Notification, Severity};

pub(crate) struct Email {
    common: Common,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: SmtpTransport,
}

impl Email {
    pub fn new(common: Common, cfg: &ChannelConfig) -> Result<Email, ChannelError> {
        let smtp = cfg
            .smtp
            .as_deref()
            .ok_or_else(|| common.build_error("key `smtp` is required"))?;
        let (_, host, port) = parse_smtp_url(smtp).ok_or_else(|| {
            common.build_error("key `smtp` must look like smtp://host:port or smtps://host:port")
        })?;
        let from: Mailbox = cfg
            .from
            .as_deref()
            .ok_or_else(|| common.build_error("key `from` is required"))?
            .parse()
            .map_err(|e| common.build_error(format!("key `from`: {e}")))?;
        let to = cfg
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| common.build_error(format!("key `to`: {t:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(common.build_error("key `to` lists no recipient"));
        }
        let params = || {
            TlsParameters::new(host.clone())
                .map_err(|e| common.build_error(format!("TLS setup for {host}: {e}")))
        };
        let tls = match cfg.smtp_tls() {
            SmtpTls::None => Tls::None,
            SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
            SmtpTls::Starttls => Tls::Required(params()?),
            SmtpTls::Tls => Tls::Wrapper(params()?),
        };
        // builder_dangerous: the TLS mode is set explicitly just above.
        let mut b = SmtpTransport::builder_dangerous(host.as_str())
            .port(port)
            .tls(tls)
            .timeout(Some(common.timeout));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            b = b.credentials(Credentials::new(u.0.clone(), p.0.clone()));
        }
        Ok(Email {
            from,
            to,
            transport: b.build(),
            common,
        })
    }

    fn message(&self, ns: &[Notification]) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(format!("[coffer] {}", batch_title(ns)))
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.body(plain_text(ns))
            .map_err(|e| format!("building the message: {e}"))
    }
}

/// An SMTP reply code as a number.
fn code(c: lettre::transport::smtp::response::Code) -> Option<u16> {
    c.to_string().parse().ok()
}

impl Channel for Email {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }
    fn min_severity(&self) -> Severity {
        self.common.min_severity
    }
    fn send(&self, ns: &[Notification]) -> Result<Delivery, ChannelError> {
        let msg = match self.message(ns) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .common
                    .with_retries(|| Attempt::failed(None, e.clone(), false))
            }
        };
        self.common
            .with_retries(|| match self.transport.send(&msg) {
                Ok(r) => Attempt::ok(code(r.code())),
                Err(e) => Attempt::failed(
                    e.status().and_then(code),
                    format!("SMTP: {e}"),
                    !e.is_permanent(),
                ),
            })
    }
}
