//! `shop-load`: drives a running shop through its real HTTP API with real
//! tokens, reports throughput and latency per request kind, and checks the
//! shop's invariants afterwards; also measures the machine's baselines.
//!
//! It is a client like any other: it knows the API's paths and JSON and the
//! token format (signed with the shop's `SHOP_JWT_SECRET`), nothing else.
//! `bench/run.sh` runs it against the shop in each mode and writes
//! `docs/benchmarks.md`.

#![forbid(unsafe_code)]

// The load shares the cores with the shop it measures, so what it spends is
// taken from the shop: on mimalloc, like the shop, it takes about a tenth
// less CPU per order than on glibc's malloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod check;
mod client;
mod pace;
mod record;
mod report;
mod shop;
mod slow;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::client::Api;
use crate::report::Report;
use crate::shop::Shop;

#[derive(Debug, Parser)]
#[command(name = "shop-load", version, about = "Load generator and baselines for the shop")]
struct Cli {
    /// The shop (or gateway) to drive.
    #[arg(
        long,
        global = true,
        env = "SHOP_LOAD_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    target: String,
    /// Where products are registered and read, when --target serves orders only
    /// (an order instance behind a gateway) [default: --target].
    #[arg(long, global = true, value_name = "URL")]
    products_target: Option<String>,
    /// The secret the shop verifies tokens with (its SHOP_JWT_SECRET; an
    /// embedded shop's is in its data directory, secrets/jwt-secret).
    #[arg(long, global = true, env = "SHOP_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Also write the results as JSON here (for `shop-load report`).
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A name for the run in the results.
    #[arg(long, global = true)]
    name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Customers placing orders, each with a token of their own.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// How long to wait for the saga to settle before the invariants are checked.
    #[arg(long, default_value = "120s", value_parser = duration)]
    settle: Duration,
    /// Skip the invariant check (for targets that are not a shop).
    #[arg(long)]
    no_check: bool,
    /// Create this file once the saga has settled, before the check reads
    /// every order back (a benchmark's cue to read the processes' CPU time).
    #[arg(long, env = "SHOP_LOAD_SETTLED_FILE", value_name = "FILE")]
    settled_file: Option<PathBuf>,
    /// The shop pays through a provider (SHOP_PAYMENT_URL): settling waits
    /// for confirmed orders to be paid or failed too, and one left
    /// CONFIRMED is a violation.
    #[arg(long)]
    paid: bool,
    /// Every order carries delivery details (name, phone, address), which
    /// the shop seals under the customer's data key.
    #[arg(long)]
    delivery: bool,
    /// Most requests in flight at once; more that fall due are counted as not sent.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// Time limit of one request.
    #[arg(long, default_value = "30s", value_parser = duration)]
    timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Order intake: one-unit orders at a fixed rate (latency from each
    /// order's due time) or, with --rate 0, as fast as --workers can.
    Intake {
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value = "60s", value_parser = duration)]
        duration: Duration,
        /// Products the orders are spread over.
        #[arg(long, default_value_t = 100)]
        products: usize,
        /// Closed-loop workers when --rate is 0.
        #[arg(long, default_value_t = 64)]
        workers: usize,
        #[command(flatten)]
        common: Common,
    },
    /// The seed's scenario: users ramped up over --ramp, each creating,
    /// reading and cancelling orders one after another until --duration ends.
    Scenario {
        #[arg(long, default_value = "60s", value_parser = duration)]
        ramp: Duration,
        #[arg(long, default_value = "600s", value_parser = duration)]
        duration: Duration,
        #[arg(long, default_value_t = 100)]
        products: usize,
        #[command(flatten)]
        common: Common,
    },
    /// A flash sale: --orders one-unit orders at --rate for one product with --stock units.
    FlashSale {
        #[arg(long, default_value_t = 100_000)]
        orders: u64,
        #[arg(long, default_value_t = 10_000)]
        stock: i64,
        #[arg(long, default_value_t = 5000.0)]
        rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Normal requests (product reads at --rate for --duration) with no slow
    /// clients, then the same with --slow half-sent requests held open.
    SlowClients {
        #[arg(long, default_value_t = 1000)]
        slow: usize,
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        #[arg(long, default_value = "20s", value_parser = duration)]
        duration: Duration,
        /// How often each slow client sends one more byte of its header.
        #[arg(long, default_value = "1s", value_parser = duration)]
        trickle: Duration,
        #[command(flatten)]
        common: Common,
    },
    /// A link with latency a script controls: forwards --listen to --to,
    /// each answer delayed by the milliseconds written in --control (read
    /// every 100 ms; absent or 0, none). Runs until killed.
    Link {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, value_name = "FILE")]
        control: PathBuf,
    },
    /// Serves the API's shapes with no I/O: the HTTP baseline's target.
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: SocketAddr,
    },
    /// PostgreSQL inserts, one transaction per row and 100 per transaction.
    BaselinePostgres {
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        url: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: u32,
    },
    /// JetStream publishes, pipelined and one by one.
    BaselineJetstream {
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        url: String,
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
    },
    /// Prints the JSON results in DIR as a Markdown table.
    Report { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let secret = cli.secret.clone().unwrap_or_default();
    let products_target = cli.products_target.clone().unwrap_or_else(|| cli.target.clone());
    let command_line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let mut report = Report::new(cli.name.clone().unwrap_or_else(|| command_line.clone()), command_line);
    match cli.command {
        Command::Intake {
            rate,
            duration,
            products,
            workers,
            common,
        } => {
            let (shop, products) = ready(&cli.target, &products_target, &secret, &common, |shop| {
                plenty(shop, products)
            })
            .await?;
            let progress = shop.recorder.progress(Duration::from_secs(2));
            let started = shop.recorder.reset();
            let paced = if rate > 0.0 {
                let count = (rate * duration.as_secs_f64()) as u64;
                let (shop, products) = (Arc::clone(&shop), Arc::new(products.clone()));
                pace::at_rate(rate, count, common.max_in_flight, move |i, due| {
                    let (shop, products) = (Arc::clone(&shop), Arc::clone(&products));
                    async move {
                        let product = &products[i as usize % products.len()].0;
                        shop.place(i, i as usize, product, due).await;
                    }
                })
                .await
            } else {
                let (shop, products) = (Arc::clone(&shop), Arc::new(products.clone()));
                pace::flat_out(workers, Instant::now() + duration, move |i| {
                    let (shop, products) = (Arc::clone(&shop), Arc::clone(&products));
                    async move {
                        let product = &products[i as usize % products.len()].0;
                        shop.place(i, i as usize, product, Instant::now()).await;
                    }
                })
                .await
            };
            progress.abort();
            report.target_rate = (rate > 0.0).then_some(rate);
            finish(&mut report, &shop, &products, &common, paced, started).await?;
        }
        Command::Scenario {
            ramp,
            duration,
            products,
            common,
        } => {
            let (shop, products) = ready(&cli.target, &products_target, &secret, &common, |shop| {
                plenty(shop, products)
            })
            .await?;
            let progress = shop.recorder.progress(Duration::from_secs(5));
            let started = shop.recorder.reset();
            let until = started + duration;
            let users = shop.users.len();
            let mut tasks = tokio::task::JoinSet::new();
            for user in 0..users {
                let (shop, products) = (Arc::clone(&shop), products.clone());
                let joins = started + ramp.mul_f64(user as f64 / users as f64);
                tasks.spawn(async move {
                    tokio::time::sleep_until(joins.into()).await;
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let i = (user as u64) << 32 | n;
                        n += 1;
                        let product = &products[(user + n as usize) % products.len()].0;
                        if let Some(id) = shop.place(i, user, product, Instant::now()).await {
                            shop.query(user, &id).await;
                            shop.cancel(user, &id).await;
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
            progress.abort();
            let paced = pace::Paced {
                elapsed: started.elapsed(),
                ..Default::default()
            };
            finish(&mut report, &shop, &products, &common, paced, started).await?;
        }
        Command::FlashSale {
            orders,
            stock,
            rate,
            common,
        } => {
            let (shop, products) = ready(&cli.target, &products_target, &secret, &common, |shop| {
                vec![(shop.product(0), stock)]
            })
            .await?;
            let progress = shop.recorder.progress(Duration::from_secs(2));
            let started = shop.recorder.reset();
            let product = products[0].0.clone();
            let paced = {
                let shop = Arc::clone(&shop);
                pace::at_rate(rate, orders, common.max_in_flight, move |i, due| {
                    let (shop, product) = (Arc::clone(&shop), product.clone());
                    async move {
                        shop.place(i, i as usize, &product, due).await;
                    }
                })
                .await
            };
            progress.abort();
            report.target_rate = Some(rate);
            finish(&mut report, &shop, &products, &common, paced, started).await?;
            if let Some(invariants) = &report.invariants {
                let oversold = invariants.confirmed as i64 - stock;
                println!(
                    "flash sale: {} orders for {stock} units: {} confirmed, {} oversold, {:.0} reservations/s",
                    invariants.accepted,
                    invariants.confirmed,
                    oversold.max(0),
                    invariants.confirmations_per_second
                );
            }
        }
        Command::SlowClients {
            slow,
            rate,
            duration,
            trickle,
            common,
        } => {
            let (shop, products) =
                ready(&cli.target, &products_target, &secret, &common, |shop| plenty(shop, 1)).await?;
            let path = format!("/api/products/{}", products[0].0);
            let count = (rate * duration.as_secs_f64()) as u64;
            let reads = |kind: &'static str| {
                let (shop, path) = (Arc::clone(&shop), path.clone());
                pace::at_rate(rate, count, common.max_in_flight, move |i, due| {
                    let (shop, path) = (Arc::clone(&shop), path.clone());
                    async move {
                        shop.read(kind, i as usize, &path, due).await;
                    }
                })
            };
            let started = shop.recorder.reset();
            reads("read, no slow clients").await;
            let addr = shop.api.socket_addr().await?;
            // Held through the second phase and a little past it.
            let until = Instant::now() + duration + Duration::from_secs(3);
            let held = slow::hold(addr, slow, trickle, until).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let paced = reads("read, slow clients held").await;
            let opened = held.opened.load(std::sync::atomic::Ordering::Relaxed);
            let cut = held.cut.load(std::sync::atomic::Ordering::Relaxed);
            let refused = held.refused.load(std::sync::atomic::Ordering::Relaxed);
            println!(
                "slow clients: {slow} held open at a time; {opened} opened, {cut} cut off by the server, {refused} refused"
            );
            report.target_rate = Some(rate);
            let no_check = Common {
                no_check: true,
                ..common
            };
            finish(&mut report, &shop, &products, &no_check, paced, started).await?;
        }
        Command::Link { listen, to, control } => {
            link(listen, to, &control).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::EchoServer { listen } => {
            baseline::echo_server(listen).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::BaselinePostgres {
            url,
            seconds,
            connections,
        } => report.baselines = baseline::postgres(&url, seconds, connections).await?,
        Command::BaselineJetstream { url, messages } => report.baselines = baseline::jetstream(&url, messages).await?,
        Command::Report { dir } => {
            print!("{}", report::markdown(&dir)?);
            return Ok(ExitCode::SUCCESS);
        }
    }
    if let Some(path) = &cli.json {
        report.write(path)?;
    }
    let held = report.invariants.as_ref().is_none_or(|i| i.violations.is_empty());
    Ok(if held { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// The shop at `target` with the run's users, and the run's `products`
/// (id, stock) registered and orderable.
async fn ready(
    target: &str,
    products_target: &str,
    secret: &str,
    common: &Common,
    products: impl FnOnce(&Shop) -> Vec<(String, i64)>,
) -> anyhow::Result<(Arc<Shop>, Vec<(String, i64)>)> {
    let api = Api::new(target, common.timeout)?;
    let products_api = Api::new(products_target, common.timeout)?;
    let mut shop = Shop::new(api, products_api, secret, common.users)?;
    shop.delivery = common.delivery;
    let products = products(&shop);
    eprintln!(
        "shop-load: registering {} products on {}",
        products.len(),
        shop.products_api.target()
    );
    shop.register(&products).await?;
    for (product, _) in &products {
        shop.wait_until_orderable(product).await?;
    }
    Ok((Arc::new(shop), products))
}

/// `count` products with more stock than any run orders.
fn plenty(shop: &Shop, count: usize) -> Vec<(String, i64)> {
    (0..count.max(1)).map(|n| (shop.product(n), 1_000_000_000)).collect()
}

async fn finish(
    report: &mut Report,
    shop: &Shop,
    products: &[(String, i64)],
    common: &Common,
    paced: pace::Paced,
    started: Instant,
) -> anyhow::Result<()> {
    let elapsed = paced.elapsed.max(started.elapsed());
    report.elapsed_s = elapsed.as_secs_f64();
    report.sent = paced.sent;
    report.not_sent = paced.not_sent;
    report.kinds = shop.recorder.summary(elapsed);
    report.accepted_per_second = report
        .kinds
        .iter()
        .find(|k| k.kind == "create")
        .map_or(0.0, |k| k.ok as f64 / elapsed.as_secs_f64());
    println!(
        "\n{} in {:.1} s: {:.0} orders accepted/s{}",
        report.name,
        report.elapsed_s,
        report.accepted_per_second,
        match paced.not_sent {
            0 => String::new(),
            n => format!(", {n} due but not sent (too many in flight)"),
        }
    );
    record::print(&report.kinds);
    if !common.no_check {
        let invariants = check::check(
            shop,
            products,
            common.settle,
            common.paid,
            common.settled_file.as_deref(),
        )
        .await?;
        invariants.print();
        report.invariants = Some(invariants);
    }
    Ok(())
}

/// `90`, `90s`, `500ms`, `10m`.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 60s"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// Forwards `listen` to `to` with the latency `control` says, until killed.
async fn link(listen: SocketAddr, to: SocketAddr, control: &std::path::Path) -> anyhow::Result<()> {
    let proxy = shop_testkit::TcpProxy::start_on(listen, to).await?;
    eprintln!("link {listen} -> {to}, latency from {}", control.display());
    let mut current = 0;
    loop {
        // A file being rewritten may read empty for a moment: keep the last value.
        let wanted = match std::fs::read_to_string(control) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(current),
            Err(_) => 0,
        };
        if wanted != current {
            proxy.slow_down(Duration::from_millis(wanted));
            eprintln!("link {listen} -> {to}: {wanted} ms");
            current = wanted;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_with_their_units() {
        let d = |t| super::duration(t).ok();
        assert_eq!(d("90"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(d("500ms"), Some(std::time::Duration::from_millis(500)));
        assert_eq!(d("10m"), Some(std::time::Duration::from_secs(600)));
        assert_eq!(d("1.5s"), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(d("5 parsecs"), None);
        assert_eq!(d("-1s"), None);
    }
}
