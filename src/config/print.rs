//! `--print-config`: the effective configuration as TOML with each table's and field's doc comment
//! above it. Values are rendered by `toml` itself, so the output parses back to the same config.

use std::fmt::Write as _;

use super::{Config, ConfigError, FieldDoc, SCHEMA, TOP_ARRAYS};

/// Renders `config` (secrets already redacted or not by the caller).
pub(crate) fn documented_toml(config: &Config) -> Result<String, ConfigError> {
    let root = toml::Table::try_from(config).map_err(|e| ConfigError::Invalid {
        field: "config".to_owned(),
        reason: format!("cannot be printed as TOML: {e}"),
    })?;
    let mut out = String::new();
    out.push_str("# ringcast configuration.\n");
    out.push_str("# Every key is optional: a missing key takes the default shown by `ringcast --print-config`.\n");
    out.push_str("# Durations are integers with the unit in the name (_ms, _us).\n");
    for section in SCHEMA {
        let empty = toml::Table::new();
        let table = match root.get(section.name) {
            Some(toml::Value::Table(t)) => t,
            _ => &empty,
        };
        out.push('\n');
        if let Some(field) = Config::FIELDS.iter().find(|f| f.name == section.name) {
            push_doc(&mut out, field);
        }
        let _ = writeln!(out, "[{}]", section.name);
        let mut deferred = Vec::new();
        for field in section.fields {
            let array = section.arrays.iter().find(|a| a.name == field.name);
            match (table.get(field.name), array) {
                (Some(toml::Value::Array(entries)), Some(array)) if !entries.is_empty() => {
                    deferred.push((field, array.fields, entries));
                }
                (value, _) => {
                    out.push('\n');
                    push_doc(&mut out, field);
                    if let Some(array) = array {
                        out.push_str("# Example (replace the line below with tables like this):\n");
                        for line in array.example {
                            let _ = writeln!(out, "#   {line}");
                        }
                    }
                    push_value(&mut out, field.name, value);
                }
            }
        }
        for (field, entry_fields, entries) in deferred {
            out.push('\n');
            push_doc(&mut out, field);
            let name = format!("{}.{}", section.name, field.name);
            push_entries(&mut out, &name, entry_fields, entries);
        }
    }
    // Top-level arrays come last: a key after `[http]` would belong to that table, so an empty
    // one is shown only as a commented example.
    for array in TOP_ARRAYS {
        out.push('\n');
        if let Some(field) = Config::FIELDS.iter().find(|f| f.name == array.name) {
            push_doc(&mut out, field);
        }
        match root.get(array.name) {
            Some(toml::Value::Array(entries)) if !entries.is_empty() => {
                push_entries(&mut out, array.name, array.fields, entries);
            }
            _ => {
                out.push_str("# None. Example:\n");
                for line in array.example {
                    let _ = writeln!(out, "#   {line}");
                }
            }
        }
    }
    Ok(out)
}

/// Prints `[[name]]` tables, each field with its doc.
fn push_entries(out: &mut String, name: &str, fields: &[FieldDoc], entries: &[toml::Value]) {
    for entry in entries {
        let _ = writeln!(out, "[[{name}]]");
        let empty = toml::Table::new();
        let entry = match entry {
            toml::Value::Table(t) => t,
            _ => &empty,
        };
        for ef in fields {
            push_doc(out, ef);
            push_value(out, ef.name, entry.get(ef.name));
        }
        out.push('\n');
    }
}

fn push_doc(out: &mut String, field: &FieldDoc) {
    for line in field.doc {
        let _ = writeln!(out, "#{}", line.trim_end());
    }
}

fn push_value(out: &mut String, name: &str, value: Option<&toml::Value>) {
    match value {
        Some(v) => {
            let _ = writeln!(out, "{name} = {v}");
        }
        // `None` options have no TOML spelling: show the key commented out.
        None => {
            let _ = writeln!(out, "# {name} = (unset)");
        }
    }
}
