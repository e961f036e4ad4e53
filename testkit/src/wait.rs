//! Waiting for a condition in tests: one polling loop, level-triggered (the condition is
//! asked again each round, so a state that was reached and left again is not reported), with
//! a limit after which the caller learns what it was waiting for.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The end-to-end tests' polling interval: their conditions are REST or SQL calls to real
/// processes, which should not be hammered.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// A wait that ran out of time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {limit:?} waiting for {what}")]
pub struct TimedOut {
    /// What was awaited, as the caller described it.
    pub what: String,
    pub limit: Duration,
}

/// Asks `cond` every `interval` until it returns `Some`, for at most `limit` (it is asked at
/// least once, and once more at or after the limit).
pub async fn poll<T, F, Fut>(
    what: &str,
    interval: Duration,
    limit: Duration,
    mut cond: F,
) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(TimedOut {
                what: what.to_string(),
                limit,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// [`poll`] every 100 ms, failing the test (a panic naming `what`) when `limit` passes: the
/// form nearly every test wants.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_every(DEFAULT_INTERVAL, limit, what, cond).await
}

/// [`wait_for`] with another interval: in-process Raft tests poll every 20 ms, their
/// conditions being cheap and their timings short.
pub async fn wait_for_every<T, F, Fut>(interval: Duration, limit: Duration, what: &str, cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(what, interval, limit, cond).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// [`wait_for_every`] for tests that drive processes with blocking calls (the package and
/// systemd tests run commands inside network namespaces and containers): polls `cond` on this
/// thread every `interval`, panicking after `limit` with a message naming `what`.
pub fn wait_blocking<T>(
    interval: Duration,
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if std::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_never_holds_names_what_was_awaited() {
        let e = poll(
            "the moon",
            Duration::from_millis(10),
            Duration::from_millis(50),
            || async { None::<()> },
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "timed out after 50ms waiting for the moon");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_value_is_returned() {
        let mut n = 0;
        let v = wait_for(Duration::from_secs(1), "three calls", || {
            n += 1;
            let n = n;
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
    }
}
