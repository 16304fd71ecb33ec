//! The `wsmio` binary: the pub/sub hub with its demo page, and the shell
//! tools around it.
//!
//! `wsmio serve` runs the hub (every flag has an environment variable, see
//! `wsmio serve --help`); `wsmio token` mints an HS256 token for testing;
//! `wsmio sub`, `wsmio pub` and `wsmio client` talk to a hub (or any
//! WebSocket server) from the shell.
//!
//! Files: `serve_args.rs` (the flags of `serve`), `serve.rs` (running the
//! hub), `token.rs`, `tools.rs` (`sub`, `pub`, `client`).

mod serve;
mod serve_args;
mod token;
mod tools;
mod trim;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wsmio", version, about = "wsmio: a WebSocket pub/sub hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (WebSocket at /ws, demo page at /, /healthz, /metrics).
    Serve(Box<serve_args::ServeArgs>),
    /// Print an HS256 token for the given user (for tests and the demo).
    Token(token::TokenArgs),
    /// Follow topics of a hub: each delivery as a JSON line (reconnects
    /// and resumes on its own).
    Sub(tools::SubArgs),
    /// Publish to a topic of a hub and print the ack.
    Pub(tools::PubArgs),
    /// A raw WebSocket session with any server: lines in, messages out.
    Client(tools::ClientArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Serve(args) => serve::serve(*args),
        Command::Token(args) => {
            token::token(args);
            Ok(())
        }
        Command::Sub(args) => tools::sub(args).map_err(Into::into),
        Command::Pub(args) => tools::publish(args).map_err(Into::into),
        Command::Client(args) => tools::client(args).map_err(Into::into),
    };
    if let Err(e) = result {
        log::error!("{e}");
        std::process::exit(1);
    }
}
