//! The HTTP load tool's parts: a keep-alive HTTP/1.1 client over a tokio socket (enough for
//! the gateway's JSON answers) and an open-loop run at a fixed rate.

pub mod client;
pub mod run;
