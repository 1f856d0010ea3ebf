//! Condition waits with a deadline: the replacement for fixed sleeps in tests.

use std::future::Future;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout_at};

/// First pause between two polls; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest pause between two polls, so a condition that becomes true is seen quickly.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Polls `f` until it returns `Some`, and returns that value.
///
/// Fails, naming `what`, once `deadline` has passed; a single call of `f` that hangs is cut off at
/// the deadline too. Polls start 10 ms apart and back off to 50 ms.
///
/// ```no_run
/// # async fn demo(server: &testkit::ServerProcess) -> anyhow::Result<()> {
/// use std::time::Duration;
/// let state = testkit::wait_until("task 1 to reach the plan gate", Duration::from_secs(20), || async {
///     let task = server.get("/api/tasks/1").await.ok()?;
///     (task["task"]["state"]["state"] == "plan_gate").then_some(task)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let end = start + deadline;
    let mut pause = FIRST_POLL;
    let mut polls = 0u32;
    loop {
        polls += 1;
        match timeout_at(end, f()).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(_) => anyhow::bail!(
                "timed out after {deadline:?} waiting for {what} (the last check was still \
                 running at the deadline; {polls} checks in all)"
            ),
        }
        let now = Instant::now();
        if now >= end {
            anyhow::bail!(
                "timed out after {deadline:?} waiting for {what} ({polls} checks, none true)"
            );
        }
        sleep(pause.min(end - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let calls = Arc::new(AtomicU32::new(0));
        let got = wait_until("the third call", Duration::from_secs(10), || {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n * 10)
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 30);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "stops polling once it has a value"
        );
    }

    #[tokio::test]
    async fn a_condition_that_holds_at_once_needs_one_call() {
        let got = wait_until("nothing", Duration::ZERO, || async { Some("now") })
            .await
            .unwrap();
        assert_eq!(got, "now");
    }

    #[tokio::test]
    async fn fails_at_the_deadline_naming_what_it_waited_for() {
        let started = std::time::Instant::now();
        let err = wait_until(
            "the moon to turn blue",
            Duration::from_millis(200),
            || async { None::<()> },
        )
        .await
        .unwrap_err();
        let elapsed = started.elapsed();
        let msg = err.to_string();
        assert!(msg.contains("the moon to turn blue"), "{msg}");
        assert!(msg.contains("200ms"), "{msg}");
        assert!(
            elapsed >= Duration::from_millis(200),
            "gave up early: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "overshot the deadline: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_check_is_cut_off_at_the_deadline() {
        let started = std::time::Instant::now();
        let err = wait_until(
            "a reply that never comes",
            Duration::from_millis(100),
            std::future::pending::<Option<()>>,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("a reply that never comes"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
