//! `[[push]]`: destinations each matching stream is restreamed to (RTMP or RTMPS), their URL
//! parsing, validation and the redacted forms logs, the API and metrics show.
//!
//! A push key is a [`Secret`]: it never appears in `Debug`, `--print-config` (unless it comes
//! from `${ENV}`) or anywhere the server reports. A destination URL may carry a token in its
//! query (some platforms put the key in the tcUrl query): [`PushUrl::shown`] drops the query.
//! No IO and no logging here.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::FieldDoc;
use super::secret::{REDACTED_PLACEHOLDER, Secret};

/// The key template that stands for the source stream's own key.
pub const SOURCE_KEY: &str = "{key}";

/// What a destination gets as audio. TOML: `"auto"`, `"aac"`, `"passthrough"` or `"drop"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioMode {
    /// The source's audio when the destination can decode it (AAC, MP3...); Opus (FTL) needs
    /// an AAC rendition, and without one the destination shows `last_error` and gets no audio.
    #[default]
    Auto,
    /// AAC only: Opus audio needs the AAC rendition (as `auto`).
    Aac,
    /// The source's audio as it is, whatever the codec (Enhanced RTMP destinations take Opus).
    Passthrough,
    /// No audio at all.
    Drop,
}

section! {
    /// One restream destination.
    pub struct PushConfig {
        /// Names the destination in logs, metrics and the API (letters, digits, '-', '_', '.').
        pub id: String = String::new(),
        /// The source: a stream name ("live/mykey"), or "live/*" for every stream of an app.
        pub from: String = String::new(),
        /// rtmp:// or rtmps:// URL of the destination, application path included
        /// (e.g. "rtmps://a.rtmp.youtube.com/live2").
        pub url: DestinationUrl = DestinationUrl::default(),
        /// The stream name sent in publish (the platform's stream key); "${ENV}" reads an
        /// environment variable and "{key}" is replaced by the source stream's key.
        pub key: Secret = Secret::default(),
        /// PEM file of a CA to trust for this destination only (rtmps:// only); unset: the
        /// system's roots, or webpki's when the system has none.
        pub tls_ca: Option<PathBuf> = None,
        /// Audio sent: "auto" (AAC for Opus sources, via the AAC rendition), "aac", "passthrough"
        /// (the source's codec as is) or "drop".
        pub audio: AudioMode = AudioMode::Auto,
    }
}

/// A destination URL as written in the config. Its query may hold a token: `Debug` hides it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DestinationUrl(pub String);

impl std::fmt::Debug for DestinationUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redacted_url(&self.0))
    }
}

impl From<&str> for DestinationUrl {
    fn from(url: &str) -> Self {
        DestinationUrl(url.to_owned())
    }
}

/// A destination URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushUrl {
    /// rtmps://
    pub tls: bool,
    /// Host name or IP address (without brackets), also the TLS server name.
    pub host: String,
    pub port: u16,
    /// The application path, without slashes at either end.
    pub app: String,
    /// The query, without `?`, if any (sent in `connect`, never shown).
    pub query: Option<String>,
}

impl PushUrl {
    /// Parses `rtmp://host[:port]/app[/...][?query]`.
    pub fn parse(url: &str) -> Result<PushUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("must start with rtmp:// or rtmps://")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "rtmp" => false,
            "rtmps" => true,
            _ => return Err(format!("scheme {scheme:?} is not rtmp or rtmps")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_owned())),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err("user information in the URL is not supported".into());
        }
        let (host, port) = split_host_port(authority)?;
        let default_port = if tls { 443 } else { 1935 };
        let app = path.trim_matches('/').to_owned();
        if app.is_empty() {
            return Err("needs the application path (rtmp://host/app)".into());
        }
        if app.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the application path has spaces or control characters".into());
        }
        Ok(PushUrl {
            tls,
            host,
            port: port.unwrap_or(default_port),
            app,
            query,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "rtmps" } else { "rtmp" }
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `app` field of `connect`: the path, with the query when there is one (as OBS and
    /// librtmp send it).
    pub fn connect_app(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.app),
            None => self.app.clone(),
        }
    }

    /// The `tcUrl` field of `connect` (holds the query, so never log it).
    pub fn tc_url(&self) -> String {
        format!(
            "{}://{}/{}",
            self.scheme(),
            self.authority(),
            self.connect_app()
        )
    }

    /// The URL as logs and the API show it: no query (it may carry a token).
    pub fn shown(&self) -> String {
        let query = if self.query.is_some() { "?…" } else { "" };
        format!(
            "{}://{}/{}{query}",
            self.scheme(),
            self.authority(),
            self.app
        )
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("needs a host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("host {host:?} is not a host name or IP address"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {p:?} is not a port number"))?,
        ),
        None => None,
    };
    Ok((host.to_owned(), port))
}

impl PushConfig {
    /// The parsed URL (valid once the config validated).
    pub fn parsed_url(&self) -> Result<PushUrl, String> {
        PushUrl::parse(&self.url.0)
    }

    /// Whether `stream` (a full name, `app/key`) is a source of this push.
    pub fn matches(&self, stream: &str) -> bool {
        match self.from.strip_suffix("/*") {
            Some(app) => stream
                .split_once('/')
                .is_some_and(|(a, key)| a == app && !key.is_empty()),
            None => self.from == stream,
        }
    }

    /// The name to publish for `stream`: the key, with `{key}` replaced by the source's key.
    /// Secret: never log it.
    pub fn publish_name(&self, stream: &str) -> String {
        let source_key = stream.split_once('/').map_or(stream, |(_, k)| k);
        self.key.expose().replace(SOURCE_KEY, source_key)
    }

    /// True when printing the key's source reveals nothing (an `${ENV}` reference or exactly
    /// the `{key}` template).
    pub fn key_source_is_public(&self) -> bool {
        self.key.is_from_env() || self.key.source() == SOURCE_KEY
    }
}

fn invalid(field: String, reason: impl Into<String>) -> super::ConfigError {
    super::ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks every `[[push]]`: ids, sources, URLs, keys, CA files.
pub(crate) fn validate(pushes: &[PushConfig]) -> Result<(), super::ConfigError> {
    let mut ids = HashSet::new();
    for (i, p) in pushes.iter().enumerate() {
        let valid_id = !p.id.is_empty()
            && p.id.len() <= 64
            && p.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_id {
            return Err(invalid(
                format!("push[{i}].id"),
                "must be 1-64 letters, digits, '-', '_' or '.'",
            ));
        }
        if !ids.insert(p.id.as_str()) {
            return Err(invalid(
                format!("push[{i}].id"),
                format!("{:?} is used twice", p.id),
            ));
        }
        let field = |name: &str| format!("push[{:?}].{name}", p.id);
        let from_ok = match p.from.split_once('/') {
            Some((app, key)) => !app.is_empty() && !key.is_empty() && !p.from.contains('?'),
            None => false,
        } && (!p.from.contains('*') || p.from.ends_with("/*"));
        if !from_ok {
            return Err(invalid(
                field("from"),
                "must be a stream name (\"live/mykey\") or every stream of an app (\"live/*\")",
            ));
        }
        let url = PushUrl::parse(&p.url.0).map_err(|reason| invalid(field("url"), reason))?;
        if p.url.0.contains(REDACTED_PLACEHOLDER) {
            return Err(invalid(
                field("url"),
                "holds the redaction placeholder of --print-config: write the real query",
            ));
        }
        if p.key.is_empty() {
            return Err(invalid(
                field("key"),
                "must not be empty (\"{key}\" sends the source's key)",
            ));
        }
        if p.key.expose().chars().any(char::is_control) {
            return Err(invalid(field("key"), "has control characters"));
        }
        if let Some(ca) = &p.tls_ca {
            if !url.tls {
                return Err(invalid(field("tls_ca"), "applies to rtmps:// URLs only"));
            }
            if ca.as_os_str().is_empty() {
                return Err(invalid(
                    field("tls_ca"),
                    "is empty (remove it to use the system's roots)",
                ));
            }
        }
    }
    Ok(())
}

/// The URL as `--print-config` prints it: a query becomes the redaction placeholder (which
/// refuses to load), so a token in it never shows.
pub(crate) fn redacted_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?{REDACTED_PLACEHOLDER}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn push(from: &str, url: &str, key: &str) -> PushConfig {
        PushConfig {
            id: "yt".into(),
            from: from.into(),
            url: url.into(),
            key: Secret::literal(key),
            ..PushConfig::default()
        }
    }

    #[test]
    fn urls_parse_with_default_ports_apps_and_queries() {
        let u = PushUrl::parse("rtmps://a.rtmp.youtube.com/live2").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str()),
            ("a.rtmp.youtube.com", 443, "live2")
        );
        let u = PushUrl::parse("rtmp://127.0.0.1:1936/app/sub/?token=s3cret").unwrap();
        assert_eq!((u.port, u.app.as_str()), (1936, "app/sub"));
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/app/sub?token=s3cret");
        assert_eq!(u.connect_app(), "app/sub?token=s3cret");
        assert!(!u.shown().contains("s3cret"), "{}", u.shown());
        let u = PushUrl::parse("rtmp://[::1]/live").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1935));
        assert_eq!(u.shown(), "rtmp://[::1]:1935/live");
        for bad in [
            "http://x/app",
            "rtmp://x",
            "rtmp://x/",
            "rtmp://:1935/app",
            "rtmp://x:99999/app",
            "rtmp://u:p@x/app",
            "x/app",
        ] {
            assert!(PushUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_match_one_stream_or_a_whole_app() {
        let p = push("live/*", "rtmp://x/app", "{key}");
        assert!(p.matches("live/abc") && !p.matches("live2/abc") && !p.matches("live/"));
        assert_eq!(p.publish_name("live/abc"), "abc");
        let p = push("live/one", "rtmp://x/app", "pre-{key}");
        assert!(p.matches("live/one") && !p.matches("live/two"));
        assert_eq!(p.publish_name("live/one"), "pre-one");
    }

    #[test]
    fn validation_names_the_push_and_field() {
        let cases = [
            (push("live", "rtmp://x/app", "k"), "push[\"yt\"].from"),
            (push("live/a*", "rtmp://x/app", "k"), "push[\"yt\"].from"),
            (push("live/a", "ftp://x/app", "k"), "push[\"yt\"].url"),
            (push("live/a", "rtmp://x/app", ""), "push[\"yt\"].key"),
            (
                PushConfig {
                    tls_ca: Some("/ca.pem".into()),
                    ..push("live/a", "rtmp://x/app", "k")
                },
                "push[\"yt\"].tls_ca",
            ),
            (
                PushConfig {
                    id: "bad id".into(),
                    ..push("live/a", "rtmp://x/app", "k")
                },
                "push[0].id",
            ),
        ];
        for (p, field) in cases {
            match validate(&[p]) {
                Err(super::super::ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an error on {field}, got {other:?}"),
            }
        }
        let twice = [
            push("live/a", "rtmp://x/app", "k"),
            push("live/b", "rtmp://x/app", "k"),
        ];
        assert!(
            validate(&twice)
                .unwrap_err()
                .to_string()
                .contains("used twice")
        );
        assert!(validate(&[push("live/a", "rtmps://x/app", "k")]).is_ok());
    }

    #[test]
    fn print_config_hides_push_keys_and_url_queries_and_round_trips() {
        use super::super::{Config, SecretOutput};
        let env = |name: &str| (name == "YT_KEY").then(|| "yt-s3cret".to_owned());
        let text = r#"
            [[push]]
            id = "yt"
            from = "live/mykey"
            url = "rtmps://a.rtmp.youtube.com/live2"
            key = "${YT_KEY}"
            [[push]]
            id = "own"
            from = "live/*"
            url = "rtmp://127.0.0.1:1936/app?token=q-s3cret"
            key = "{key}"
            audio = "drop"
            [[push]]
            id = "lit"
            from = "live/x"
            url = "rtmp://127.0.0.1/app"
            key = "lit-s3cret"
            tls_ca = "/nope"
        "#;
        // tls_ca on an rtmp:// URL is refused, naming the field.
        let err = Config::from_toml_str(text, &env).unwrap_err().to_string();
        assert!(err.contains("push[\"lit\"].tls_ca"), "{err}");
        let text = text.replace("tls_ca = \"/nope\"", "");
        let c = Config::from_toml_str(&text, &env).unwrap();
        assert_eq!(c.push.len(), 3);
        assert_eq!(c.push[0].publish_name("live/mykey"), "yt-s3cret");
        assert_eq!(c.push[1].audio, AudioMode::Drop);
        let shown = c.to_documented_toml(SecretOutput::Redacted).unwrap();
        for secret in ["yt-s3cret", "q-s3cret", "lit-s3cret"] {
            assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
        }
        assert!(shown.contains("key = \"${YT_KEY}\""), "{shown}");
        assert!(shown.contains("key = \"{key}\""), "{shown}");
        assert!(shown.contains("app?<redacted>"), "{shown}");
        assert!(!format!("{c:?}").contains("s3cret"));
        let revealed = c.to_documented_toml(SecretOutput::Reveal).unwrap();
        assert_eq!(Config::from_toml_str(&revealed, &env).unwrap(), c);
        let err = Config::from_toml_str("[[push]]\nid = \"a\"\nurl_ = 1\n", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`url_`") && err.contains("[[push]] #1"),
            "{err}"
        );
    }

    #[test]
    fn printed_urls_hide_their_query() {
        assert_eq!(redacted_url("rtmp://x/app?k=1"), "rtmp://x/app?<redacted>");
        assert_eq!(redacted_url("rtmp://x/app"), "rtmp://x/app");
    }
}
