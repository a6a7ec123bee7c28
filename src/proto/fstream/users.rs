//! The reference server's user file, `users/<name>.ini`:
//!
//! ```ini
//! [DEFAULT]
//! password=foobar
//! ```
//!
//! Modelled on Python's `configparser` defaults, simplified for this one use: lines are trimmed
//! (so CRLF, indentation and a UTF-8 BOM are fine); blank lines and lines starting with `;` or `#`
//! are comments; `key=value` or `key: value` split at the first delimiter, keys compared
//! case-insensitively, no inline comments (`password=a;b` is the password `a;b`). The password is
//! `password` in `[DEFAULT]`; other sections are ignored. A key before any section header, a
//! second `password` in `[DEFAULT]`, an empty password, or a line that is none of the above is an
//! error. Errors carry line numbers, never line contents. The caller reads the file.

use super::request::Secret;

/// Why a user file was refused. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserFileError {
    #[error("user file has no password in [DEFAULT]")]
    MissingPassword,
    #[error("user file has an empty password")]
    EmptyPassword,
    #[error("user file line {line}: second password in [DEFAULT]")]
    DuplicatePassword { line: usize },
    #[error("user file line {line}: key outside any [section]")]
    KeyOutsideSection { line: usize },
    #[error("user file line {line}: not a section, key=value, or comment")]
    MalformedLine { line: usize },
}

/// Extracts the password from a user file's text.
pub fn parse_user_ini(text: &str) -> Result<Secret, UserFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut in_default: Option<bool> = None;
    let mut password: Option<&str> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = Some(name.trim() == "DEFAULT");
            continue;
        }
        let Some((key, value)) = split_pair(line) else {
            return Err(UserFileError::MalformedLine { line: line_no });
        };
        match in_default {
            None => return Err(UserFileError::KeyOutsideSection { line: line_no }),
            Some(false) => {}
            Some(true) if key.eq_ignore_ascii_case("password") => {
                if password.replace(value).is_some() {
                    return Err(UserFileError::DuplicatePassword { line: line_no });
                }
            }
            Some(true) => {}
        }
    }
    match password {
        None => Err(UserFileError::MissingPassword),
        Some("") => Err(UserFileError::EmptyPassword),
        Some(value) => Ok(Secret::new(value)),
    }
}

/// `key=value` or `key: value`, split at whichever delimiter comes first; both sides trimmed.
fn split_pair(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = line.get(..at)?.trim();
    let value = line.get(at + 1..)?.trim();
    (!key.is_empty()).then_some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_layout() {
        let secret = parse_user_ini("[DEFAULT]\npassword=foobar\n");
        assert!(secret.is_ok_and(|s| s.matches(b"foobar")));
    }

    #[test]
    fn tolerates_whitespace_comments_crlf_and_bom() {
        let text = "\u{feff}; users/fier.ini\r\n# generated\r\n\r\n  [ DEFAULT ]  \r\n\
                    theme : dark\r\n  Password = foo=bar;baz  \r\n[other]\r\npassword=x\r\n";
        let secret = parse_user_ini(text);
        assert!(secret.is_ok_and(|s| s.matches(b"foo=bar;baz")));
        let colon = parse_user_ini("[DEFAULT]\npassword: hunter2");
        assert!(colon.is_ok_and(|s| s.matches(b"hunter2")));
    }

    #[test]
    fn refuses_bad_files() {
        assert_eq!(
            parse_user_ini("").map(|_| ()),
            Err(UserFileError::MissingPassword)
        );
        assert_eq!(
            parse_user_ini("[other]\npassword=x").map(|_| ()),
            Err(UserFileError::MissingPassword)
        );
        assert_eq!(
            parse_user_ini("[DEFAULT]\npassword=").map(|_| ()),
            Err(UserFileError::EmptyPassword)
        );
        assert_eq!(
            parse_user_ini("password=x").map(|_| ()),
            Err(UserFileError::KeyOutsideSection { line: 1 })
        );
        assert_eq!(
            parse_user_ini("[DEFAULT]\npassword=a\npassword=b").map(|_| ()),
            Err(UserFileError::DuplicatePassword { line: 3 })
        );
        assert_eq!(
            parse_user_ini("[DEFAULT]\nfoobar\n").map(|_| ()),
            Err(UserFileError::MalformedLine { line: 2 })
        );
    }
}
