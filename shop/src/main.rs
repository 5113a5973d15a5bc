//! `shop`: the composition root. The only place that knows every adapter and
//! wires them to the runtime's ports; everything else depends inward.

#![forbid(unsafe_code)]

mod config;
mod migrate_cmd;
mod rules_cmd;
mod serve_cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "shop", version, about = "The order and inventory core of the shop")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, validate and export the rule components.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
    /// Apply the database migrations embedded in this binary (SHOP_DATABASE_URL).
    Migrate,
    /// Run roles of the shop until SIGINT or SIGTERM (distributed mode:
    /// SHOP_DATABASE_URL, SHOP_NATS_URL, SHOP_REDIS_URL).
    Serve {
        /// Which roles this process runs.
        #[arg(long, value_enum, default_value = "all", env = "SHOP_ROLE")]
        role: serve_cmd::Role,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Rules(command) => rules_cmd::run(command),
        Command::Migrate => migrate_cmd::run(),
        Command::Serve { role } => serve_cmd::run(role),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
