//! The key-value port on Redis, synchronous: rule components call it from
//! inside a synchronous WebAssembly call. A few blocking connections are kept
//! for reuse; one that fails is dropped and replaced on the next call.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Connection, RedisError, Script};
use shop_runtime::ports::{Cause, KeyValue, KvError};

use crate::{RedisEndpoint, TIMEOUT, client};

const INCREMENT: &str = r"
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
";

/// Idle connections kept for reuse.
const POOL: usize = 8;

pub struct RedisKeyValue {
    client: redis::Client,
    idle: Mutex<Vec<Connection>>,
    increment: Script,
}

impl std::fmt::Debug for RedisKeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisKeyValue")
    }
}

impl RedisKeyValue {
    /// Checks the URL and that Redis answers.
    pub fn connect(endpoint: impl Into<RedisEndpoint>) -> Result<Self, KvError> {
        let endpoint = endpoint.into();
        let kv = Self::connect_lazily(endpoint.clone())?;
        kv.with(|c| redis::cmd("PING").query::<String>(c)).map_err(|e| {
            KvError::Unavailable(Cause::context(
                format!("cannot reach Redis at {}", endpoint.redacted()),
                e,
            ))
        })?;
        Ok(kv)
    }

    /// Checks the URL only: connections are opened when a call needs one,
    /// so a process starts while Redis is away.
    pub fn connect_lazily(endpoint: impl Into<RedisEndpoint>) -> Result<Self, KvError> {
        Ok(Self {
            client: client(&endpoint.into()).map_err(KvError::Unavailable)?,
            idle: Mutex::new(Vec::new()),
            increment: Script::new(INCREMENT),
        })
    }

    fn with<T>(&self, call: impl FnOnce(&mut Connection) -> Result<T, RedisError>) -> Result<T, KvError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.open().map_err(|e| KvError::Unavailable(Cause::new(e)))?,
        };
        match call(&mut connection) {
            Ok(value) => {
                if let Ok(mut idle) = self.idle.lock()
                    && idle.len() < POOL
                {
                    idle.push(connection);
                }
                Ok(value)
            }
            // The connection is dropped: after an I/O error or a timeout it
            // may be mid-reply, and opening another is cheap.
            Err(error) => Err(KvError::Unavailable(Cause::new(error))),
        }
    }

    fn open(&self) -> Result<Connection, RedisError> {
        let connection = self.client.get_connection_with_timeout(TIMEOUT)?;
        connection.set_read_timeout(Some(TIMEOUT))?;
        connection.set_write_timeout(Some(TIMEOUT))?;
        Ok(connection)
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl KeyValue for RedisKeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.with(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.with(|c| {
            let mut command = redis::cmd("SET");
            command.arg(key).arg(value);
            if let Some(ttl) = ttl {
                command.arg("PX").arg(millis(ttl));
            }
            command.query(c)
        })
    }

    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
        let outcome = self.with(|c| self.increment.key(key).arg(delta).arg(ttl.map_or(0, millis)).invoke(c));
        match outcome {
            Err(KvError::Unavailable(message)) if message.to_string().contains("not an integer") => {
                Err(KvError::NotACounter(key.to_owned()))
            }
            other => other,
        }
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.with(|c| redis::cmd("DEL").arg(key).query(c))
    }
}
