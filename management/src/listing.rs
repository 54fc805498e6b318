//! Lists as RabbitMQ's API returns them: filtered by `name` (optionally a regex), sorted,
//! narrowed to `columns`, and paginated when `page` is given.

use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The query of a list request.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub columns: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub name: Option<String>,
    pub use_regex: Option<String>,
    pub sort: Option<String>,
    pub sort_reverse: Option<String>,
}

const MAX_PAGE_SIZE: usize = 500;

fn lookup<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, k| v.get(k))
}

/// Keeps only `columns` (dotted paths into nested objects).
fn narrow(item: &Value, columns: &[&str]) -> Value {
    let mut out = Map::new();
    for col in columns {
        if let Some(value) = lookup(item, col) {
            let parts: Vec<&str> = col.split('.').collect();
            place(&mut out, &parts, value.clone());
        }
    }
    Value::Object(out)
}

fn place(into: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            into.insert(last.to_string(), value);
        }
        [first, rest @ ..] => {
            let next = into.entry(first.to_string()).or_insert_with(|| json!({}));
            if let Value::Object(map) = next {
                place(map, rest, value);
            }
        }
    }
}

fn number(text: &Option<String>) -> Result<Option<usize>, ()> {
    match text {
        None => Ok(None),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or(()),
    }
}

fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

pub fn list(mut items: Vec<Value>, q: &ListQuery) -> Result<Value, ApiError> {
    let total = items.len();
    if let Some(name) = q.name.as_deref().filter(|n| !n.is_empty()) {
        let regex = q.use_regex.as_deref() == Some("true");
        let matcher = match regex {
            true => Some(
                regex::Regex::new(name)
                    .map_err(|e| ApiError::bad(format!("name is not a regular expression: {e}")))?,
            ),
            false => None,
        };
        items.retain(|i| {
            let n = i.get("name").and_then(Value::as_str).unwrap_or("");
            match &matcher {
                Some(r) => r.is_match(n),
                None => n.contains(name),
            }
        });
    }
    if let Some(sort) = q.sort.as_deref().filter(|s| !s.is_empty()) {
        items.sort_by(|a, b| {
            order(
                lookup(a, sort).unwrap_or(&Value::Null),
                lookup(b, sort).unwrap_or(&Value::Null),
            )
        });
        if q.sort_reverse.as_deref() == Some("true") {
            items.reverse();
        }
    }
    let filtered = items.len();
    let invalid = || {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "undefined".into());
        ApiError::Pagination(format!(
            "Invalid pagination parameters: page number {}, page size {}",
            shown(&q.page),
            shown(&q.page_size)
        ))
    };
    let page = number(&q.page).map_err(|_| invalid())?;
    let page_size = number(&q.page_size).map_err(|_| invalid())?.unwrap_or(100);
    if page_size > MAX_PAGE_SIZE {
        return Err(invalid());
    }
    let columns: Option<Vec<&str>> = q.columns.as_deref().map(|c| {
        c.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    });
    let shape = |i: Value| match &columns {
        Some(cols) => narrow(&i, cols),
        None => i,
    };
    let Some(page) = page else {
        return Ok(Value::Array(items.into_iter().map(shape).collect()));
    };
    let page_count = filtered.div_ceil(page_size).max(1);
    if page > page_count {
        return Err(ApiError::bad(format!(
            "page {page} is past the last page ({page_count})"
        )));
    }
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(shape)
        .collect();
    Ok(json!({
        "filtered_count": filtered,
        "item_count": slice.len(),
        "items": slice,
        "page": page,
        "page_count": page_count,
        "page_size": page_size,
        "total_count": total,
    }))
}
