//! `bloodbank`: the 33GOD event bus in one binary.
// Nothing read from a peer or a file may panic the process: no unwrap or expect outside
// tests (clippy.toml allows them in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod consume;
mod contracts;
mod definitions;
mod dlq;
mod manage;
mod publish;
mod schemas;
mod serve;
mod speech;
mod tail;

use clap::{Parser, Subcommand};

/// jemalloc, with background threads returning freed memory to the system (after its decay
/// time, 10 s) so that resident memory follows what is held.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::io::IsTerminal;

#[derive(Parser)]
#[command(
    name = "bloodbank",
    version,
    about = "The 33GOD event bus: AMQP 0.9.1 broker and friends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every part: the AMQP broker and its management API, the HTTP gateway,
    /// speech-to-text.
    #[command(args_override_self = true)]
    Serve(Box<config::ServeArgs>),
    /// Export or import durable definitions (RabbitMQ's definitions JSON).
    #[command(subcommand)]
    Definitions(definitions::DefinitionsCommand),
    /// Publish one event through a gateway over HTTP.
    Publish(publish::PublishArgs),
    /// Print events as they arrive on the broker.
    Tail(tail::TailArgs),
    /// Run a command for each event of a queue of your own, with retries and a dead-letter
    /// queue (exit 0 acks).
    Consume(consume::ConsumeArgs),
    /// Dead letters: which queues hold them, show, replay to their routing key, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Speech to text: install the Whisper model, transcribe a file.
    #[command(subcommand)]
    Speech(speech::SpeechCommand),
    /// Event contracts: validate, generate code, check compatibility, catalog.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
    /// List queues, exchanges, bindings, connections, channels, consumers, users, vhosts or
    /// permissions of a running server (through its management API).
    List(manage::ListArgs),
    /// Purge or delete a queue of a running server.
    #[command(subcommand)]
    Queues(manage::QueuesCommand),
    /// Close a client connection of a running server.
    #[command(subcommand)]
    Connections(manage::ConnectionsCommand),
    /// Add, delete and list users, and set their permissions, on a running server.
    #[command(subcommand)]
    Users(manage::UsersCommand),
    /// Add, delete and list vhosts of a running server.
    #[command(subcommand)]
    Vhosts(manage::VhostsCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLOODBANK_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A log on a full disk must not take the process down: the default reports a failed
        // write with eprintln!, which panics when stderr cannot be written either.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => config::load(*args).and_then(serve::run),
        Command::Definitions(command) => definitions::run(command),
        Command::Schemas(command) => schemas::run(command),
        Command::Publish(args) => publish::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Dlq(command) => dlq::run(command),
        Command::Speech(command) => speech::run(command),
        Command::List(args) => manage::list(args),
        Command::Queues(command) => manage::queues(command),
        Command::Connections(command) => manage::connections(command),
        Command::Users(command) => manage::users(command),
        Command::Vhosts(command) => manage::vhosts(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bloodbank: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
