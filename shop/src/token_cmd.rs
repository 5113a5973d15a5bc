//! `shop token`: a bearer token for trying the API, signed with
//! `SHOP_JWT_SECRET` (or the development secret a server without one accepts).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use shop_gateway::{Auth, Role};

use crate::config;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Who the token speaks for: a customer's id, an operator's name.
    #[arg(long)]
    sub: String,
    #[arg(long, value_enum, default_value = "customer")]
    role: TokenRole,
    /// How long it is valid, in hours.
    #[arg(long, default_value_t = 24)]
    hours: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TokenRole {
    Customer,
    Admin,
    Payment,
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let role = match args.role {
        TokenRole::Customer => Role::Customer,
        TokenRole::Admin => Role::Admin,
        TokenRole::Payment => Role::Payment,
    };
    let (secret, development) = config::jwt_secret();
    if development {
        eprintln!("shop: signing with the development secret (set SHOP_JWT_SECRET for anything real)");
    }
    let ttl = Duration::from_secs(args.hours.saturating_mul(3600));
    println!("{}", Auth::hs256(secret.as_bytes()).issue(&args.sub, role, ttl)?);
    Ok(ExitCode::SUCCESS)
}
