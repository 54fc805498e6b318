//! Compatibility of two versions of the same contract, as Confluent defines it for JSON
//! Schema: BACKWARD when the new schema accepts everything the old one did (consumers on
//! the new schema read old events), FORWARD when the old schema accepts everything the new
//! one does (consumers still on the old schema read new events), FULL when both hold.
//!
//! Each change is classified by what it does to the set of accepted instances: it narrows
//! it (breaks BACKWARD), widens it (breaks FORWARD) or both. Content models matter: adding
//! a property to a closed object widens it (the old one rejected that property), adding one
//! to an open object narrows it (the old one accepted any value there).

use std::collections::HashSet;
use std::fmt;

use crate::model::{Def, Items, Module, Num, Object, Str, Ty};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Backward,
    Forward,
    Full,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Backward => "BACKWARD",
            Level::Forward => "FORWARD",
            Level::Full => "FULL",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where, as a path of property names (`/state/round_num`, `/participants/[]`).
    pub at: String,
    pub what: String,
    /// Something the old schema accepted is now rejected.
    pub narrows: bool,
    /// Something the old schema rejected is now accepted.
    pub widens: bool,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let breaks = match (self.narrows, self.widens) {
            (true, true) => "breaks BACKWARD and FORWARD",
            (true, false) => "breaks BACKWARD",
            (false, true) => "breaks FORWARD",
            (false, false) => "compatible",
        };
        let at = if self.at.is_empty() { "/" } else { &self.at };
        write!(f, "{at}: {} ({breaks})", self.what)
    }
}

/// Which levels a list of changes keeps.
pub fn holds(changes: &[Change], level: Level) -> bool {
    let narrows = changes.iter().any(|c| c.narrows);
    let widens = changes.iter().any(|c| c.widens);
    match level {
        Level::Backward => !narrows,
        Level::Forward => !widens,
        Level::Full => !narrows && !widens,
    }
}

/// Every change from the old contract (type `old_name` in `old`) to the new one.
pub fn diff(old: &Module, old_name: &str, new: &Module, new_name: &str) -> Vec<Change> {
    let mut differ = Differ {
        old,
        new,
        out: Vec::new(),
        seen: HashSet::new(),
    };
    differ.ty(&Ty::Named(old_name.into()), &Ty::Named(new_name.into()), "");
    differ.out
}

struct Differ<'a> {
    old: &'a Module,
    new: &'a Module,
    out: Vec<Change>,
    seen: HashSet<(String, String)>,
}

impl Differ<'_> {
    fn change(&mut self, at: &str, what: String, narrows: bool, widens: bool) {
        self.out.push(Change {
            at: at.to_string(),
            what,
            narrows,
            widens,
        });
    }

    fn ty(&mut self, old: &Ty, new: &Ty, at: &str) {
        match (old, new) {
            (Ty::Nullable(a), Ty::Nullable(b)) => self.ty(a, b, at),
            (Ty::Nullable(a), b) => {
                self.change(at, "null no longer allowed".into(), true, false);
                self.ty(a, b, at);
            }
            (a, Ty::Nullable(b)) => {
                self.change(at, "null now allowed".into(), false, true);
                self.ty(a, b, at);
            }
            (Ty::Any, Ty::Any) => {}
            (_, Ty::Any) => self.change(at, "any value now allowed".into(), false, true),
            (Ty::Any, _) => self.change(at, "was any value, now constrained".into(), true, false),
            (Ty::String(a), Ty::String(b)) => self.string(a, b, at),
            (Ty::Integer(a), Ty::Integer(b)) | (Ty::Number(a), Ty::Number(b)) => {
                self.number(a, b, at)
            }
            (Ty::Integer(a), Ty::Number(b)) => {
                self.change(at, "integer became number".into(), false, true);
                self.number(a, b, at);
            }
            (Ty::Number(a), Ty::Integer(b)) => {
                self.change(at, "number became integer".into(), true, false);
                self.number(a, b, at);
            }
            (Ty::Boolean, Ty::Boolean) | (Ty::Null, Ty::Null) => {}
            (Ty::Literal(_) | Ty::Enum(_), Ty::Literal(_) | Ty::Enum(_)) => {
                self.values(old, new, at)
            }
            (Ty::String(_), Ty::Literal(_) | Ty::Enum(_)) => self.change(
                at,
                "free string became a fixed set of values".into(),
                true,
                false,
            ),
            (Ty::Literal(_) | Ty::Enum(_), Ty::String(_)) => self.change(
                at,
                "fixed set of values became a free string".into(),
                false,
                true,
            ),
            (Ty::Array(a, la), Ty::Array(b, lb)) => {
                self.items(la, lb, at);
                self.ty(a, b, &format!("{at}/[]"));
            }
            (Ty::Map(a), Ty::Map(b)) => self.ty(a, b, &format!("{at}/{{}}")),
            (Ty::Named(a), Ty::Named(b)) => self.named(a, b, at),
            _ => self.change(
                at,
                format!("type changed from {} to {}", kind(old), kind(new)),
                true,
                true,
            ),
        }
    }

    fn values(&mut self, old: &Ty, new: &Ty, at: &str) {
        let list = |t: &Ty| match t {
            Ty::Literal(v) => vec![v.clone()],
            Ty::Enum(vs) => vs.clone(),
            _ => Vec::new(),
        };
        let (before, after) = (list(old), list(new));
        for gone in before.iter().filter(|v| !after.contains(v)) {
            self.change(at, format!("value {gone} no longer allowed"), true, false);
        }
        for added in after.iter().filter(|v| !before.contains(v)) {
            self.change(at, format!("value {added} now allowed"), false, true);
        }
    }

    fn string(&mut self, a: &Str, b: &Str, at: &str) {
        self.lower(
            "minLength",
            a.min_length.map(|n| n as f64),
            b.min_length.map(|n| n as f64),
            at,
        );
        self.upper(
            "maxLength",
            a.max_length.map(|n| n as f64),
            b.max_length.map(|n| n as f64),
            at,
        );
        self.rule("pattern", &a.pattern, &b.pattern, at);
        self.rule("format", &a.format, &b.format, at);
    }

    fn number(&mut self, a: &Num, b: &Num, at: &str) {
        let f = |n: &Option<serde_json::Number>| n.as_ref().and_then(|n| n.as_f64());
        self.lower("minimum", f(&a.minimum), f(&b.minimum), at);
        self.lower(
            "exclusiveMinimum",
            f(&a.exclusive_minimum),
            f(&b.exclusive_minimum),
            at,
        );
        self.upper("maximum", f(&a.maximum), f(&b.maximum), at);
        self.upper(
            "exclusiveMaximum",
            f(&a.exclusive_maximum),
            f(&b.exclusive_maximum),
            at,
        );
        self.rule("multipleOf", &f(&a.multiple_of), &f(&b.multiple_of), at);
    }

    fn items(&mut self, a: &Items, b: &Items, at: &str) {
        self.lower(
            "minItems",
            a.min_items.map(|n| n as f64),
            b.min_items.map(|n| n as f64),
            at,
        );
        self.upper(
            "maxItems",
            a.max_items.map(|n| n as f64),
            b.max_items.map(|n| n as f64),
            at,
        );
        match (a.unique, b.unique) {
            (false, true) => self.change(at, "items must now be unique".into(), true, false),
            (true, false) => self.change(at, "items no longer need be unique".into(), false, true),
            _ => {}
        }
    }

    /// A lower bound: raising or adding it narrows, lowering or removing it widens.
    fn lower(&mut self, key: &str, a: Option<f64>, b: Option<f64>, at: &str) {
        match (a, b) {
            (None, Some(b)) => self.change(at, format!("{key} {b} added"), true, false),
            (Some(a), None) => self.change(at, format!("{key} {a} removed"), false, true),
            (Some(a), Some(b)) if b > a => {
                self.change(at, format!("{key} raised from {a} to {b}"), true, false)
            }
            (Some(a), Some(b)) if b < a => {
                self.change(at, format!("{key} lowered from {a} to {b}"), false, true)
            }
            _ => {}
        }
    }

    /// An upper bound: lowering or adding it narrows, raising or removing it widens.
    fn upper(&mut self, key: &str, a: Option<f64>, b: Option<f64>, at: &str) {
        match (a, b) {
            (None, Some(b)) => self.change(at, format!("{key} {b} added"), true, false),
            (Some(a), None) => self.change(at, format!("{key} {a} removed"), false, true),
            (Some(a), Some(b)) if b < a => {
                self.change(at, format!("{key} lowered from {a} to {b}"), true, false)
            }
            (Some(a), Some(b)) if b > a => {
                self.change(at, format!("{key} raised from {a} to {b}"), false, true)
            }
            _ => {}
        }
    }

    /// A rule with no order (pattern, format, multipleOf): adding narrows, removing widens,
    /// changing does both.
    fn rule<T: PartialEq + fmt::Debug>(
        &mut self,
        key: &str,
        a: &Option<T>,
        b: &Option<T>,
        at: &str,
    ) {
        match (a, b) {
            (None, Some(b)) => self.change(at, format!("{key} {b:?} added"), true, false),
            (Some(a), None) => self.change(at, format!("{key} {a:?} removed"), false, true),
            (Some(a), Some(b)) if a != b => {
                self.change(at, format!("{key} changed from {a:?} to {b:?}"), true, true)
            }
            _ => {}
        }
    }

    fn named(&mut self, a: &str, b: &str, at: &str) {
        if !self.seen.insert((a.to_string(), b.to_string())) {
            return;
        }
        match (self.old.def(a), self.new.def(b)) {
            (Some(Def::Object(x)), Some(Def::Object(y))) => self.object(x, y, at),
            (Some(Def::Union(x)), Some(Def::Union(y))) => {
                for (tag, name) in &x.variants {
                    match y.variants.iter().find(|(t, _)| t == tag) {
                        Some((_, other)) => {
                            self.named(name, other, &format!("{at}[{}={tag}]", x.discriminator))
                        }
                        None => self.change(at, format!("variant {tag:?} removed"), true, false),
                    }
                }
                for (tag, _) in y
                    .variants
                    .iter()
                    .filter(|(t, _)| !x.variants.iter().any(|(u, _)| u == t))
                {
                    self.change(at, format!("variant {tag:?} added"), false, true);
                }
            }
            _ => self.change(
                at,
                "changed between an object and a union".into(),
                true,
                true,
            ),
        }
    }

    fn object(&mut self, old: &Object, new: &Object, at: &str) {
        match (old.closed, new.closed) {
            (false, true) => self.change(
                at,
                "content model closed (unknown properties now rejected)".into(),
                true,
                false,
            ),
            (true, false) => self.change(
                at,
                "content model opened (unknown properties now accepted)".into(),
                false,
                true,
            ),
            _ => {}
        }
        for field in &new.fields {
            let here = format!("{at}/{}", field.name);
            match old.fields.iter().find(|f| f.name == field.name) {
                Some(before) => {
                    match (before.required, field.required) {
                        (false, true) => self.change(&here, "now required".into(), true, false),
                        (true, false) => {
                            self.change(&here, "no longer required".into(), false, true)
                        }
                        _ => {}
                    }
                    self.ty(&before.ty, &field.ty, &here);
                }
                None => {
                    if field.required {
                        self.change(&here, "required property added".into(), true, old.closed);
                    } else if old.closed {
                        self.change(
                            &here,
                            "optional property added to a closed content model".into(),
                            false,
                            true,
                        );
                    } else if field.ty != Ty::Any {
                        self.change(&here, "property added to an open content model (old data may carry it with any value)".into(), true, false);
                    }
                }
            }
        }
        for field in old
            .fields
            .iter()
            .filter(|f| !new.fields.iter().any(|g| g.name == f.name))
        {
            let here = format!("{at}/{}", field.name);
            if new.closed {
                self.change(&here, "property removed from a closed content model (data carrying it is now rejected)".into(), true, field.required);
            } else if field.ty != Ty::Any || field.required {
                self.change(
                    &here,
                    "property removed from an open content model (any value now accepted)".into(),
                    false,
                    true,
                );
            }
        }
    }
}

fn kind(ty: &Ty) -> &'static str {
    match ty {
        Ty::String(_) => "string",
        Ty::Integer(_) => "integer",
        Ty::Number(_) => "number",
        Ty::Boolean => "boolean",
        Ty::Null => "null",
        Ty::Literal(_) => "const",
        Ty::Enum(_) => "enum",
        Ty::Array(..) => "array",
        Ty::Map(_) => "map",
        Ty::Named(_) => "object",
        Ty::Nullable(_) => "nullable",
        Ty::Any => "any",
    }
}

/// What happened to one contract between two trees.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A contract (event type at a major version) that the base did not have.
    Added,
    /// A contract the base had and the tree no longer has: producers still sending it break.
    Removed,
    Changed(Vec<Change>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: crate::tree::EventName,
    pub outcome: Outcome,
}

impl Report {
    pub fn holds(&self, level: Level) -> bool {
        match &self.outcome {
            Outcome::Added => true,
            Outcome::Removed => false,
            Outcome::Changed(changes) => holds(changes, level),
        }
    }
}

/// Every contract of either tree, compared with its namesake (same event type and major version).
pub fn compare(
    base: &crate::SchemaSet,
    tree: &crate::SchemaSet,
) -> Result<Vec<Report>, crate::Error> {
    let old_modules = crate::model::build(base).map_err(crate::Error::Invalid)?;
    let new_modules = crate::model::build(tree).map_err(crate::Error::Invalid)?;
    let find = |modules: &'_ [Module], name: &crate::tree::EventName| -> Option<(usize, String)> {
        modules.iter().enumerate().find_map(|(i, m)| {
            m.events
                .iter()
                .find(|e| e.name == *name)
                .map(|e| (i, e.type_name.clone()))
        })
    };
    let mut names: Vec<crate::tree::EventName> = base
        .events()
        .chain(tree.events())
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .map(|name| {
            let outcome = match (find(&old_modules, &name), find(&new_modules, &name)) {
                (None, _) => Outcome::Added,
                (_, None) => Outcome::Removed,
                (Some((i, a)), Some((j, b))) => {
                    Outcome::Changed(diff(&old_modules[i], &a, &new_modules[j], &b))
                }
            };
            Report { name, outcome }
        })
        .collect())
}
