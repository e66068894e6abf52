//! Printing results: aligned tables for people, JSON for scripts (`--format json`).

use serde_json::Value;

use super::Format;

#[derive(Clone, Copy)]
pub struct Out {
    pub format: Format,
}

impl Out {
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints `value` as JSON, or calls `human` to print it for a person.
    pub fn emit(&self, value: Value, human: impl FnOnce()) {
        if self.json() {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        } else {
            human();
        }
    }
}

/// Prints rows under headers with columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Prints `key  value` pairs aligned.
pub fn pairs(items: &[(&str, String)]) {
    let w = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in items {
        println!("{k:<w$}  {v}");
    }
}
