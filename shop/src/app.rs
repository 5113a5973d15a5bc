//! The composition root: [`App::build`] wires the adapters of one mode to
//! the runtime's ports for the roles a process runs, and serves them.
//! `shop serve` and the tests both start the shop through it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Database, RulesConfig, ServiceConfig, Settings};
use crate::secrets;
use crate::serve_cmd::ProcessRole;

type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A shop process, built and listening: its roles run, its HTTP server
/// accepts connections on [`App::addr`].
pub struct App {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
    /// What the roles do once the server has stopped: leave, stop relays
    /// and consumers, end background tasks.
    teardown: Teardown,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl App {
    /// Starts `role` as `settings` say, listening on `listen` (port 0 picks
    /// a free port). Fails before anything runs when a secret the mode needs
    /// is missing ([`secrets::MissingSecret`]), the port is taken, or a
    /// service the role cannot start without does not answer.
    pub async fn build(settings: &Settings, role: ProcessRole, listen: SocketAddr) -> anyhow::Result<App> {
        let service = ServiceConfig::from_settings(settings)?;
        // A role on real services without its secrets refuses to run.
        let keys = match role {
            ProcessRole::Gateway => secrets::distributed(settings)?,
            _ => secrets::for_database(settings, &service.database)?,
        };
        if role == ProcessRole::Gateway {
            return crate::gateway_role::start(listen, settings, service, &keys).await;
        }
        let rules = RulesConfig::from_settings(settings)?;
        // On real services a rules directory is a way into every instance: it
        // runs only components the deployment pinned or signed.
        if matches!(service.database, Database::Postgres(_)) && rules.dir.is_some() && rules.trust.is_none() {
            return Err(secrets::MissingSecret(
                "SHOP_RULES_DIR on PostgreSQL, NATS or Redis runs only trusted components: set SHOP_RULES_ALLOW (their SHA-256 digests) or SHOP_RULES_KEYS (Ed25519 public keys that sign them)".into(),
            )
            .into());
        }
        crate::serve_cmd::start(role, listen, settings, service, &keys).await
    }

    /// Serves `router` on `listener` within `limits` until stopped, then
    /// runs `teardown`.
    pub(crate) fn serving(
        listener: tokio::net::TcpListener,
        router: axum::Router,
        limits: shop_gateway::ServerLimits,
        teardown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<App> {
        let addr = listener.local_addr().context("the listening address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(shop_gateway::serve(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        Ok(App {
            addr,
            stop,
            served,
            teardown: Box::pin(teardown),
        })
    }

    /// Where the HTTP endpoints listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGINT or SIGTERM, then stops in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(crate::wiring::shutdown_signal()).await
    }

    /// Serves until `stop` completes (or the server fails), then finishes
    /// the requests in flight and stops the roles.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let App {
            stop: stop_serving,
            mut served,
            teardown,
            ..
        } = self;
        let finished = tokio::select! {
            () = stop => {
                let _ = stop_serving.send(());
                (&mut served).await
            }
            finished = &mut served => finished,
        };
        eprintln!("shop: stopping");
        teardown.await;
        match finished {
            Ok(result) => result.context("the HTTP server stopped"),
            Err(error) => Err(error).context("the HTTP server task failed"),
        }
    }
}
