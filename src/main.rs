//! `bloodbank`: the 33GOD event bus in one binary.
// Nothing read from a peer or a file may panic the process: no unwrap or expect outside
// tests (clippy.toml allows them in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod contracts;
mod definitions;
mod publish;
mod schemas;
mod serve;
mod speech;
mod tail;

use clap::{Parser, Subcommand};
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
    /// Start every part: the AMQP broker, the HTTP gateway, speech-to-text.
    #[command(args_override_self = true)]
    Serve(Box<config::ServeArgs>),
    /// Export or import durable definitions (RabbitMQ's definitions JSON).
    #[command(subcommand)]
    Definitions(definitions::DefinitionsCommand),
    /// Publish one event through a gateway over HTTP.
    Publish(publish::PublishArgs),
    /// Print events as they arrive on the broker.
    Tail(tail::TailArgs),
    /// Speech to text: install the Whisper model, transcribe a file.
    #[command(subcommand)]
    Speech(speech::SpeechCommand),
    /// Event contracts: validate, generate code, check compatibility, catalog.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
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
        Command::Speech(command) => speech::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bloodbank: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
