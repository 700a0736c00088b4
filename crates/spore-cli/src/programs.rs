//! `spore program prune`: the daemon's program store.

use crate::client::{Client, encode};
use clap::{Args, Subcommand};
use hyper::Method;
use spore_daemon::model::PrunedPrograms;

/// The daemon's program store.
#[derive(Subcommand)]
pub enum ProgramCommand {
    /// Delete the programs no sandbox uses from the daemon's store, with their compiled code.
    Prune(ProgramPruneArgs),
}

/// `spore program prune`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  spore program prune\n  spore program prune --grace 0s   # also what was uploaded a moment ago"
)]
pub struct ProgramPruneArgs {
    /// Keep programs uploaded or used within this long (a deploy uploads, then creates).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    grace: String,
}

pub async fn program(client: &Client, command: ProgramCommand, json: bool) -> anyhow::Result<i32> {
    match command {
        ProgramCommand::Prune(args) => {
            let path = format!("/v1/programs/prune?grace={}", encode(&args.grace));
            let pruned: PrunedPrograms = client.json(Method::POST, &path).await?;
            if json {
                println!("{}", serde_json::to_string(&pruned)?);
                return Ok(0);
            }
            for d in &pruned.deleted {
                println!("Deleted {}", d.digest);
            }
            println!(
                "Deleted {} program(s); reclaimed {}",
                pruned.deleted.len(),
                spore_sandbox::human_bytes(pruned.bytes)
            );
            Ok(0)
        }
    }
}
