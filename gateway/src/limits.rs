//! Rate limits per user and per client address, on the `/api` routes.
//!
//! Counted by the runtime's rate-limit port (Redis shared by all instances,
//! with each instance's own count behind it while Redis is unreachable, or
//! in memory), answered with `429` and `Retry-After`. Should a limiter fail
//! with no fallback, the request goes through: limits protect the shop,
//! they must not take it down with them.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shop_runtime::ports::{Quota, RateLimitError, RateLimiter, Verdict};

use crate::auth::{Auth, Caller};
use crate::problem::Problem;

/// Which limits apply; `None` switches one off.
#[derive(Debug, Clone)]
pub struct Limits {
    pub user: Option<Quota>,
    pub ip: Option<Quota>,
    /// Put in front of every key (`{namespace}:ratelimit:`), so deployments
    /// sharing a Redis count apart.
    pub key_prefix: String,
    /// Peers whose `X-Forwarded-For` is believed (the gateways in front of
    /// this instance): for them, the address counted is the last one they
    /// added, not their own.
    pub trusted_proxies: Vec<IpAddr>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The port, object-safe, so the gateway's layers need no type parameter.
trait DynLimiter: Send + Sync {
    fn check<'a>(&'a self, key: &'a str, quota: Quota) -> BoxFuture<'a, Result<Verdict, RateLimitError>>;
}

impl<T: RateLimiter> DynLimiter for T {
    fn check<'a>(&'a self, key: &'a str, quota: Quota) -> BoxFuture<'a, Result<Verdict, RateLimitError>> {
        Box::pin(RateLimiter::check(self, key, quota))
    }
}

#[derive(Clone)]
pub(crate) struct LimitState {
    limiter: Arc<dyn DynLimiter>,
    // Shared: axum clones the state for every request.
    limits: Arc<Limits>,
    auth: Arc<Auth>,
}

impl LimitState {
    pub(crate) fn new(limiter: impl RateLimiter, limits: Limits, auth: Arc<Auth>) -> Self {
        Self {
            limiter: Arc::new(limiter),
            limits: Arc::new(limits),
            auth,
        }
    }
}

pub(crate) async fn limit(State(state): State<LimitState>, mut request: Request, next: Next) -> Response {
    let address = client_address(&request, &state.limits.trusted_proxies);
    if let (Some(quota), Some(address)) = (state.limits.ip, address) {
        let key = format!("{}ip:{address}", state.limits.key_prefix);
        if let Some(refusal) = over(&state, &key, quota).await {
            return refusal;
        }
    }
    // A user is counted only once their token is verified: a forged subject
    // must not spend someone else's allowance. The verified caller is kept
    // for the handler.
    let caller = state.auth.authenticate(request.headers()).and_then(Result::ok);
    if let Some(caller) = caller {
        if let Some(quota) = state.limits.user {
            let key = format!("{}user:{}", state.limits.key_prefix, caller.subject);
            if let Some(refusal) = over(&state, &key, quota).await {
                return refusal;
            }
        }
        request.extensions_mut().insert::<Caller>(caller);
    }
    next.run(request).await
}

/// The caller's address: the peer's, or the one a trusted proxy in front
/// reports it forwarded for.
fn client_address(request: &Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    // The last entry is the one the proxy added; anything before it came
    // from the caller and proves nothing.
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
    Some(forwarded.unwrap_or(peer))
}

async fn over(state: &LimitState, key: &str, quota: Quota) -> Option<Response> {
    match state.limiter.check(key, quota).await {
        Ok(Verdict::Allowed) => None,
        Ok(Verdict::Limited { retry_after }) => {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!(
                    "more than {} requests a second (bursts of {}); try again in {} s",
                    quota.per_second, quota.burst, seconds
                ),
            )
            .retry_after(seconds.max(1));
            Some(problem.into_response())
        }
        Err(error) => {
            tracing::warn!(target: "shop::http", %error, "rate limits not checked; letting the request through");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: [u8; 4], forwarded: Option<&str>) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 4000))));
        if let Some(value) = forwarded {
            request
                .headers_mut()
                .insert("x-forwarded-for", value.parse().expect("a header value"));
        }
        request
    }

    #[test]
    fn only_a_trusted_proxy_may_say_whom_it_forwards_for() {
        let gateway: IpAddr = [10, 0, 0, 2].into();
        let trusted = [gateway];
        let client: IpAddr = [203, 0, 113, 9].into();
        assert_eq!(
            client_address(&request([10, 0, 0, 2], Some("198.51.100.1, 203.0.113.9")), &trusted),
            Some(client),
            "the address the gateway added, not one the caller made up before it"
        );
        assert_eq!(
            client_address(&request([203, 0, 113, 9], Some("1.2.3.4")), &trusted),
            Some(client),
            "anyone else is counted by their own address"
        );
        assert_eq!(
            client_address(&request([10, 0, 0, 2], Some("garbage")), &trusted),
            Some(gateway)
        );
        assert_eq!(client_address(&request([10, 0, 0, 2], None), &[]), Some(gateway));
    }
}
