//! Rust serde types. They carry the shape (field names and types, closed objects, enums,
//! tagged unions), not the value constraints: validate with the registry, then deserialize.

use std::collections::HashSet;
use std::fmt::Write;

use crate::gen::{literal, Layout, HEADER};
use crate::model::{pascal, Def, Field, Module, Object, Ty, Union};

pub(crate) const LAYOUT: Layout = Layout {
    extension: "rs",
    index_file: "mod.rs",
    index_head: || format!("//! {HEADER}\n\n"),
    index_line: |component| format!("pub mod {component};\n"),
    render,
};

const PRELUDE: &str = r#"#![allow(clippy::all, dead_code)]
use serde::{Deserialize, Serialize};

/// Tells a field sent as null (`Some(None)`) from one left out (`None`).
#[allow(dead_code)]
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
"#;

fn render(module: &Module) -> String {
    let mut out = format!(
        "//! {HEADER}\n//! Event contracts of component `{}`.\n\n{PRELUDE}",
        module.component
    );
    // Objects that are union variants drop their tag field: serde reads it as the tag.
    let mut tagged: Vec<(&str, &str)> = Vec::new();
    for def in &module.defs {
        if let Def::Union(u) = def {
            tagged.extend(
                u.variants
                    .iter()
                    .map(|(_, name)| (name.as_str(), u.discriminator.as_str())),
            );
        }
    }
    let mut enums = Vec::new();
    let mut seen = HashSet::new();
    for def in &module.defs {
        out.push('\n');
        match def {
            Def::Object(o) => {
                let tag = tagged
                    .iter()
                    .find(|(name, _)| *name == o.name)
                    .map(|(_, tag)| *tag);
                object(&mut out, o, tag, &mut enums);
            }
            Def::Union(u) => union(&mut out, u),
        }
    }
    for (name, values) in enums {
        if seen.insert(name.clone()) {
            string_enum(&mut out, &name, &values);
        }
    }
    out.push_str("\n/// (event type, major version, type name) of every contract in this module.\npub const EVENTS: &[(&str, u32, &str)] = &[\n");
    for event in &module.events {
        let _ = writeln!(
            out,
            "    ({}, {}, \"{}\"),",
            literal(&event.name.event_type().into()),
            event.name.version,
            event.type_name
        );
    }
    out.push_str("];\n");
    out.push_str(
        "\n/// Reads a value as the contract's type and writes it back (what a consumer that re-publishes it\n\
         /// sends); `None` when the event type and version are not a contract of this module.\n\
         pub fn round_trip(event_type: &str, version: u32, value: serde_json::Value) -> Option<Result<serde_json::Value, serde_json::Error>> {\n    \
         Some(match (event_type, version) {\n",
    );
    for event in &module.events {
        let _ = writeln!(
            out,
            "        ({}, {}) => serde_json::from_value::<{}>(value).and_then(serde_json::to_value),",
            literal(&event.name.event_type().into()),
            event.name.version,
            event.type_name
        );
    }
    out.push_str("        _ => return None,\n    })\n}\n");
    out
}

fn object(out: &mut String, o: &Object, tag: Option<&str>, enums: &mut Vec<(String, Vec<String>)>) {
    if let Some(doc) = &o.doc {
        let _ = writeln!(out, "/// {}", doc.replace('\n', " "));
    }
    out.push_str("#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n");
    if o.closed {
        out.push_str("#[serde(deny_unknown_fields)]\n");
    }
    let _ = writeln!(out, "pub struct {} {{", o.name);
    for field in o.fields.iter().filter(|f| Some(f.name.as_str()) != tag) {
        field_lines(out, o, field, enums);
    }
    if !o.closed {
        out.push_str("    /// Properties beyond the named ones (the object is open).\n");
        out.push_str(
            "    #[serde(flatten)]\n    pub extra: serde_json::Map<String, serde_json::Value>,\n",
        );
    }
    out.push_str("}\n");
}

fn field_lines(
    out: &mut String,
    o: &Object,
    field: &Field,
    enums: &mut Vec<(String, Vec<String>)>,
) {
    let ident = rust_ident(&field.name);
    let hint = format!("{}{}", o.name, pascal(&field.name));
    let ty = rust_type(&field.ty, &hint, enums);
    if let Some(doc) = &field.doc {
        let _ = writeln!(out, "    /// {}", doc.replace('\n', " "));
    }
    let mut attrs = Vec::new();
    if ident.trim_start_matches("r#") != field.name {
        attrs.push(format!("rename = {}", literal(&field.name.clone().into())));
    }
    let nullable = matches!(field.ty, Ty::Nullable(_));
    let ty = match (field.required, nullable) {
        (true, _) => ty,
        (false, false) => {
            attrs.push("default, skip_serializing_if = \"Option::is_none\"".into());
            format!("Option<{ty}>")
        }
        (false, true) => {
            attrs.push("default, skip_serializing_if = \"Option::is_none\", deserialize_with = \"double_option\"".into());
            format!("Option<{ty}>")
        }
    };
    if !attrs.is_empty() {
        let _ = writeln!(out, "    #[serde({})]", attrs.join(", "));
    }
    let _ = writeln!(out, "    pub {ident}: {ty},");
}

fn union(out: &mut String, u: &Union) {
    if let Some(doc) = &u.doc {
        let _ = writeln!(out, "/// {}", doc.replace('\n', " "));
    }
    out.push_str("#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n");
    let _ = writeln!(
        out,
        "#[serde(tag = {})]\npub enum {} {{",
        literal(&u.discriminator.clone().into()),
        u.name
    );
    for (tag, name) in &u.variants {
        let _ = writeln!(
            out,
            "    #[serde(rename = {})]\n    {}({name}),",
            literal(&tag.clone().into()),
            pascal(tag)
        );
    }
    out.push_str("}\n");
}

fn string_enum(out: &mut String, name: &str, values: &[String]) {
    out.push_str("\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]\n");
    let _ = writeln!(out, "pub enum {name} {{");
    for value in values {
        let variant = match pascal(value) {
            v if v.starts_with(|c: char| c.is_ascii_digit()) => format!("V{v}"),
            v => v,
        };
        let _ = writeln!(
            out,
            "    #[serde(rename = {})]\n    {variant},",
            literal(&value.clone().into())
        );
    }
    out.push_str("}\n");
}

fn rust_type(ty: &Ty, hint: &str, enums: &mut Vec<(String, Vec<String>)>) -> String {
    match ty {
        Ty::String(_) | Ty::Literal(serde_json::Value::String(_)) => "String".into(),
        Ty::Integer(_) => "i64".into(),
        Ty::Number(_) => "f64".into(),
        Ty::Boolean | Ty::Literal(serde_json::Value::Bool(_)) => "bool".into(),
        Ty::Null => "()".into(),
        Ty::Literal(serde_json::Value::Number(n)) if n.is_i64() => "i64".into(),
        Ty::Literal(_) | Ty::Any => "serde_json::Value".into(),
        Ty::Enum(values) if values.iter().all(|v| v.is_string()) => {
            let names = values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            enums.push((hint.to_string(), names));
            hint.to_string()
        }
        Ty::Enum(_) => "i64".into(),
        Ty::Array(items, _) => format!("Vec<{}>", rust_type(items, &format!("{hint}Item"), enums)),
        Ty::Map(values) => format!(
            "std::collections::BTreeMap<String, {}>",
            rust_type(values, &format!("{hint}Value"), enums)
        ),
        Ty::Named(name) => name.clone(),
        Ty::Nullable(inner) => format!("Option<{}>", rust_type(inner, hint, enums)),
    }
}

fn rust_ident(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
        "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro", "override",
        "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
    ];
    let ident: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ident = if ident.starts_with(|c: char| c.is_ascii_digit()) {
        format!("f{ident}")
    } else {
        ident
    };
    match KEYWORDS.contains(&ident.as_str()) {
        true => format!("r#{ident}"),
        false => ident,
    }
}
