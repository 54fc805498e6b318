//! HTTP for the gateway's tests: the gateway crate's own small client, with JSON helpers.

pub use bloodbank_gateway::client::Response;

pub trait Json {
    fn json(&self) -> serde_json::Value;
}

impl Json for Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    bloodbank_gateway::client::request(addr, method, path, headers, body)
        .expect("an HTTP exchange with the gateway")
}

pub fn post_json(
    addr: &str,
    path: &str,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request(addr, "POST", path, &all, body.to_string().as_bytes())
}

pub fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}
