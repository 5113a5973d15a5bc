//! The `shop` command line: every command, over the [`Settings`] read once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::Settings;
use crate::{
    apikey_cmd, audit_cmd, customers_cmd, dead_letters_cmd, events_cmd, log_lines, migrate_cmd, ops_cmd, otel,
    outbox_cmd, payment_sim_cmd, rules_cmd, secrets, serve_cmd, telemetry, token_cmd,
};

#[derive(Debug, Parser)]
#[command(
    name = "shop",
    version,
    about = "The order and inventory core of the shop",
    long_about = "The order and inventory core of the shop.\n\nRun without a command, it serves every role embedded: SQLite under ./data, \
                  the REST API on 127.0.0.1:8080. `shop token --sub alice` prints a token to call it with."
)]
struct Cli {
    /// A TOML file of settings (the `SHOP_*` variables by their short names);
    /// the environment wins over it.
    #[arg(long, global = true, env = "SHOP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Without a command, `serve` with its defaults: the embedded shop.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, validate and export the rule components.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
    /// Apply the database migrations embedded in this binary (SHOP_DATABASE_URL).
    Migrate,
    /// Run roles of the shop until SIGINT or SIGTERM: embedded on SQLite by
    /// default, distributed with SHOP_DATABASE_URL=postgres://..., SHOP_NATS_URL, SHOP_REDIS_URL.
    Serve {
        /// Which roles this process runs [default: all; SHOP_ROLE].
        #[arg(long, value_enum)]
        role: Option<serve_cmd::ProcessRole>,
        /// Where the HTTP endpoints listen; port 0 picks a free port
        /// [default: 127.0.0.1:8080; SHOP_LISTEN].
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// List and replay the messages consumers gave up on (embedded, or SHOP_NATS_URL and SHOP_NAMESPACE).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(dead_letters_cmd::DeadLettersCommand),
    /// Write the event catalogue (AsyncAPI 3.0 with a JSON Schema per event) for subscribers.
    #[command(subcommand)]
    Events(events_cmd::EventsCommand),
    /// Inspect the outboxes and republish sent events (embedded, or SHOP_DATABASE_URL).
    #[command(subcommand)]
    Outbox(outbox_cmd::OutboxCommand),
    /// Print a bearer token for the API (signed with SHOP_JWT_SECRET).
    Token(token_cmd::TokenArgs),
    /// Read, cancel and complete orders as an operator.
    #[command(subcommand)]
    Orders(ops_cmd::OrdersCommand),
    /// Read stock and its audit trail; restock and adjust as an operator.
    #[command(subcommand)]
    Stock(ops_cmd::StockCommand),
    /// Create, list and revoke the API keys third-party callers send as X-Api-Key.
    #[command(subcommand)]
    Apikey(apikey_cmd::ApiKeyCommand),
    /// Erase a customer's personal data (GDPR), as DELETE /api/customers/{id} does.
    #[command(subcommand)]
    Customers(customers_cmd::CustomersCommand),
    /// Verify and list the tamper-evident audit log (embedded, or SHOP_DATABASE_URL).
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Rotate the key-encryption key of customer data (SHOP_DATA_KEY).
    #[command(subcommand)]
    Keys(customers_cmd::KeysCommand),
    /// Simulate a payment provider for SHOP_PAYMENT_URL: approves, declines,
    /// stays silent or fails on demand, and calls the shop's webhook.
    #[command(name = "payment-sim")]
    PaymentSim(payment_sim_cmd::PaymentSimArgs),
}

/// Runs the command the arguments name; what `shop` does.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Read once; every command gets the part it needs from this value.
    let settings = Settings::load(cli.config.as_deref());
    let filter = settings
        .as_ref()
        .ok()
        .and_then(|settings| settings.log.as_deref())
        .and_then(|filter| tracing_subscriber::EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let json = match settings
        .as_ref()
        .ok()
        .and_then(|s| s.log_format.as_deref())
        .map(str::trim)
    {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            eprintln!("error: SHOP_LOG_FORMAT={other:?}: expected text or json");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve {
        role: None,
        listen: None,
    });
    let (role, instance) = process_names(&command, settings.as_ref().ok());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match json {
        // One JSON object a line, with the process's role and instance and
        // the fields of the spans it happened in (a request's id and
        // path, a trace id): for log shippers.
        true => {
            let format = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(true);
            logs.json()
                .event_format(log_lines::WithProcess::new(format, &role, &instance))
                .with_filter(filter)
                .boxed()
        }
        false => logs.with_filter(filter).boxed(),
    };
    // Each layer filters for itself: spans exported as traces are kept
    // even when the log lines leave out their level.
    let (traces, export) = match otel::layer(&format!("shop-{role}")) {
        Ok(Some((layer, export))) => (Some(layer), Some(export)),
        Ok(None) => (None, None),
        Err(error) => {
            eprintln!("error: trace export (OTEL_EXPORTER_OTLP_*): {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .with(telemetry::pool_waits())
        .init();
    let code = run(command, settings);
    // Sends the spans still batched before the process ends.
    drop(export);
    code
}

/// Runs `command`; the exit code it ends with.
fn run(command: Command, settings: anyhow::Result<Settings>) -> ExitCode {
    let outcome = settings.and_then(|settings| {
        let settings = &settings;
        match command {
            Command::Rules(command) => rules_cmd::run(command, settings),
            Command::Migrate => migrate_cmd::run(settings),
            Command::Customers(command) => customers_cmd::erase(command, settings),
            Command::Keys(command) => customers_cmd::keys(command, settings),
            Command::Audit(command) => audit_cmd::run(command, settings),
            Command::Serve { role, listen } => serve(role, listen, settings),
            Command::DeadLetters(command) => dead_letters_cmd::run(command, settings),
            Command::Events(command) => events_cmd::run(command, settings),
            Command::Outbox(command) => outbox_cmd::run(command, settings),
            Command::Token(args) => token_cmd::run(args, settings),
            Command::Orders(command) => ops_cmd::run(ops_cmd::Command::Orders(command), settings),
            Command::Stock(command) => ops_cmd::run(ops_cmd::Command::Stock(command), settings),
            Command::Apikey(command) => apikey_cmd::run(command, settings),
            Command::PaymentSim(args) => payment_sim_cmd::run(args, settings),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => match error.downcast_ref::<secrets::MissingSecret>() {
            // One line naming the variable, and a code of its own.
            Some(missing) => {
                eprintln!("shop: {missing}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// What log lines name the process by: the role it serves (`all` unless
/// said otherwise) or `command` for a one-off command, and its instance id
/// (`SHOP_INSTANCE_ID`, else host and process id, as the serving roles say).
fn process_names(command: &Command, settings: Option<&Settings>) -> (String, String) {
    let role = match command {
        Command::Serve { role: Some(role), .. } => format!("{role:?}").to_lowercase(),
        Command::Serve { role: None, .. } => settings
            .and_then(|s| s.role.clone())
            .unwrap_or_else(|| "all".to_owned()),
        _ => "command".to_owned(),
    };
    let instance = settings
        .and_then(|s| s.instance_id.clone())
        .unwrap_or_else(crate::config::default_instance_id);
    (role, instance)
}

/// The command line over `SHOP_ROLE` / `SHOP_LISTEN` over the defaults.
fn serve(
    role: Option<serve_cmd::ProcessRole>,
    listen: Option<SocketAddr>,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let role = match (role, settings.role.as_deref()) {
        (Some(role), _) => role,
        (None, Some(text)) => serve_cmd::ProcessRole::from_str(text, true)
            .map_err(|_| anyhow::anyhow!("SHOP_ROLE={text:?}: expected order, inventory, all or gateway"))?,
        (None, None) => serve_cmd::ProcessRole::All,
    };
    let listen = match (listen, settings.listen.as_deref()) {
        (Some(listen), _) => listen,
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("SHOP_LISTEN={text:?} is not an address like 127.0.0.1:8080"))?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    serve_cmd::run(role, listen, settings)
}
