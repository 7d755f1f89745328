//! Failed-login throttling per IP address. A client address that failed more than the limit
//! within the window waits before each further attempt is evaluated; the wait happens in that
//! connection's own task, so other clients are never slowed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per address.
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    /// A throttle allowing `limit` failures per `window`.
    pub fn new(limit: u32, window: Duration) -> AuthThrottle {
        AuthThrottle { limit, window, failures: Mutex::default() }
    }

    /// How long an attempt from `ip` must wait now (zero when under the limit).
    pub fn delay_for(&self, ip: IpAddr) -> Duration {
        let table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&ip) {
            Some((count, since)) if *count >= self.limit => {
                let elapsed = since.elapsed();
                self.window.saturating_sub(elapsed)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failure from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let mut table = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Bound the table: forget expired entries whenever it grows large.
        if table.len() > 100_000 {
            let window = self.window;
            table.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        let entry = table.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// Clears the record of `ip` after a successful login.
    pub fn record_success(&self, ip: IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_failing_address_is_delayed() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let good: IpAddr = "192.0.2.2".parse().unwrap();
        throttle.record_failure(bad);
        assert_eq!(throttle.delay_for(bad), Duration::ZERO);
        throttle.record_failure(bad);
        assert!(throttle.delay_for(bad) > Duration::from_secs(50));
        assert_eq!(throttle.delay_for(good), Duration::ZERO);
        throttle.record_success(bad);
        assert_eq!(throttle.delay_for(bad), Duration::ZERO);
    }
}
