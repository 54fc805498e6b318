//! Pydantic v2 models. Models are strict (no coercion from strings) and read JSON text with
//! `model_validate_json`, so they accept and reject what the JSON Schema does.

use std::fmt::Write;

use crate::gen::{literal, Layout, HEADER};
use crate::model::{Def, Field, Format, Module, Num, Object, Ty, Union};

pub(crate) const LAYOUT: Layout = Layout {
    extension: "py",
    index_file: "__init__.py",
    index_head: || format!("\"\"\"{HEADER}\"\"\"\n"),
    index_line: |component| format!("from . import {component}\n"),
    render,
};

const PRELUDE: &str = r#"from __future__ import annotations

import datetime
import json
import re
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field


def _whole_number(value: Any) -> Any:
    # JSON Schema counts 1.0 as an integer; strict pydantic would not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unique(items: list[Any]) -> list[Any]:
    keys = [json.dumps(i.model_dump(mode="json") if isinstance(i, BaseModel) else i, sort_keys=True, default=str) for i in items]
    if len(set(keys)) != len(keys):
        raise ValueError("items must be unique")
    return items


def _shaped(pattern: str, what: str, parse: Any) -> BeforeValidator:
    # Pydantic parses more spellings than JSON Schema's formats allow (unix times, UUIDs
    # without hyphens): only the format's own spelling is parsed, here.
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not compiled.fullmatch(value):
            raise ValueError(f"not {what}")
        return parse(value.upper() if what.startswith("an RFC") else value)

    return BeforeValidator(check)


JsonInt = Annotated[int, BeforeValidator(_whole_number)]
Uuid = Annotated[uuid.UUID, _shaped(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "a UUID", uuid.UUID)]
DateTime = Annotated[AwareDatetime, _shaped(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", "an RFC 3339 date-time", datetime.datetime.fromisoformat)]
Date = Annotated[datetime.date, _shaped(r"\d{4}-\d{2}-\d{2}", "an RFC 3339 date", datetime.date.fromisoformat)]
"#;

fn render(module: &Module) -> String {
    let mut out = format!(
        "\"\"\"{HEADER}\n\nEvent contracts of component `{}`.\"\"\"\n\n{PRELUDE}",
        module.component
    );
    for def in &module.defs {
        out.push_str("\n\n");
        match def {
            Def::Object(o) => object(&mut out, o),
            Def::Union(u) => union(&mut out, u),
        }
    }
    out.push_str("\n\n# (event type, major version) -> model\nEVENTS: dict[tuple[str, int], type[BaseModel]] = {\n");
    for event in &module.events {
        let _ = writeln!(
            out,
            "    ({}, {}): {},",
            literal(&event.name.event_type().into()),
            event.name.version,
            event.type_name
        );
    }
    out.push_str("}\n");
    out
}

fn object(out: &mut String, o: &Object) {
    let _ = writeln!(out, "\nclass {}(BaseModel):", o.name);
    if let Some(doc) = &o.doc {
        let _ = writeln!(out, "    {}", docstring(doc));
    }
    let extra = if o.closed { "forbid" } else { "allow" };
    let _ = writeln!(
        out,
        "    model_config = ConfigDict(strict=True, extra=\"{extra}\", populate_by_name=True)"
    );
    for field in &o.fields {
        let _ = writeln!(out, "{}", field_line(field));
    }
}

fn field_line(field: &Field) -> String {
    let (ident, alias) = python_name(&field.name);
    let ty = annotation(&field.ty);
    let mut extras = Vec::new();
    if let Some(alias) = alias {
        extras.push(format!("alias={}", literal(&alias.into())));
    }
    if let Some(doc) = &field.doc {
        extras.push(format!("description={}", literal(&doc.clone().into())));
    }
    let nullable = matches!(field.ty, Ty::Nullable(_) | Ty::Null | Ty::Any);
    match (field.required, nullable) {
        (true, _) if extras.is_empty() => format!("    {ident}: {ty}"),
        (true, _) => format!("    {ident}: {ty} = Field(..., {})", extras.join(", ")),
        // Absent is allowed, null is not: the default is never validated, a sent null is.
        (false, false) => format!(
            "    {ident}: {ty} = Field(default=None{})  # type: ignore[assignment]",
            prefixed(&extras)
        ),
        (false, true) => format!(
            "    {ident}: {ty} = Field(default=None{})",
            prefixed(&extras)
        ),
    }
}

fn prefixed(extras: &[String]) -> String {
    extras.iter().map(|e| format!(", {e}")).collect()
}

fn union(out: &mut String, u: &Union) {
    let variants: Vec<&str> = u.variants.iter().map(|(_, name)| name.as_str()).collect();
    let _ = writeln!(
        out,
        "{} = Annotated[Union[{}], Field(discriminator={})]",
        u.name,
        variants.join(", "),
        literal(&u.discriminator.clone().into())
    );
}

fn annotation(ty: &Ty) -> String {
    match ty {
        Ty::String(s) => {
            let base = match s.format {
                Some(Format::Uuid) => "Uuid",
                Some(Format::DateTime) => "DateTime",
                Some(Format::Date) => "Date",
                None => "str",
            };
            let mut args = Vec::new();
            if let Some(n) = s.min_length {
                args.push(format!("min_length={n}"));
            }
            if let Some(n) = s.max_length {
                args.push(format!("max_length={n}"));
            }
            if let Some(p) = &s.pattern {
                args.push(format!("pattern={}", literal(&p.clone().into())));
            }
            constrained(base, args)
        }
        Ty::Integer(n) => constrained("JsonInt", numeric(n)),
        Ty::Number(n) => constrained("float", numeric(n)),
        Ty::Boolean => "bool".into(),
        Ty::Null => "None".into(),
        Ty::Literal(v) => format!("Literal[{}]", python_literal(v)),
        Ty::Enum(values) => format!(
            "Literal[{}]",
            values
                .iter()
                .map(python_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ty::Array(items, limits) => {
            let mut args = Vec::new();
            if let Some(n) = limits.min_items {
                args.push(format!("min_length={n}"));
            }
            if let Some(n) = limits.max_items {
                args.push(format!("max_length={n}"));
            }
            let list = constrained(&format!("list[{}]", annotation(items)), args);
            match limits.unique {
                true => format!("Annotated[{list}, AfterValidator(_unique)]"),
                false => list,
            }
        }
        Ty::Map(values) => format!("dict[str, {}]", annotation(values)),
        Ty::Named(name) => name.clone(),
        Ty::Nullable(inner) => format!("{} | None", annotation(inner)),
        Ty::Any => "Any".into(),
    }
}

fn numeric(n: &Num) -> Vec<String> {
    let mut args = Vec::new();
    for (key, value) in [
        ("ge", &n.minimum),
        ("le", &n.maximum),
        ("gt", &n.exclusive_minimum),
        ("lt", &n.exclusive_maximum),
        ("multiple_of", &n.multiple_of),
    ] {
        if let Some(v) = value {
            args.push(format!("{key}={v}"));
        }
    }
    args
}

fn constrained(base: &str, args: Vec<String>) -> String {
    match args.is_empty() {
        true => base.to_string(),
        false => format!("Annotated[{base}, Field({})]", args.join(", ")),
    }
}

fn python_literal(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Bool(true) => "True".into(),
        serde_json::Value::Bool(false) => "False".into(),
        serde_json::Value::Null => "None".into(),
        other => literal(other),
    }
}

/// A property name as a Python identifier, and the alias it needs when it is not one.
fn python_name(name: &str) -> (String, Option<String>) {
    const KEYWORDS: &[&str] = &[
        "False",
        "None",
        "True",
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "class",
        "continue",
        "def",
        "del",
        "elif",
        "else",
        "except",
        "finally",
        "for",
        "from",
        "global",
        "if",
        "import",
        "in",
        "is",
        "lambda",
        "nonlocal",
        "not",
        "or",
        "pass",
        "raise",
        "return",
        "try",
        "while",
        "with",
        "yield",
        "model_config",
        "json",
        "uuid",
        "datetime",
    ];
    let mut ident: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ident.starts_with(|c: char| c.is_ascii_digit()) || ident.starts_with('_') {
        ident = format!("f{ident}");
    }
    if KEYWORDS.contains(&ident.as_str()) || ident.starts_with("model_") {
        ident.push('_');
    }
    let alias = (ident != name).then(|| name.to_string());
    (ident, alias)
}

fn docstring(doc: &str) -> String {
    format!(
        "\"\"\"{}\"\"\"",
        doc.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"")
    )
}
