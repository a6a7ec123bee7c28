//! Load-time checks: unknown keys (named with their table, before serde sees the file) and value
//! validation (ranges, positive durations, duplicates, listener clashes). Errors say which field
//! is wrong and what is accepted.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{Config, ConfigError, FieldDoc, SCHEMA, TOP_ARRAYS};

/// Fails on the first key that no table of [`SCHEMA`] defines.
pub(crate) fn check_unknown_keys(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    check_table(table, Config::FIELDS, "the top level", origin)?;
    for array in TOP_ARRAYS {
        let Some(toml::Value::Array(entries)) = table.get(array.name) else {
            continue;
        };
        for (i, entry) in entries.iter().enumerate() {
            if let toml::Value::Table(entry) = entry {
                let where_ = format!("[[{}]] #{}", array.name, i + 1);
                check_table(entry, array.fields, &where_, origin)?;
            }
        }
    }
    for section in SCHEMA {
        let Some(toml::Value::Table(inner)) = table.get(section.name) else {
            continue; // absent, or a wrong type that the typed decode reports
        };
        check_table(
            inner,
            section.fields,
            &format!("[{}]", section.name),
            origin,
        )?;
        for array in section.arrays {
            let Some(toml::Value::Array(entries)) = inner.get(array.name) else {
                continue;
            };
            for (i, entry) in entries.iter().enumerate() {
                if let toml::Value::Table(entry) = entry {
                    let where_ = format!("[[{}.{}]] #{}", section.name, array.name, i + 1);
                    check_table(entry, array.fields, &where_, origin)?;
                }
            }
        }
    }
    Ok(())
}

fn check_table(
    table: &toml::Table,
    fields: &[FieldDoc],
    where_: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    match table
        .keys()
        .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
    {
        None => Ok(()),
        Some(key) => Err(ConfigError::UnknownKey {
            origin: origin.to_owned(),
            key: key.clone(),
            table: where_.to_owned(),
            expected: fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
        }),
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value} is out of range ({min}..={max})"),
        ))
    }
}

fn positive(field: &str, value: u64) -> Result<(), ConfigError> {
    if value > 0 {
        Ok(())
    } else {
        Err(invalid(field, "must be greater than 0"))
    }
}

fn non_empty_listen(field: &str, listen: &[SocketAddr]) -> Result<(), ConfigError> {
    if listen.is_empty() {
        Err(invalid(
            field,
            "needs at least one address (or disable the protocol)",
        ))
    } else {
        Ok(())
    }
}

/// Checks every value; the first problem found is returned.
pub(crate) fn validate(c: &Config) -> Result<(), ConfigError> {
    in_range("server.workers", c.server.workers as u64, 0, 1024)?;
    if c.server.log.trim().is_empty() {
        return Err(invalid("server.log", "must not be empty (e.g. \"info\")"));
    }
    in_range(
        "server.shutdown_drain_ms",
        c.server.shutdown_drain_ms,
        0,
        600_000,
    )?;

    let u = &c.io_uring;
    in_range("io_uring.sq_entries", u.sq_entries.into(), 64, 32_768)?;
    in_range(
        "io_uring.tasks_per_poll",
        u.tasks_per_poll.into(),
        1,
        65_536,
    )?;
    if !u.sq_entries.is_power_of_two() {
        return Err(invalid("io_uring.sq_entries", "must be a power of two"));
    }
    if u.sqpoll_idle_ms > 0 && (u.coop_taskrun || u.defer_taskrun) {
        return Err(invalid(
            "io_uring.sqpoll_idle_ms",
            "SQPOLL cannot be combined with coop_taskrun or defer_taskrun \
             (defer_taskrun is on by default: set io_uring.defer_taskrun = false)",
        ));
    }

    for (key, listen) in [
        ("rtmps.listen", &c.rtmps.listen),
        ("http.tls_listen", &c.http.tls_listen),
    ] {
        if !listen.is_empty() && !c.tls.is_configured() {
            return Err(invalid(
                key,
                "TLS listeners need tls.cert_file and tls.key_file (or --tls-cert and --tls-key)",
            ));
        }
    }

    let r = &c.rtmp;
    non_empty_listen("rtmp.listen", &r.listen)?;
    in_range("rtmp.chunk_size", r.chunk_size.into(), 128, 65_536)?;
    in_range(
        "rtmp.max_message_size",
        r.max_message_size.into(),
        1024,
        0xFF_FFFF,
    )?;
    // RTMP 1.0 §5.3.1.1: chunk stream ids 2..=65599.
    in_range(
        "rtmp.max_chunk_streams",
        r.max_chunk_streams.into(),
        2,
        65_598,
    )?;
    positive("rtmp.window_ack_size", r.window_ack_size.into())?;
    positive("rtmp.handshake_timeout_ms", r.handshake_timeout_ms)?;
    positive("rtmp.idle_timeout_ms", r.idle_timeout_ms)?;
    let mut names = HashSet::new();
    for (i, app) in r.apps.iter().enumerate() {
        let field = format!("rtmp.apps[{i}].name");
        if app.name.is_empty() || app.name.contains('/') {
            return Err(invalid(field, "must be a non-empty app name without '/'"));
        }
        if !names.insert(app.name.as_str()) {
            return Err(invalid(
                field,
                format!("app {:?} is listed twice", app.name),
            ));
        }
        if let Some(k) = app.publish_keys.iter().position(|k| k.is_empty()) {
            return Err(invalid(
                format!("rtmp.apps[{:?}].publish_keys[{k}]", app.name),
                "is empty (an empty list, not an empty key, means open)",
            ));
        }
    }

    let f = &c.fanout;
    positive("fanout.max_gop_bytes", f.max_gop_bytes)?;
    in_range("fanout.ring_frames", f.ring_frames.into(), 16, 1 << 20)?;
    positive("fanout.watcher_max_lag_ms", f.watcher_max_lag_ms)?;
    positive(
        "fanout.slow_watcher_disconnect_ms",
        f.slow_watcher_disconnect_ms,
    )?;
    in_range("fanout.write_coalesce_us", f.write_coalesce_us, 0, 100_000)?;
    in_range(
        "audio.aac_bitrate_kbps",
        c.audio.aac_bitrate_kbps.into(),
        32,
        320,
    )?;

    let t = &c.ftl;
    if t.is_active() {
        non_empty_listen("ftl.listen", &t.listen)?;
    }
    if t.udp_port_range.start < 1024 {
        return Err(invalid(
            "ftl.udp_port_range",
            "must not include privileged ports (< 1024)",
        ));
    }
    if let Some(adv) = t.advertised_port_range
        && adv.len() != t.udp_port_range.len()
    {
        return Err(invalid(
            "ftl.advertised_port_range",
            format!(
                "{adv} must hold as many ports as udp_port_range {}",
                t.udp_port_range
            ),
        ));
    }
    in_range(
        "ftl.reorder_window_packets",
        t.reorder_window_packets.into(),
        1,
        1024,
    )?;
    positive("ftl.auth_timeout_ms", t.auth_timeout_ms)?;
    positive("ftl.no_media_timeout_ms", t.no_media_timeout_ms)?;
    positive("ftl.idle_timeout_ms", t.idle_timeout_ms)?;
    if !t.stream_name_template.contains("{channel}") {
        return Err(invalid(
            "ftl.stream_name_template",
            "must contain {channel}, or every channel would publish to the same stream",
        ));
    }
    let mut ids = HashSet::new();
    for ch in &t.channels {
        let field = format!("ftl.channels[id = {}]", ch.id);
        if ch.id == 0 {
            return Err(invalid(field, "id must be a positive channel number"));
        }
        if !ids.insert(ch.id) {
            return Err(invalid(field, "channel id is listed twice"));
        }
        if ch.key.is_empty() {
            return Err(invalid(format!("{field}.key"), "must not be empty"));
        }
        if ch.stream.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                format!("{field}.stream"),
                "must not be empty (remove it to use the template)",
            ));
        }
    }

    let s = &c.fstream;
    if s.enabled {
        non_empty_listen("fstream.listen", &s.listen)?;
    }
    positive("fstream.handshake_timeout_ms", s.handshake_timeout_ms)?;
    in_range(
        "fstream.max_handshake_len",
        s.max_handshake_len.into(),
        16,
        65_536,
    )?;
    positive(
        "fstream.broadcaster_idle_timeout_ms",
        s.broadcaster_idle_timeout_ms,
    )?;
    let mut users = HashSet::new();
    for (i, u) in s.users.iter().enumerate() {
        if u.name.is_empty() || !users.insert(u.name.as_str()) {
            return Err(invalid(
                format!("fstream.users[{i}].name"),
                "must be non-empty and unique",
            ));
        }
        if u.password.is_empty() {
            return Err(invalid(
                format!("fstream.users[{:?}].password", u.name),
                "must not be empty",
            ));
        }
    }

    let h = &c.http;
    if h.enabled {
        non_empty_listen("http.listen", &h.listen)?;
    }
    positive("http.request_timeout_ms", h.request_timeout_ms)?;
    in_range(
        "http.max_request_head",
        h.max_request_head.into(),
        1024,
        65_536,
    )?;
    c.cluster.validate()?;
    check_listener_clashes(c)?;
    super::push::validate(&c.push)
}

/// Two TCP listeners of different protocols on the same port (and overlapping IPs) cannot both bind.
fn check_listener_clashes(c: &Config) -> Result<(), ConfigError> {
    let mut all: Vec<(&str, SocketAddr)> =
        c.rtmp.listen.iter().map(|a| ("rtmp.listen", *a)).collect();
    if c.ftl.is_active() {
        all.extend(c.ftl.listen.iter().map(|a| ("ftl.listen", *a)));
    }
    if c.fstream.enabled {
        all.extend(c.fstream.listen.iter().map(|a| ("fstream.listen", *a)));
    }
    if c.http.enabled {
        all.extend(c.http.listen.iter().map(|a| ("http.listen", *a)));
    }
    if let Some(addr) = c.cluster.listen_addr() {
        all.push(("cluster.listen", addr));
    }
    for (i, (fa, a)) in all.iter().enumerate() {
        for (fb, b) in &all[i + 1..] {
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() != 0 && a.port() == b.port() && overlap && a.is_ipv4() == b.is_ipv4() {
                return Err(invalid(*fb, format!("{b} clashes with {fa} {a}")));
            }
        }
    }
    Ok(())
}
