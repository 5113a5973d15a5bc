//! `shop token`: a bearer token for trying the API, signed with
//! `SHOP_JWT_SECRET`, or in the embedded mode with the secret the server
//! made in its data directory (made here first if the server has not run).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use shop_gateway::{Auth, CallerRole};

use crate::config::{self, Settings};
use crate::secrets;

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

pub fn run(args: TokenArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let role = match args.role {
        TokenRole::Customer => CallerRole::Customer,
        TokenRole::Admin => CallerRole::Admin,
        TokenRole::Payment => CallerRole::Payment,
    };
    let secret = match config::database(settings)? {
        config::Database::Embedded(url) => Some(secrets::embedded_jwt_secret(settings, &secrets::data_dir(&url))?),
        config::Database::Postgres(_) => settings.jwt_secret.clone().filter(|s| !s.is_empty()),
    };
    let Some(secret) = secret else {
        anyhow::bail!("SHOP_JWT_SECRET is not set: there is no secret to sign with");
    };
    let ttl = Duration::from_secs(args.hours.saturating_mul(3600));
    // Says what the servers of these settings check (issuer, audience),
    // and lives no longer than they accept.
    let checks = config::token_checks(settings)?;
    if ttl > checks.max_ttl {
        anyhow::bail!(
            "--hours {}: longer than SHOP_JWT_MAX_TTL ({} s), which servers refuse",
            args.hours,
            checks.max_ttl.as_secs()
        );
    }
    let auth = Auth::hs256(secret.as_bytes()).with_token_checks(checks);
    println!("{}", auth.issue(&args.sub, role, ttl)?);
    Ok(ExitCode::SUCCESS)
}
