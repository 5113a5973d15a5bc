//! `shop dead-letters`: what the consumers gave up on, and sending it back.
//!
//! Dead letters live in the namespace's dead-letter stream on JetStream
//! (`SHOP_NATS_URL`, `SHOP_NAMESPACE`), or in the embedded database when
//! `SHOP_DATABASE_URL` is unset or `sqlite://`. Replaying one publishes its body
//! again to the subject it came from; the handlers, idempotent by the state
//! they change, make a replay of something already handled harmless.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_sqlite::{SqliteBus, SqliteStore};
use shop_runtime::ports::EventBus;
use shop_streams::{Namespace, Topology};

use crate::config::{self, Database, Settings};

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, oldest first: id, consumer, subject, deliveries, reason.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish dead letters again to their subjects and remove them from the list.
    Replay {
        /// The ids `list` shows.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<u64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(command: DeadLettersCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = config::database(settings)?;
    config::block_on(async {
        let topology = Topology::new(Namespace::new(config::namespace(settings))?);
        match database {
            Database::Embedded(url) => {
                let store = SqliteStore::open(&url).await?;
                execute(&SqliteBus::new(&store, topology.clone()), &topology, command).await
            }
            Database::Postgres(_) => {
                let bus = JetStreamBus::connect(config::nats(settings)?, topology.clone()).await?;
                execute(&bus, &topology, command).await
            }
        }
    })
}

async fn execute(bus: &impl EventBus, topology: &Topology, command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadLettersCommand::List { limit } => list(bus, topology, limit).await,
        DeadLettersCommand::Replay { ids, all } => replay(bus, ids, all).await,
    }
}

async fn list(bus: &impl EventBus, topology: &Topology, limit: usize) -> anyhow::Result<ExitCode> {
    let letters = bus.dead_letters(limit).await?;
    if letters.is_empty() {
        println!("no dead letters in namespace {}", topology.namespace());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>8}  {:<32}  {:<40}  {:>10}  REASON",
        "ID", "CONSUMER", "SUBJECT", "DELIVERIES"
    );
    for letter in letters {
        println!(
            "{:>8}  {:<32}  {:<40}  {:>10}  {}",
            letter.id, letter.consumer, letter.subject, letter.deliveries, letter.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(bus: &impl EventBus, ids: Vec<u64>, all: bool) -> anyhow::Result<ExitCode> {
    let ids = if all {
        bus.dead_letters(usize::MAX).await?.into_iter().map(|l| l.id).collect()
    } else {
        ids
    };
    let mut failed = 0;
    for id in &ids {
        match bus.replay_dead_letter(*id).await {
            Ok(()) => println!("replayed {id}"),
            Err(error) => {
                eprintln!("dead letter {id}: {error}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} dead letters not replayed", ids.len());
    }
    println!("{} dead letters replayed", ids.len());
    Ok(ExitCode::SUCCESS)
}
