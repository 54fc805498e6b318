//! The event catalog people browse: every event type, its versions and fields, as JSON,
//! Markdown or a self-contained HTML page.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::error::Error;
use crate::model::{self, Def, Format, Module, Ty};
use crate::tree::SchemaSet;

/// The catalog as JSON: `{"events": [{"event_type", "versions": [...]}]}`, sorted.
pub fn json(set: &SchemaSet) -> Result<Value, Error> {
    let modules = model::build(set).map_err(Error::Invalid)?;
    let mut events: Vec<Value> = Vec::new();
    let mut entries: Vec<_> = set.events().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, file) in entries {
        // The model is built from the same set: every event has its module and type.
        let Some(module) = modules.iter().find(|m| m.component == name.component) else {
            continue;
        };
        let Some(event) = module.events.iter().find(|e| e.name == *name) else {
            continue;
        };
        let type_name = &event.type_name;
        let version = json!({
            "version": name.version,
            "file": file.rel,
            "id": file.declared_id(),
            "title": file.doc.get("title"),
            "description": file.doc.get("description"),
            "fields": fields(module, type_name),
            "example": file.doc.get("examples").and_then(|e| e.get(0)),
        });
        let event_type = name.event_type();
        match events
            .last_mut()
            .filter(|e| e["event_type"] == event_type)
            .and_then(|e| e["versions"].as_array_mut())
        {
            Some(versions) => versions.push(version),
            None => events.push(json!({"event_type": event_type, "component": name.component, "versions": [version]})),
        }
    }
    Ok(json!({ "events": events }))
}

fn fields(module: &Module, type_name: &str) -> Vec<Value> {
    let Some(Def::Object(object)) = module.def(type_name) else {
        return Vec::new();
    };
    object
        .fields
        .iter()
        .map(|f| json!({"name": f.name, "type": describe(module, &f.ty), "required": f.required, "description": f.doc}))
        .collect()
}

/// A type in a few words: `string (uuid)`, `integer 1..100`, `one of "a", "b"`, `list of Agent`.
pub fn describe(module: &Module, ty: &Ty) -> String {
    match ty {
        Ty::String(s) => {
            let mut out = "string".to_string();
            match s.format {
                Some(Format::Uuid) => out.push_str(" (uuid)"),
                Some(Format::DateTime) => out.push_str(" (date-time)"),
                Some(Format::Date) => out.push_str(" (date)"),
                None => {}
            }
            if s.min_length.is_some() || s.max_length.is_some() {
                let _ = write!(
                    out,
                    ", length {}..{}",
                    bound(s.min_length),
                    bound(s.max_length)
                );
            }
            if let Some(p) = &s.pattern {
                let _ = write!(out, ", matching {p}");
            }
            out
        }
        Ty::Integer(n) | Ty::Number(n) => {
            let kind = if matches!(ty, Ty::Integer(_)) {
                "integer"
            } else {
                "number"
            };
            let low = n
                .minimum
                .as_ref()
                .or(n.exclusive_minimum.as_ref())
                .map(ToString::to_string);
            let high = n
                .maximum
                .as_ref()
                .or(n.exclusive_maximum.as_ref())
                .map(ToString::to_string);
            match (low, high) {
                (None, None) => kind.to_string(),
                (low, high) => format!(
                    "{kind} {}..{}",
                    low.unwrap_or_default(),
                    high.unwrap_or_default()
                ),
            }
        }
        Ty::Boolean => "boolean".into(),
        Ty::Null => "null".into(),
        Ty::Literal(v) => format!("always {v}"),
        Ty::Enum(values) => format!(
            "one of {}",
            values
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ty::Array(items, _) => format!("list of {}", describe(module, items)),
        Ty::Map(values) => format!("map of {}", describe(module, values)),
        Ty::Named(name) => match module.def(name) {
            Some(Def::Union(u)) => format!(
                "one of {} (by {})",
                u.variants
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                u.discriminator
            ),
            _ => format!("object {name}"),
        },
        Ty::Nullable(inner) => format!("{} or null", describe(module, inner)),
        Ty::Any => "any".into(),
    }
}

fn bound(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

pub fn markdown(catalog: &Value) -> String {
    let mut out = String::from("# Event catalog\n");
    for event in catalog["events"].as_array().into_iter().flatten() {
        for v in event["versions"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "\n## `{}` v{}\n\n",
                text(&event["event_type"]),
                v["version"]
            );
            let _ = writeln!(
                out,
                "{}\n\n{}\n\nContract: `schemas/{}`\n",
                text(&v["title"]),
                text(&v["description"]),
                text(&v["file"])
            );
            out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
            for f in v["fields"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    text(&f["name"]),
                    text(&f["type"]).replace('|', "\\|"),
                    if f["required"] == true { "yes" } else { "no" },
                    text(&f["description"]).replace('|', "\\|")
                );
            }
        }
    }
    out
}

pub fn html(catalog: &Value) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Event catalog</title>\n<style>body{font-family:sans-serif;max-width:60rem;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}pre{background:#f4f4f4;padding:.5rem;overflow:auto}</style></head><body>\n<h1>Event catalog</h1>\n<ul>\n",
    );
    let events: Vec<&Value> = catalog["events"].as_array().into_iter().flatten().collect();
    for event in &events {
        let t = escape(&text(&event["event_type"]));
        let _ = writeln!(out, "<li><a href=\"#{t}\">{t}</a></li>");
    }
    out.push_str("</ul>\n");
    for event in events {
        let t = escape(&text(&event["event_type"]));
        for v in event["versions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "<h2 id=\"{t}\">{t} v{}</h2>\n<p><b>{}</b> {}</p>",
                v["version"],
                escape(&text(&v["title"])),
                escape(&text(&v["description"]))
            );
            out.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>\n");
            for f in v["fields"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&text(&f["name"])),
                    escape(&text(&f["type"])),
                    if f["required"] == true { "yes" } else { "no" },
                    escape(&text(&f["description"]))
                );
            }
            let example = serde_json::to_string_pretty(&v["example"]).unwrap_or_default();
            let _ = writeln!(out, "</table>\n<pre>{}</pre>", escape(&example));
        }
    }
    out.push_str("</body></html>\n");
    out
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
