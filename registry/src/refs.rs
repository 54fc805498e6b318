//! `$ref` resolution over a [`SchemaSet`]: where a reference lands, and whether it lands in
//! the same place whether it is read against the document's `$id` or against its file path
//! (the original Holyfields trees resolved only by path).

use serde_json::Value;

use crate::error::Problem;
use crate::tree::{SchemaFile, SchemaSet};

/// Where a reference lands.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub file: &'a SchemaFile,
    /// The JSON pointer inside `file` ("" for the whole document).
    pub pointer: String,
    pub node: &'a Value,
}

/// Resolves `reference` made from `from`, against `from`'s `$id` (or its path when it has
/// none), finding the target by `$id` first and then by path.
pub fn resolve<'a>(
    set: &'a SchemaSet,
    from: &'a SchemaFile,
    reference: &str,
) -> Result<Target<'a>, String> {
    let base = from
        .declared_id()
        .map(str::to_string)
        .unwrap_or_else(|| from.path_uri());
    let (uri, fragment) = absolute(&base, reference)?;
    let file = if uri.is_empty() {
        from
    } else {
        set.lookup(&uri)
            .ok_or_else(|| format!("{reference:?} resolves to {uri}, which no schema declares"))?
    };
    locate(file, fragment_of(reference, &fragment))
}

/// Every `$ref` in `file` with the JSON pointer of the keyword, in document order.
pub fn references(doc: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    collect(doc, String::new(), &mut out, false);
    out
}

/// Problems with `file`'s references: ones that resolve to nothing, and ones that resolve
/// differently by `$id` than by path.
pub fn check(set: &SchemaSet, file: &SchemaFile) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (pointer, reference) in references(&file.doc) {
        let by_id = file
            .declared_id()
            .map(|id| landing(id, reference, |uri| set.by_id(uri), file))
            .unwrap_or_else(|| Err("the document has no $id to resolve it against".into()));
        let by_path = landing(&file.path_uri(), reference, |uri| set.by_path(uri), file);
        let reason = match (by_id, by_path) {
            (Ok(a), Ok(b)) if std::ptr::eq(a.0, b.0) && a.1 == b.1 => match locate(a.0, &a.1) {
                Ok(_) => continue,
                Err(why) => why,
            },
            (Ok(a), Ok(b)) => format!(
                "{reference:?} lands on {}#{} by $id but on {}#{} by path",
                a.0.rel, a.1, b.0.rel, b.1
            ),
            (Err(why), Ok(_)) => format!("{why} (it resolves only by file path)"),
            (Ok(_), Err(why)) => format!("{why} (it resolves only by $id)"),
            (Err(a), Err(_)) => a,
        };
        problems.push(Problem::new(&file.rel, pointer, reason));
    }
    problems
}

fn landing<'a>(
    base: &str,
    reference: &str,
    find: impl Fn(&str) -> Option<&'a SchemaFile>,
    from: &'a SchemaFile,
) -> Result<(&'a SchemaFile, String), String> {
    let (uri, fragment) = absolute(base, reference)?;
    let file = if uri.is_empty() || uri == base.trim_end_matches('#') {
        from
    } else {
        find(&uri)
            .ok_or_else(|| format!("{reference:?} resolves to {uri}, which no schema declares"))?
    };
    Ok((file, fragment_of(reference, &fragment).to_string()))
}

/// The absolute URI a reference names (without fragment; "" when it points into the same
/// document) and its fragment.
fn absolute(base: &str, reference: &str) -> Result<(String, String), String> {
    if let Some(fragment) = reference.strip_prefix('#') {
        return Ok((String::new(), fragment.to_string()));
    }
    let parsed = jsonschema::uri::from_str(base).map_err(|e| format!("base URI {base:?}: {e}"))?;
    let target = jsonschema::uri::resolve_against(&parsed.borrow(), reference)
        .map_err(|e| format!("{reference:?} is not a URI reference: {e}"))?;
    let text = target.as_str();
    Ok(match text.split_once('#') {
        Some((uri, fragment)) => (uri.to_string(), fragment.to_string()),
        None => (text.to_string(), String::new()),
    })
}

/// The fragment as written (resolution may normalise it; the pointer text is what matters).
fn fragment_of<'a>(reference: &'a str, resolved: &'a str) -> &'a str {
    reference
        .split_once('#')
        .map(|(_, f)| f)
        .unwrap_or(resolved)
}

fn locate<'a>(file: &'a SchemaFile, pointer: &str) -> Result<Target<'a>, String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "#{pointer}: plain-name fragments ($anchor) are not supported; use a JSON pointer"
        ));
    }
    let node = file
        .doc
        .pointer(pointer)
        .ok_or_else(|| format!("{}#{pointer} does not exist", file.rel))?;
    Ok(Target {
        file,
        pointer: pointer.to_string(),
        node,
    })
}

/// Walks a schema; `names` is true inside a map whose keys are names, not keywords
/// (`properties`, `$defs`), so a property called `examples` is still searched.
fn collect<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>, names: bool) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (key.as_str(), child) {
                    _ if names => collect(child, here, out, false),
                    ("$ref", Value::String(r)) => out.push((here, r)),
                    (
                        "properties" | "patternProperties" | "$defs" | "definitions"
                        | "dependentSchemas",
                        _,
                    ) => collect(child, here, out, true),
                    // Data, not schemas.
                    ("examples" | "x-invalid-examples" | "const" | "enum" | "default", _) => {}
                    _ => collect(child, here, out, false),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect(child, format!("{at}/{i}"), out, false);
            }
        }
        _ => {}
    }
}
