//! Per-device flood control shared by the MQTT endpoint and the HTTP device API: a token
//! bucket per device. Over MQTT a device past its rate is slowed (its socket is not read
//! until a token is due), so it loses nothing and cannot starve others; over HTTP it gets
//! 429 with `Retry-After`. Each is counted as `rate_limited`.

use std::time::Duration;
use tokio::time::Instant;

/// A device's allowance.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: f64,
    /// Burst size.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // A busy cabinet sends ~3.3 weight messages per open door per second plus door
        // events and acks; 50/s with a burst of 200 leaves it ample room.
        Self {
            per_second: 50.0,
            burst: 200.0,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    rate: RateLimit,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: RateLimit) -> Self {
        Self {
            tokens: rate.burst,
            at: Instant::now(),
            rate,
        }
    }

    /// Takes a token, or says how long until one is due.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate.per_second).min(self.rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let mut b = Bucket::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        assert!(b.take().is_ok() && b.take().is_ok() && b.take().is_ok());
        let wait = b.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::from_millis(90), "{wait:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.take().is_ok());
        assert!(b.take().is_err());
    }
}
