//! What a stream name may be: one rule, enforced the same way by every protocol.
//!
//! A stream name is `APP/KEY` — or `fstream/USER/CHANNEL` for an fstream channel — where each
//! `/`-separated segment:
//! - is 1..=[`MAX_SEGMENT`] bytes long and not `.` or `..`;
//! - holds no control character, no whitespace, no `\`, and no invisible or direction-changing
//!   character (zero-width spaces and joiners, bidi embeddings, overrides and isolates, the BOM,
//!   soft hyphen, tag characters): what a log shows is what the name is.
//!
//! Anything else is refused where it enters: an RTMP `publish`/`play` (app and name, the query
//! string dropped first), an HTTP-FLV path (segments percent-decoded once, after the path was
//! split on its literal `/` and the literal `.flv` was removed), an fstream handshake
//! (`stream=`, `user`, `channel`). So `/live/a/b/c.flv`, `rtmp://…` as a play name, a key with
//! a bidi override, and `/live/k%2Fx.flv` never name a stream. Sans-IO.

/// Longest segment, in bytes.
pub const MAX_SEGMENT: usize = 128;

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a stream name is APP/KEY (fstream/USER/CHANNEL for fstream channels)")]
    Shape,
    #[error("a stream name segment is empty, '.', '..' or longer than 128 bytes")]
    Segment,
    #[error("a stream name holds a control, whitespace, invisible or bidi character, or '\\'")]
    Character,
}

/// Checks a full stream name (`APP/KEY`, or `fstream/USER/CHANNEL`).
pub fn check(name: &str) -> Result<(), NameError> {
    let segments = name.split('/').count();
    let fstream = name.split('/').next() == Some("fstream");
    match (segments, fstream) {
        (2, _) | (3, true) => {}
        _ => return Err(NameError::Shape),
    }
    name.split('/').try_for_each(check_segment)
}

/// Checks one segment (an app, key, user or channel): see the module doc.
pub fn check_segment(segment: &str) -> Result<(), NameError> {
    if segment.is_empty() || segment.len() > MAX_SEGMENT || segment == "." || segment == ".." {
        return Err(NameError::Segment);
    }
    if segment.chars().all(allowed) {
        Ok(())
    } else {
        Err(NameError::Character)
    }
}

fn allowed(c: char) -> bool {
    !(c.is_control() || c.is_whitespace() || c == '/' || c == '\\' || invisible(c))
}

/// Format characters and other code points that render as nothing or reorder text.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_key_and_fstream_channels_are_names() {
        for ok in [
            "live/key",
            "live/k-1_x.y=z",
            "fstream/fier/chan",
            "app/ключ",
            "live/%2e",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn other_shapes_and_hidden_characters_are_refused() {
        for (bad, why) in [
            ("live", NameError::Shape),
            ("live/a/b/c", NameError::Shape),
            ("live/rtmp://evil/x", NameError::Shape),
            ("fstream/a/b/c", NameError::Shape),
            ("live/", NameError::Segment),
            ("/key", NameError::Segment),
            ("live/..", NameError::Segment),
            ("fstream/./c", NameError::Segment),
            ("live/a b", NameError::Character),
            ("live/a\u{0007}", NameError::Character),
            ("live/a\u{202E}gpj", NameError::Character),
            ("live/a\u{200B}", NameError::Character),
            ("live/\u{FEFF}a", NameError::Character),
            ("live/a\\b", NameError::Character),
        ] {
            assert_eq!(check(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            check(&format!("live/{}", "k".repeat(129))),
            Err(NameError::Segment)
        );
    }
}
