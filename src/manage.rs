//! `bloodbank list|queues|connections|users|vhosts ...`: operating a running server through its
//! management API, the way `rabbitmqadmin` does (tables, or `--json`).

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bloodbank_gateway::client;
use bloodbank_management::path_segment;
use serde_json::{json, Value};

/// Where the management API is and who calls it.
#[derive(clap::Args, Debug, Clone)]
pub struct Api {
    /// The management API of a running `bloodbank serve`.
    #[arg(
        long,
        env = "BLOODBANK_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub url: String,
    /// The user to call it as.
    #[arg(long, env = "BLOODBANK_MANAGEMENT_USER", default_value = "guest")]
    pub user: String,
    #[arg(
        long,
        env = "BLOODBANK_MANAGEMENT_PASSWORD",
        default_value = "guest",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub password: String,
}

impl Api {
    /// One call; the decoded JSON answer (Null for 204), or the API's `reason` as the error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (addr, prefix) = client::split_url(&self.url).map_err(anyhow::Error::msg)?;
        let auth = basic_auth(&self.user, &self.password);
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let response = client::request(&addr, method, &format!("{prefix}/api{path}"), &headers, payload.as_bytes())
            .with_context(|| format!("talking to the management API at {} (is `bloodbank serve` running? --url / BLOODBANK_MANAGEMENT_URL)", self.url))?;
        let value: Value = match response.body.is_empty() {
            true => Value::Null,
            false => serde_json::from_slice(&response.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into())),
        };
        if response.status >= 400 {
            let reason = value["reason"].as_str().unwrap_or("no reason given");
            bail!("{method} {path}: {} {reason}", response.status);
        }
        Ok(value)
    }
}

fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum Kind {
    Queues,
    Exchanges,
    Bindings,
    Connections,
    Channels,
    Consumers,
    Users,
    Vhosts,
    Permissions,
}

impl Kind {
    /// The API path and the columns a table shows (dotted paths into each object).
    fn spec(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::Queues => (
                "/queues",
                &[
                    "vhost",
                    "name",
                    "type",
                    "messages_ready",
                    "messages_unacknowledged",
                    "consumers",
                ],
            ),
            Kind::Exchanges => ("/exchanges", &["vhost", "name", "type", "durable"]),
            Kind::Bindings => (
                "/bindings",
                &[
                    "vhost",
                    "source",
                    "destination_type",
                    "destination",
                    "routing_key",
                ],
            ),
            Kind::Connections => (
                "/connections",
                &[
                    "name",
                    "user",
                    "vhost",
                    "channels",
                    "client_properties.connection_name",
                ],
            ),
            Kind::Channels => (
                "/channels",
                &[
                    "name",
                    "user",
                    "consumer_count",
                    "messages_unacknowledged",
                    "prefetch_count",
                ],
            ),
            Kind::Consumers => (
                "/consumers",
                &[
                    "queue.vhost",
                    "queue.name",
                    "consumer_tag",
                    "ack_required",
                    "prefetch_count",
                    "channel_details.connection_name",
                ],
            ),
            Kind::Users => ("/users", &["name", "tags"]),
            Kind::Vhosts => ("/vhosts", &["name", "messages"]),
            Kind::Permissions => (
                "/permissions",
                &["user", "vhost", "configure", "write", "read"],
            ),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    pub what: Kind,
    /// Only this vhost (queues, exchanges, bindings, connections, channels, consumers).
    #[arg(long)]
    pub vhost: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: Api,
}

#[derive(clap::Subcommand, Debug)]
pub enum QueuesCommand {
    /// Remove every ready message of a queue.
    Purge(QueueArgs),
    /// Delete a queue and its messages.
    Delete(QueueArgs),
}

#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    pub name: String,
    #[arg(long, default_value = "/")]
    pub vhost: String,
    #[command(flatten)]
    pub api: Api,
}

#[derive(clap::Subcommand, Debug)]
pub enum ConnectionsCommand {
    /// Close a connection (its name as `list connections` shows it) with 320 CONNECTION_FORCED.
    Close {
        name: String,
        /// Told to the client in the close.
        #[arg(long, default_value = "Closed via bloodbank CLI")]
        reason: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user, or change its password and tags.
    Add {
        name: String,
        /// The new user's password (as `rabbitmqctl add_user NAME PASSWORD`).
        new_password: String,
        /// Comma-separated: administrator, monitoring, policymaker, management.
        #[arg(long, default_value = "")]
        tags: String,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a user (its connections are closed).
    Delete {
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Set a user's configure/write/read regular expressions in a vhost.
    SetPermissions {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
        #[arg(long, default_value = ".*")]
        configure: String,
        #[arg(long, default_value = ".*")]
        write: String,
        #[arg(long, default_value = ".*")]
        read: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum VhostsCommand {
    Add {
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a vhost with everything in it.
    Delete {
        name: String,
        #[command(flatten)]
        api: Api,
    },
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: Api,
    },
}

pub fn list(args: ListArgs) -> anyhow::Result<()> {
    let (path, columns) = args.what.spec();
    let per_vhost = !matches!(args.what, Kind::Users | Kind::Vhosts | Kind::Permissions);
    let path = match (&args.vhost, per_vhost) {
        (Some(v), true) => format!("{path}/{}", path_segment(v)),
        (Some(_), false) => bail!("--vhost does not apply to {:?}", args.what),
        (None, _) => path.to_string(),
    };
    let items = args.api.call("GET", &path, None)?;
    print_list(&items, columns, args.json)
}

fn print_list(items: &Value, columns: &[&str], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|item| columns.iter().map(|c| cell(item, c)).collect())
                .collect()
        })
        .unwrap_or_default();
    print!("{}", table(columns, &rows));
    Ok(())
}

fn cell(item: &Value, column: &str) -> String {
    let value = column
        .split('.')
        .try_fold(item, |v, k| v.get(k))
        .unwrap_or(&Value::Null);
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, with a header row.
fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = columns
        .iter()
        .map(|c| c.rsplit('.').next().unwrap_or(c).to_string())
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

pub fn queues(command: QueuesCommand) -> anyhow::Result<()> {
    match command {
        QueuesCommand::Purge(q) => {
            q.api.call(
                "DELETE",
                &format!(
                    "/queues/{}/{}/contents",
                    path_segment(&q.vhost),
                    path_segment(&q.name)
                ),
                None,
            )?;
            eprintln!("purged queue '{}' in vhost '{}'", q.name, q.vhost);
        }
        QueuesCommand::Delete(q) => {
            q.api.call(
                "DELETE",
                &format!(
                    "/queues/{}/{}",
                    path_segment(&q.vhost),
                    path_segment(&q.name)
                ),
                None,
            )?;
            eprintln!("deleted queue '{}' in vhost '{}'", q.name, q.vhost);
        }
    }
    Ok(())
}

pub fn connections(command: ConnectionsCommand) -> anyhow::Result<()> {
    let ConnectionsCommand::Close { name, reason, api } = command;
    let (addr, prefix) = client::split_url(&api.url).map_err(anyhow::Error::msg)?;
    let auth = basic_auth(&api.user, &api.password);
    let path = format!("{prefix}/api/connections/{}", path_segment(&name));
    let response = client::request(
        &addr,
        "DELETE",
        &path,
        &[("Authorization", &auth), ("X-Reason", &reason)],
        b"",
    )
    .with_context(|| format!("talking to the management API at {}", api.url))?;
    match response.status {
        204 => eprintln!("closed connection '{name}'"),
        404 => bail!("no connection named '{name}' (see `bloodbank list connections`)"),
        status => bail!(
            "closing '{name}': {status} {}",
            String::from_utf8_lossy(&response.body)
        ),
    }
    Ok(())
}

pub fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add {
            name,
            new_password,
            tags,
            api,
        } => {
            let body = json!({"password": new_password, "tags": tags});
            api.call(
                "PUT",
                &format!("/users/{}", path_segment(&name)),
                Some(&body),
            )?;
            eprintln!("user '{name}' saved");
        }
        UsersCommand::Delete { name, api } => {
            api.call("DELETE", &format!("/users/{}", path_segment(&name)), None)?;
            eprintln!("user '{name}' deleted");
        }
        UsersCommand::List { json, api } => {
            let (path, columns) = Kind::Users.spec();
            print_list(&api.call("GET", path, None)?, columns, json)?;
        }
        UsersCommand::SetPermissions {
            name,
            vhost,
            configure,
            write,
            read,
            api,
        } => {
            let body = json!({"configure": configure, "write": write, "read": read});
            api.call(
                "PUT",
                &format!(
                    "/permissions/{}/{}",
                    path_segment(&vhost),
                    path_segment(&name)
                ),
                Some(&body),
            )?;
            eprintln!("permissions of '{name}' in vhost '{vhost}' set");
        }
    }
    Ok(())
}

pub fn vhosts(command: VhostsCommand) -> anyhow::Result<()> {
    match command {
        VhostsCommand::Add { name, api } => {
            api.call("PUT", &format!("/vhosts/{}", path_segment(&name)), None)?;
            eprintln!("vhost '{name}' created");
        }
        VhostsCommand::Delete { name, api } => {
            api.call("DELETE", &format!("/vhosts/{}", path_segment(&name)), None)?;
            eprintln!("vhost '{name}' deleted");
        }
        VhostsCommand::List { json, api } => {
            let (path, columns) = Kind::Vhosts.spec();
            print_list(&api.call("GET", path, None)?, columns, json)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_read_nested_fields() {
        let items = json!([{"name": "q1", "queue": {"vhost": "/"}, "tags": ["a", "b"]}]);
        let rows: Vec<Vec<String>> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                ["name", "queue.vhost", "tags"]
                    .iter()
                    .map(|c| cell(i, c))
                    .collect()
            })
            .collect();
        assert_eq!(
            table(&["name", "queue.vhost", "tags"], &rows),
            "name  vhost  tags\nq1    /      a,b\n"
        );
    }
}
