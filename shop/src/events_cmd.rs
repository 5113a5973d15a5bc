//! `shop events`: the event catalogue subscribers build on, as files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use shop_streams::{Namespace, Topology, catalogue};

use crate::config::{self, Settings};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write the AsyncAPI 3.0 document of SHOP_NAMESPACE's streams, subjects,
    /// consumers and messages, with a JSON Schema per event, as
    /// DIR/asyncapi.json (what a serving shop answers at /asyncapi.json).
    Write {
        #[arg(default_value = "docs/events")]
        dir: PathBuf,
    },
}

pub fn run(command: EventsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::Write { dir } => {
            let topology = Topology::new(Namespace::new(config::namespace(settings))?);
            let document = catalogue::asyncapi(&topology);
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("asyncapi.json");
            let text = serde_json::to_string_pretty(&document)? + "\n";
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
