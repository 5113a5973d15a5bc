//! Why a backing service failed, kept whole across the port boundary.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The cause carried by the ports' `Unavailable` errors: the adapter's own
/// error (a driver's, a client's), or a sentence where there is no error
/// value. It reads as that error; [`Cause::downcast_ref`] and the source
/// chain reach what lies behind it, so a caller can log the whole chain or
/// look for a specific driver error without the port naming the driver.
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// `error` as the cause.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// `error` as the cause, read as `what: error`.
    pub fn context(what: impl Into<String>, error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self(Arc::new(Context {
            what: what.into(),
            error: error.into(),
        }))
    }

    /// The adapter's error, when it is an `E` (directly or under [`Cause::context`]).
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        let inner: &(dyn Error + 'static) = &*self.0;
        match inner.downcast_ref::<Context>() {
            Some(context) => context.error.downcast_ref::<E>(),
            None => inner.downcast_ref::<E>(),
        }
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are equal when they say the same: what tests compare.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self(Arc::new(Message(message)))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// A cause with no error value behind it.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

#[derive(Debug)]
struct Context {
    what: String,
    error: Box<dyn Error + Send + Sync + 'static>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.error)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::Cause;
    use std::error::Error;

    #[test]
    fn the_adapter_error_stays_reachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cause = Cause::context("cannot reach the store", io);
        assert_eq!(cause.to_string(), "cannot reach the store: refused");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(cause.source().is_some_and(|source| source.to_string() == "refused"));
        let plain = Cause::new(std::io::Error::other("gone"));
        assert!(plain.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(Cause::from("gone"), Cause::from("gone".to_owned()));
    }
}
