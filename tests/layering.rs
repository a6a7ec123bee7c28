//! Proves the sans-IO layering rule of DESIGN.md: nothing under `src/proto`, `src/media` or
//! `src/fanout` (nor `src/metrics.rs`) names a runtime, a socket, the filesystem or a clock read,
//! nor imports `src/server` (the network layer, TLS included, sits above them).
//! Time and bytes are passed in; only `src/server` touches the outside world. The checker is itself tested on a
//! synthetic source so it cannot pass by matching nothing.

use std::path::{Path, PathBuf};

const SANS_IO_DIRS: [&str; 3] = ["src/proto", "src/media", "src/fanout"];
/// Single-file modules under the same rule (the counters `src/fanout` counts with).
const SANS_IO_FILES: [&str; 1] = ["src/metrics.rs"];
const FORBIDDEN: [&str; 11] = [
    "compio",
    "std::net",
    "socket2",
    "tokio",
    "mio",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    // The layers below `src/server` must not reach up into it (nor into TLS, which lives there).
    "crate::server",
    "ringcast::server",
    "rustls",
];

/// Whether `word` occurs in `line` as a whole path segment (so `mio` does not match `premio`).
fn mentions(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// `(line number, forbidden word, line)` for every violation in `source`. Comments are not
/// code, and items under `#[cfg(test)]` or `#[cfg(fuzzing)]` exist only in the test harness or
/// the fuzzer, which may read the clock to build virtual time: they are skipped up to the brace
/// that closes them.
fn violations(source: &str) -> Vec<(usize, &'static str, String)> {
    let mut found = Vec::new();
    // Some(depth) while inside a harness-only item: the brace depth reached so far.
    let mut skipping: Option<i64> = None;
    for (i, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(fuzzing)]") {
            skipping = Some(0);
            continue;
        }
        if let Some(depth) = skipping.as_mut() {
            let opened = line.matches('{').count() as i64;
            let closed = line.matches('}').count() as i64;
            let was_open = *depth > 0 || opened > 0;
            *depth += opened - closed;
            // A one-line item (`mod tests;`) or the closing brace ends the skip.
            if *depth <= 0 && (was_open || trimmed.ends_with(';')) {
                skipping = None;
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        for word in FORBIDDEN {
            if mentions(line, word) {
                found.push((i + 1, word, line.trim().to_owned()));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !is_test_module(&path) {
            out.push(path);
        }
    }
}

/// Test-only module files (`tests.rs`, `*_tests.rs`), included from a `#[cfg(test)]` item.
fn is_test_module(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

#[test]
fn sans_io_modules_touch_no_runtime_socket_filesystem_or_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SANS_IO_DIRS {
        let path = root.join(dir);
        assert!(
            path.is_dir(),
            "{} is missing: update this test if the layout moved",
            path.display()
        );
        rust_files(&path, &mut files);
    }
    for file in SANS_IO_FILES {
        let path = root.join(file);
        assert!(path.is_file(), "{} is missing", path.display());
        files.push(path);
    }
    assert!(
        !files.is_empty(),
        "no .rs files found under {SANS_IO_DIRS:?}"
    );
    let mut report = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        for (line, word, text) in violations(&source) {
            let rel = file.strip_prefix(root).unwrap_or(file);
            report.push(format!("{}:{line}: `{word}` in `{text}`", rel.display()));
        }
    }
    assert!(
        report.is_empty(),
        "sans-IO layers must not touch IO or clocks:\n{}",
        report.join("\n")
    );
}

#[test]
fn layering_checker_flags_each_forbidden_word_and_ignores_lookalikes() {
    let bad = "use compio::net::TcpStream;\nuse std::net::SocketAddr;\nuse socket2::Socket;\n\
               tokio::spawn(f);\nuse mio::Poll;\nlet f = std::fs::read(p);\nlet t = Instant::now();\n\
               let s = SystemTime::now();\nuse crate::server::net::Transport;\n\
               let t: ringcast::server::Core;\nuse rustls::ServerConnection;\n";
    let found: Vec<&str> = violations(bad).into_iter().map(|(_, w, _)| w).collect();
    assert_eq!(found, FORBIDDEN.to_vec());
    let clean = "let premio = 1; // passes `now: Instant` in\nfn handle_timeout(&mut self, now: Instant) {}\nuse bytes::Bytes;\n";
    assert!(violations(clean).is_empty(), "{:?}", violations(clean));
    let tests_below = "use bytes::Bytes;\n// no compio here\n#[cfg(test)]\nmod tests {\n    let t = Instant::now();\n}\n";
    assert!(
        violations(tests_below).is_empty(),
        "{:?}",
        violations(tests_below)
    );
    assert!(is_test_module(Path::new("src/fanout/ring_tests.rs")));
    assert!(!is_test_module(Path::new("src/fanout/ring.rs")));
}
