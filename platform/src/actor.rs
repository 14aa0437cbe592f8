//! Who is acting: the operator on whose request a command runs, recorded as `actor` in
//! the metadata of every event that command writes, so the log answers "who did this"
//! for every change an operator made (and not only for the commands that name a `by`).
//!
//! The HTTP layer runs an operator's request inside [`acting_as`]; commands issued from
//! that request's task pick the name up in [`crate::store::Meta::new`]. Effects and
//! device messages run elsewhere and record no actor: their cause is in
//! `causation_id`.

use std::future::Future;

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `fut` with `actor` (e.g. `operator:op_…`) as the actor of the commands it issues.
pub async fn acting_as<F: Future>(actor: String, fut: F) -> F::Output {
    ACTOR.scope(actor, fut).await
}

/// The actor of the current task, if it runs on an operator's behalf.
pub fn current() -> Option<String> {
    ACTOR.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_actor_is_seen_inside_its_scope_only() {
        assert_eq!(current(), None);
        let inside = acting_as("operator:op_1".into(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("operator:op_1"));
        assert_eq!(current(), None);
    }
}
