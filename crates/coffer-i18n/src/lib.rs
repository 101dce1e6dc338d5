/*!
coffer's messages in the languages its users read: one Fluent catalog per language
(`locales/en.ftl`, `locales/zh-CN.ftl`), compiled into the binary. English is the default
and the fallback: a message missing from another catalog is shown in English (the test
suite checks that none is missing).

The language of a command is [`Lang::from_env`] (`LC_ALL`, then `LC_MESSAGES`, then `LANG`,
as gettext reads them) unless the config's `[server] language` says otherwise; alert texts
follow each channel's `language`.

```
use coffer_i18n::{t, Lang};
assert_eq!(t!(Lang::En, "time-ago", d = "5m"), "5m ago");
assert_eq!(t!(Lang::ZhCn, "time-ago", d = "5m"), "5m前");
```
*/

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

pub use fluent_bundle::FluentValue as Value;

/// A language coffer speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    /// Every language, English first.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// `en` or `zh-CN`, as the config spells it.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// Parses a config value or a locale: `zh-CN`, `zh_CN.UTF-8`, `zh`, `en_US`, `C`.
    /// `None` for a language coffer does not speak.
    pub fn parse(s: &str) -> Option<Lang> {
        let base = s
            .split(['.', '@'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let base = base.replace('_', "-");
        if base == "zh"
            || base.starts_with("zh-cn")
            || base.starts_with("zh-hans")
            || base == "zh-sg"
        {
            Some(Lang::ZhCn)
        } else if base.is_empty() || base == "c" || base == "posix" || base.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The language of the environment: the first of `LC_ALL`, `LC_MESSAGES`, `LANG` that is
    /// set and not empty (gettext's order); English when it names another language.
    pub fn from_env() -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .and_then(|v| Lang::parse(&v))
            .unwrap_or_default()
    }

    fn source(self) -> &'static str {
        match self {
            Lang::En => include_str!("../locales/en.ftl"),
            Lang::ZhCn => include_str!("../locales/zh-CN.ftl"),
        }
    }

    fn bundle(self) -> &'static FluentBundle<FluentResource> {
        static BUNDLES: [OnceLock<FluentBundle<FluentResource>>; 2] =
            [OnceLock::new(), OnceLock::new()];
        BUNDLES[self as usize].get_or_init(|| {
            let id: unic_langid::LanguageIdentifier = self
                .tag()
                .parse()
                .unwrap_or_else(|_| unic_langid::LanguageIdentifier::default());
            let mut b = FluentBundle::new_concurrent(vec![id]);
            // Terminal and chat text: no Unicode isolation marks around arguments.
            b.set_use_isolating(false);
            // The catalogs are part of the binary and checked by the tests; a catalog that
            // does not parse leaves the bundle with what did, and English fills the gaps.
            let res = FluentResource::try_new(self.source().to_string())
                .unwrap_or_else(|(partial, _)| partial);
            let _ = b.add_resource(res);
            b
        })
    }

    /// Message `id` with `args`, in this language, else in English, else the id itself.
    pub fn format(self, id: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        let mut fa = FluentArgs::new();
        for (k, v) in args {
            fa.set(*k, v.clone());
        }
        for lang in [self, Lang::En] {
            let b = lang.bundle();
            if let Some(p) = b.get_message(id).and_then(|m| m.value()) {
                let mut errors = Vec::new();
                return b.format_pattern(p, Some(&fa), &mut errors).into_owned();
            }
        }
        id.to_string()
    }

    /// The message ids of this language's catalog (for the completeness test).
    pub fn ids(self) -> Vec<String> {
        self.source()
            .lines()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
            .filter_map(|l| l.split_once('=').map(|(id, _)| id.trim().to_string()))
            .collect()
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.tag())
    }
}

/// `t!(lang, "id", name = value, ...)`: message `id` in `lang` with named arguments (strings
/// or numbers).
#[macro_export]
macro_rules! t {
    ($lang:expr, $id:expr $(, $name:ident = $value:expr)* $(,)?) => {
        $lang.format($id, &[$((stringify!($name), $crate::Value::from($value))),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_exists_in_every_language_and_formats() {
        let en = Lang::En.ids();
        assert!(en.len() > 20, "{en:?}");
        for lang in Lang::ALL {
            let ids = lang.ids();
            for id in &en {
                assert!(ids.contains(id), "{id} is missing from {lang}");
            }
            for id in &ids {
                assert!(en.contains(id), "{id} of {lang} is not in English");
                let b = lang.bundle();
                let msg = b
                    .get_message(id)
                    .unwrap_or_else(|| panic!("{lang}: {id} does not parse"));
                assert!(msg.value().is_some(), "{lang}: {id} has no value");
            }
        }
    }

    #[test]
    fn locales_are_read_as_gettext_does() {
        assert_eq!(Lang::parse("zh_CN.UTF-8"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("zh-CN"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("en_US.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("C.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("de_DE"), None);
        assert_eq!(t!(Lang::ZhCn, "time-in", d = "3h43m"), "3h43m后");
        assert_eq!(t!(Lang::En, "no-such-message"), "no-such-message");
    }
}
