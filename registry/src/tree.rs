//! A schema tree: the files of `schemas/`, what each one is by its path, and lookups by URI.
//!
//! Event contracts live at `<component>/<entity>.<action>.v<N>.json`; the path is the event
//! type (`component.entity.action`) and major version. Shared types live under `_common/`.
//! Every file's `$id` is [`BASE_URI`] followed by its path.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Problem};

pub const BASE_URI: &str = "https://33god.dev/schemas/";
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
pub const SHARED_DIR: &str = "_common";

/// An event type and major version, as the path names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventName {
    pub component: String,
    pub entity: String,
    pub action: String,
    pub version: u32,
}

impl EventName {
    /// The routing key, e.g. `theboard.meeting.created`.
    pub fn event_type(&self) -> String {
        format!("{}.{}.{}", self.component, self.entity, self.action)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.event_type(), self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Event(EventName),
    Shared,
}

#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Path relative to the tree's root, with `/` separators.
    pub rel: String,
    pub doc: Value,
    /// `None` when the path breaks the naming rules (reported by [`classify`]).
    pub kind: Option<Kind>,
}

impl SchemaFile {
    /// Where the file's path says it lives.
    pub fn path_uri(&self) -> String {
        format!("{BASE_URI}{}", self.rel)
    }

    /// The `$id` the document declares, if any.
    pub fn declared_id(&self) -> Option<&str> {
        self.doc.get("$id").and_then(Value::as_str)
    }

    pub fn event(&self) -> Option<&EventName> {
        match &self.kind {
            Some(Kind::Event(name)) => Some(name),
            _ => None,
        }
    }
}

/// What a path names, or why it breaks the naming rules.
pub fn classify(rel: &str) -> Result<Kind, String> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.first() == Some(&SHARED_DIR) {
        return match rel.ends_with(".json") {
            true => Ok(Kind::Shared),
            false => Err("shared schemas end in .json".into()),
        };
    }
    let [component, file] = parts[..] else {
        return Err(format!(
            "event contracts live at <component>/<entity>.<action>.v<N>.json (or under {SHARED_DIR}/), not {} folders deep",
            parts.len() - 1
        ));
    };
    let stem = file
        .strip_suffix(".json")
        .ok_or_else(|| "a contract file ends in .json".to_string())?;
    let pieces: Vec<&str> = stem.split('.').collect();
    let [entity, action, version] = pieces[..] else {
        return Err(format!(
            "file name {file:?} is not <entity>.<action>.v<N>.json"
        ));
    };
    let version = version
        .strip_prefix('v')
        .filter(|n| !n.starts_with('0'))
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| format!("{version:?} in {file:?} is not a major version v1, v2, ..."))?;
    for (what, name) in [
        ("component", component),
        ("entity", entity),
        ("action", action),
    ] {
        if !is_name(name) {
            return Err(format!(
                "{what} {name:?} must be lower-case letters, digits and _"
            ));
        }
    }
    Ok(Kind::Event(EventName {
        component: component.into(),
        entity: entity.into(),
        action: action.into(),
        version,
    }))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Every schema file of a tree, parsed.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    pub files: Vec<SchemaFile>,
    by_id: HashMap<String, usize>,
    by_path: HashMap<String, usize>,
}

impl SchemaSet {
    /// Reads every `*.json` under `dir`. Files that are not JSON come back as problems.
    pub fn load(dir: &Path) -> Result<(SchemaSet, Vec<Problem>), Error> {
        let mut texts = Vec::new();
        walk(dir, dir, &mut texts)?;
        Ok(SchemaSet::from_texts(texts))
    }

    /// Builds a set from `(relative path, text)` pairs (files read from disk or from git).
    pub fn from_texts(mut texts: Vec<(String, String)>) -> (SchemaSet, Vec<Problem>) {
        texts.sort();
        let mut problems = Vec::new();
        let mut files = Vec::new();
        for (rel, text) in texts {
            match serde_json::from_str::<Value>(&text) {
                Ok(doc) => {
                    let kind = classify(&rel)
                        .map_err(|why| problems.push(Problem::new(&rel, "", why)))
                        .ok();
                    files.push(SchemaFile { rel, doc, kind });
                }
                Err(e) => problems.push(Problem::new(&rel, "", format!("not JSON: {e}"))),
            }
        }
        (SchemaSet::new(files), problems)
    }

    pub fn new(files: Vec<SchemaFile>) -> SchemaSet {
        let mut by_id = HashMap::new();
        let mut by_path = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            if let Some(id) = file.declared_id() {
                by_id
                    .entry(id.trim_end_matches('#').to_string())
                    .or_insert(i);
            }
            by_path.insert(file.path_uri(), i);
        }
        SchemaSet {
            files,
            by_id,
            by_path,
        }
    }

    /// The file whose `$id` is `uri` (no fragment).
    pub fn by_id(&self, uri: &str) -> Option<&SchemaFile> {
        self.by_id.get(uri).map(|&i| &self.files[i])
    }

    /// The file at the path `uri` names (no fragment).
    pub fn by_path(&self, uri: &str) -> Option<&SchemaFile> {
        self.by_path.get(uri).map(|&i| &self.files[i])
    }

    /// The file a reference lands on: by `$id` first, then by path.
    pub fn lookup(&self, uri: &str) -> Option<&SchemaFile> {
        self.by_id(uri).or_else(|| self.by_path(uri))
    }

    pub fn events(&self) -> impl Iterator<Item = (&EventName, &SchemaFile)> {
        self.files.iter().filter_map(|f| f.event().map(|n| (n, f)))
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), Error> {
    let io = |path: &Path, source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_event_types() {
        let Ok(Kind::Event(name)) = classify("theboard/meeting.round_completed.v2.json") else {
            panic!()
        };
        assert_eq!(name.event_type(), "theboard.meeting.round_completed");
        assert_eq!(name.version, 2);
        assert_eq!(classify("_common/types.v1.json"), Ok(Kind::Shared));
    }

    #[test]
    fn bad_paths_say_why() {
        for bad in [
            "theboard/events/meeting_created.json",
            "theboard/meeting_created.json",
            "theboard/meeting.created.json",
            "theboard/meeting.created.v0.json",
            "theboard/meeting.created.v01.json",
            "TheBoard/meeting.created.v1.json",
            "meeting.created.v1.json",
        ] {
            assert!(classify(bad).is_err(), "{bad}");
        }
    }
}
