//! Secrets in the configuration: stream keys and passwords.
//!
//! A [`Secret`] keeps the text as written in the file (its *source*, e.g. `"${LIVE_KEY}"`) and the
//! resolved value. Its `Debug` and `Display` never show the value, and [`Secret::matches`] compares
//! in constant time. `${NAME}` is replaced by the environment variable `NAME` when the config is
//! loaded ([`expand_env`]); `$${` is a literal `${`. Nothing here logs.

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// What a redacted literal secret prints as in `--print-config`. Loading this text back is an
/// error, so a redacted dump can never silently become a real key.
pub const REDACTED_PLACEHOLDER: &str = "<redacted>";

/// A stream key or password. The value never appears in `Debug`/`Display` output.
#[derive(Clone, Default)]
pub struct Secret {
    /// The text as written in the config (may hold `${ENV}` references and `$${` escapes).
    source: String,
    /// The value after `${ENV}` expansion; equal to `source` until [`Secret::resolve`] runs.
    value: String,
}

impl Secret {
    /// A secret from text that must be taken literally (a command-line flag): no `${ENV}`
    /// expansion. `${` in the text is escaped in the source so a printed config round-trips.
    pub fn literal(value: &str) -> Self {
        Self {
            source: value.replace("${", "$${"),
            value: value.to_owned(),
        }
    }

    /// A secret as written in a config file; call [`Secret::resolve`] before use.
    pub fn from_source(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            value: source.to_owned(),
        }
    }

    /// Expands `${ENV}` references in the source with `lookup`. Errors name the variable.
    pub fn resolve(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), ExpandError> {
        if self.source == REDACTED_PLACEHOLDER {
            return Err(ExpandError::RedactedPlaceholder);
        }
        self.value = expand_env(&self.source, lookup)?;
        Ok(())
    }

    /// Compares `candidate` with the value in constant time (for equal lengths; the length itself
    /// is not hidden).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.value.as_bytes().ct_eq(candidate).into()
    }

    /// The resolved value, for the few places that need the bytes (an HMAC key). Never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The text as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the source references at least one environment variable, so printing the source
    /// reveals only a variable name.
    pub fn is_from_env(&self) -> bool {
        references_env(&self.source)
    }

    /// True when the resolved value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && bool::from(self.value.as_bytes().ct_eq(other.value.as_bytes()))
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_from_env() {
            write!(f, "Secret({:?})", self.source)
        } else {
            write!(f, "Secret(****)")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    /// Serialises the *source* (so `${ENV}` references survive). Redaction of literal secrets is
    /// the printer's job: see [`crate::config::SecretOutput`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Ok(Self::from_source(&source))
    }
}

/// Why `${ENV}` expansion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${NAME}` names a variable that is not set (or is not valid UTF-8).
    #[error("environment variable {0} is not set")]
    UnsetVariable(String),
    /// `${` without a closing `}`, or an empty or malformed name.
    #[error("malformed ${{...}} reference (write $${{ for a literal ${{)")]
    Malformed,
    /// The value is the placeholder `--print-config` writes for a redacted secret.
    #[error(
        "the value is the redaction placeholder {REDACTED_PLACEHOLDER:?}; write the real secret or a ${{ENV}} reference"
    )]
    RedactedPlaceholder,
}

/// Replaces each `${NAME}` in `text` with `lookup(NAME)`; `$${` yields a literal `${`. A name is
/// ASCII letters, digits and `_`, not starting with a digit.
pub fn expand_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(ExpandError::Malformed)?;
            let name = &after[..end];
            if !is_env_name(name) {
                return Err(ExpandError::Malformed);
            }
            let value = lookup(name).ok_or_else(|| ExpandError::UnsetVariable(name.to_owned()))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Looks a variable up in the process environment (the lookup used outside tests).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn references_env(text: &str) -> bool {
    let found = Cell::new(false);
    let _ = expand_env(text, &|_| {
        found.set(true);
        Some(String::new())
    });
    found.get()
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Redacts a stream key for logs: the first 2 characters, then `****` (`"abcdef"` → `"ab****"`).
/// Keys of 2 characters or fewer print as `****` alone.
pub fn redact_key(key: &str) -> String {
    if key.chars().count() <= 2 {
        return "****".to_owned();
    }
    let head: String = key.chars().take(2).collect();
    format!("{head}****")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "LIVE_KEY" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_escapes() {
        assert_eq!(expand_env("${LIVE_KEY}", &env).unwrap(), "s3cret");
        assert_eq!(expand_env("a-${LIVE_KEY}-b", &env).unwrap(), "a-s3cret-b");
        assert_eq!(expand_env("$${LIVE_KEY}", &env).unwrap(), "${LIVE_KEY}");
        assert_eq!(expand_env("cost$5", &env).unwrap(), "cost$5");
        assert_eq!(expand_env("${EMPTY}", &env).unwrap(), "");
    }

    #[test]
    fn unset_variable_is_named() {
        let err = expand_env("${NOPE_KEY}", &env).unwrap_err();
        assert_eq!(err, ExpandError::UnsetVariable("NOPE_KEY".to_owned()));
        assert!(err.to_string().contains("NOPE_KEY"));
    }

    #[test]
    fn malformed_references_are_errors() {
        assert_eq!(expand_env("${LIVE_KEY", &env), Err(ExpandError::Malformed));
        assert_eq!(expand_env("${}", &env), Err(ExpandError::Malformed));
        assert_eq!(expand_env("${1X}", &env), Err(ExpandError::Malformed));
    }

    #[test]
    fn debug_and_display_redact() {
        let mut s = Secret::from_source("hunter2");
        s.resolve(&env).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(****)");
        assert_eq!(format!("{s}"), "****");
        let mut e = Secret::from_source("${LIVE_KEY}");
        e.resolve(&env).unwrap();
        let shown = format!("{e:?} {e}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("${LIVE_KEY}"));
    }

    #[test]
    fn matches_compares_the_resolved_value() {
        let mut s = Secret::from_source("${LIVE_KEY}");
        s.resolve(&env).unwrap();
        assert!(s.matches(b"s3cret"));
        assert!(!s.matches(b"s3cre"));
        assert!(!s.matches(b"${LIVE_KEY}"));
    }

    #[test]
    fn literal_secret_is_not_expanded_and_round_trips() {
        let s = Secret::literal("a${B}");
        assert_eq!(s.expose(), "a${B}");
        assert!(!s.is_from_env());
        let mut back = Secret::from_source(s.source());
        back.resolve(&env).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn redaction_placeholder_does_not_load() {
        let mut s = Secret::from_source(REDACTED_PLACEHOLDER);
        assert_eq!(s.resolve(&env), Err(ExpandError::RedactedPlaceholder));
    }

    #[test]
    fn redact_key_keeps_two_characters() {
        assert_eq!(redact_key("abcdef"), "ab****");
        assert_eq!(redact_key("ab"), "****");
        assert_eq!(redact_key(""), "****");
        assert_eq!(format!("live/{}", redact_key("abXYZ")), "live/ab****");
        assert_eq!(redact_key("éé€x"), "éé****");
    }
}
