//! `shop payment-sim`: a payment provider to develop and test against.
//!
//! It takes the shop's payment intents and answers at the shop's webhook
//! with notices signed by `SHOP_PAYMENT_WEBHOOK_SECRET`, approving the share
//! of orders asked for (by a hash of the order id, so runs repeat) and
//! declining the rest; it can also stay silent, fail requests and send
//! duplicates. See `shop_adapter_payment::sim`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use shop_adapter_payment::sim::{self, SimSettings};

use crate::config::{MIN_WEBHOOK_SECRET, Settings};
use crate::secrets::MissingSecret;

#[derive(Debug, clap::Args)]
pub struct PaymentSimArgs {
    /// Where the simulator listens (the shop's SHOP_PAYMENT_URL is http:// this).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The shop's webhook, where notices go.
    #[arg(long, default_value = "http://127.0.0.1:8080/api/payments/webhook")]
    webhook: String,
    /// Share of orders whose payment succeeds; the rest are declined.
    #[arg(long, default_value_t = 0.9, value_parser = share)]
    approve: f64,
    /// Share of orders never answered (the shop's SHOP_PAYMENT_TIMEOUT cancels them).
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    silent: f64,
    /// Share of intent requests answered 503 (the shop asks again).
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    fail: f64,
    /// Milliseconds between an intent and its notice.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Times each notice is sent, each freshly signed (the shop takes it once).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    duplicates: u32,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share between 0 and 1")),
    }
}

pub fn run(args: PaymentSimArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let secret = settings.payment_webhook_secret.clone().unwrap_or_default();
    if secret.len() < MIN_WEBHOOK_SECRET {
        return Err(MissingSecret(format!(
            "SHOP_PAYMENT_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET} bytes (it has {}): the simulator signs its notices with the shop's secret",
            secret.len()
        ))
        .into());
    }
    let webhook = args
        .webhook
        .parse()
        .with_context(|| format!("--webhook {:?} is not a URL", args.webhook))?;
    let settings = SimSettings {
        webhook,
        secret: secret.into_bytes(),
        approve: args.approve,
        silent: args.silent,
        fail: args.fail,
        latency: Duration::from_millis(args.latency_ms),
        duplicates: args.duplicates,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let listening = listener.local_addr().context("the listening address")?;
        eprintln!(
            "shop payment-sim: listening on http://{listening}, notices to {} ({settings:?})",
            args.webhook
        );
        sim::serve(listener, settings, crate::wiring::shutdown_signal())
            .await
            .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}
