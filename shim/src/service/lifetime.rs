//! When the serving shim exits: the one place that decides it.
//!
//! A shim of one container, or of a pod, exits on the Shutdown that finds it with no task
//! (containerd sends Shutdown after each Delete), as containerd expects.
//!
//! A shim of an opt-in group ([`super::GROUP_ANNOTATION`]) serves every container of the group
//! that starts while it lives, so its end races with the next container's `start`: `start`
//! found the socket and told containerd to use it, and containerd's Create comes a moment
//! later. So `start` first reserves the new container's id (a Connect naming it), and the
//! shim leaves only when it holds no task and no reservation younger than
//! [`RESERVATION_TTL`], and has been idle for its linger ([`DEFAULT_LINGER`], or
//! `WASMPOD_GROUP_LINGER_MS` in containerd's environment), which keeps it warm for the next
//! container of the group. The decision and the socket's removal happen under the lock that
//! takes reservations: a reservation that comes after it is refused, and its `start` spawns a
//! new shim on a fresh socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim::ExitSignal;
use log::{info, warn};

/// See [`Lifetime::hold_while_deleting`].
pub struct DeleteHold {
    lifetime: Option<(Arc<Lifetime>, String)>,
}

impl Drop for DeleteHold {
    fn drop(&mut self) {
        if let Some((lifetime, id)) = self.lifetime.take() {
            lifetime.created(&id);
        }
    }
}

/// How long a group shim stays after its last container, by default.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// How long a reservation holds the shim when no Create for it comes (containerd failed
/// between `start` and Create): far above containerd's own delay between the two.
pub const RESERVATION_TTL: Duration = Duration::from_secs(30);

/// containerd's environment variable (the shim inherits it) overriding [`DEFAULT_LINGER`].
const LINGER_ENV: &str = "WASMPOD_GROUP_LINGER_MS";

/// The shim's exit rule and its state.
pub struct Lifetime {
    exit: Arc<ExitSignal>,
    /// This shim's own ttrpc socket, removed before it leaves.
    socket: String,
    /// `Some` for a group shim: how long it stays idle before it leaves.
    linger: Option<Duration>,
    has_tasks: Box<dyn Fn() -> bool + Send + Sync>,
    state: Mutex<State>,
    /// Wakes the group timer to decide again (a Shutdown came while it waited).
    wake: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    /// Container ids a `start` sent here, with when.
    reserved: HashMap<String, Instant>,
    /// The last reservation, Create or Shutdown.
    last_busy: Instant,
    /// A timer is waiting to decide.
    armed: bool,
    /// The decision to leave is taken: no reservation any more.
    leaving: bool,
}

/// What an idle group shim does now.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It holds tasks: a later Shutdown decides again.
    Stay,
    Leave,
    /// Decide again then.
    CheckAt(Instant),
}

/// The group rule: no task, no live reservation, and idle for `linger`. Drops the expired
/// reservations.
fn verdict(state: &mut State, has_tasks: bool, now: Instant, linger: Duration) -> Verdict {
    state
        .reserved
        .retain(|_, at| now.saturating_duration_since(*at) < RESERVATION_TTL);
    if has_tasks {
        return Verdict::Stay;
    }
    let quiet = state.last_busy + linger;
    let leave_at = state
        .reserved
        .values()
        .map(|at| *at + RESERVATION_TTL)
        .fold(quiet, Instant::max);
    if now >= leave_at {
        Verdict::Leave
    } else {
        Verdict::CheckAt(leave_at)
    }
}

/// How long a group shim lingers: [`DEFAULT_LINGER`] unless containerd's environment says.
pub fn group_linger() -> Duration {
    linger_from(std::env::var(LINGER_ENV).ok().as_deref())
}

/// The linger `WASMPOD_GROUP_LINGER_MS` asks for, if it is a number of milliseconds.
fn linger_from(value: Option<&str>) -> Duration {
    match value.map(|v| v.trim().parse::<u64>()) {
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(_)) => {
            warn!(
                "{LINGER_ENV} is not a number of milliseconds: the linger stays {DEFAULT_LINGER:?}"
            );
            DEFAULT_LINGER
        }
        None => DEFAULT_LINGER,
    }
}

impl Lifetime {
    /// The rule of a shim serving `socket`; `linger` is `Some` for a group's.
    pub fn new(
        exit: Arc<ExitSignal>,
        socket: String,
        linger: Option<Duration>,
        has_tasks: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            exit,
            socket,
            linger,
            has_tasks: Box::new(has_tasks),
            state: Mutex::new(State {
                reserved: HashMap::new(),
                last_busy: Instant::now(),
                armed: false,
                leaving: false,
            }),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a group shim for container `id`, whose Create is coming. False when the shim is
    /// leaving: the caller must start another. A shim of its own or a pod's takes none.
    pub fn reserve(&self, id: &str) -> bool {
        if self.linger.is_none() {
            return true;
        }
        let mut state = self.state();
        if state.leaving {
            return false;
        }
        let now = Instant::now();
        state.reserved.insert(id.to_string(), now);
        state.last_busy = now;
        true
    }

    /// Holds a group shim while the task `id` is deleted, until the guard goes: with the task
    /// gone from the registry and its answer not yet sent, another container's Shutdown could
    /// make the shim leave, and that Delete failed with "ttrpc: closed".
    pub fn hold_while_deleting(self: &Arc<Self>, id: &str) -> DeleteHold {
        let held = self.linger.is_some() && self.reserve(id);
        DeleteHold {
            lifetime: held.then(|| (self.clone(), id.to_string())),
        }
    }

    /// Create for `id` ended (either way): its reservation is done.
    pub fn created(&self, id: &str) {
        if self.linger.is_some() {
            let mut state = self.state();
            state.reserved.remove(id);
            state.last_busy = Instant::now();
        }
    }

    /// Shutdown came, or the bundle went: leave now or later, by the rule.
    pub fn idle(self: &Arc<Self>) {
        let Some(linger) = self.linger else {
            if !(self.has_tasks)() {
                info!("no task left: shutting down");
                self.leave();
            }
            return;
        };
        {
            let mut state = self.state();
            state.last_busy = Instant::now();
            if state.leaving {
                return;
            }
            if state.armed {
                self.wake.notify_one();
                return;
            }
            state.armed = true;
        }
        let this = self.clone();
        tokio::spawn(async move { this.decide(linger).await });
    }

    /// The group timer: decides, waiting as long as the rule says.
    async fn decide(&self, linger: Duration) {
        loop {
            let at = {
                let mut state = self.state();
                match verdict(&mut state, (self.has_tasks)(), Instant::now(), linger) {
                    Verdict::Stay => {
                        state.armed = false;
                        return;
                    }
                    Verdict::Leave => {
                        state.leaving = true;
                        info!("group idle for {linger:?}: shutting down");
                        self.leave();
                        return;
                    }
                    Verdict::CheckAt(at) => at,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Removes the socket now, before any reply: containerd removes the bundle once Shutdown
    /// returns, and with it the `address` file containerd-shim reads at exit to find the
    /// socket, which then outlived the shim (2 in 1,000 churn cycles on containerd 1.7).
    ///
    /// Then leaves the bundle, so that containerd-shim's own removal at exit finds no
    /// `address` file: once the socket is gone, the next `start` of a group binds a new shim
    /// at the same path, and that removal would take the new shim's socket from under it
    /// (containerd's dial then fails with "no such file or directory").
    fn leave(&self) {
        super::remove_socket(&self.socket);
        if let Err(e) = std::env::set_current_dir("/") {
            warn!("cannot leave the bundle: {e}");
        }
        self.exit.signal();
    }

    /// A group shim leaves on SIGTERM when it holds no task, without lingering: it is how a
    /// node's teardown stops a shim it no longer knows (containerd-shim ignores SIGTERM).
    pub fn leave_on_sigterm(self: &Arc<Self>) {
        if self.linger.is_none() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return warn!("cannot watch SIGTERM: {e}"),
            };
            while term.recv().await.is_some() {
                let mut state = this.state();
                if !(this.has_tasks)() && !state.leaving {
                    state.leaving = true;
                    info!("SIGTERM with no task: shutting down");
                    this.leave();
                    return;
                }
            }
        });
    }

    /// The bundle this shim runs in is gone. A shim of its own or a pod's leaves if it holds
    /// no task (containerd gave up on it before using it); a group's decides by its rule (its
    /// first container's bundle goes while the group lives on).
    pub fn bundle_removed(self: &Arc<Self>) -> bool {
        if self.linger.is_some() {
            self.idle();
            return false;
        }
        if (self.has_tasks)() {
            return false;
        }
        self.leave();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_secs(5);

    fn idle_state(now: Instant) -> State {
        State {
            reserved: HashMap::new(),
            last_busy: now,
            armed: true,
            leaving: false,
        }
    }

    #[test]
    fn a_group_with_tasks_stays() {
        let now = Instant::now();
        let mut s = idle_state(now - LINGER * 10);
        assert_eq!(verdict(&mut s, true, now, LINGER), Verdict::Stay);
    }

    #[test]
    fn an_idle_group_lingers_then_leaves() {
        let t0 = Instant::now();
        let mut s = idle_state(t0);
        assert_eq!(
            verdict(&mut s, false, t0 + Duration::from_secs(1), LINGER),
            Verdict::CheckAt(t0 + LINGER)
        );
        assert_eq!(verdict(&mut s, false, t0 + LINGER, LINGER), Verdict::Leave);
    }

    #[test]
    fn a_reservation_holds_an_idle_group_until_it_expires() {
        let t0 = Instant::now();
        let mut s = idle_state(t0);
        s.reserved
            .insert("next".into(), t0 + Duration::from_secs(1));
        let later = t0 + LINGER * 2;
        assert_eq!(
            verdict(&mut s, false, later, LINGER),
            Verdict::CheckAt(t0 + Duration::from_secs(1) + RESERVATION_TTL)
        );
        let expired = t0 + Duration::from_secs(1) + RESERVATION_TTL;
        assert_eq!(verdict(&mut s, false, expired, LINGER), Verdict::Leave);
        assert!(s.reserved.is_empty(), "the expired reservation is dropped");
    }

    #[test]
    fn the_linger_comes_from_milliseconds_or_stays_the_default() {
        assert_eq!(linger_from(Some("0")), Duration::ZERO);
        assert_eq!(linger_from(Some(" 250 ")), Duration::from_millis(250));
        assert_eq!(linger_from(Some("5s")), DEFAULT_LINGER);
        assert_eq!(linger_from(None), DEFAULT_LINGER);
    }

    fn lifetime(linger: Option<Duration>, tasks: bool) -> Arc<Lifetime> {
        Arc::new(Lifetime::new(
            Arc::new(ExitSignal::default()),
            String::new(),
            linger,
            move || tasks,
        ))
    }

    #[test]
    fn a_leaving_group_refuses_reservations_and_others_take_none() {
        let group = lifetime(Some(LINGER), false);
        assert!(group.reserve("a"));
        group.state().leaving = true;
        assert!(
            !group.reserve("b"),
            "the next container must get a new shim"
        );
        let own = lifetime(None, false);
        assert!(own.reserve("a"));
        assert!(own.state().reserved.is_empty());
    }

    #[test]
    fn a_group_is_held_while_a_task_is_deleted() {
        let group = lifetime(Some(LINGER), false);
        let held = group.hold_while_deleting("a");
        assert!(
            group.state().reserved.contains_key("a"),
            "no leaving meanwhile"
        );
        drop(held);
        assert!(group.state().reserved.is_empty());

        let own = lifetime(None, false);
        drop(own.hold_while_deleting("a"));
        assert!(own.state().reserved.is_empty());
    }

    #[test]
    fn create_ends_a_reservation() {
        let group = lifetime(Some(LINGER), false);
        group.reserve("a");
        group.created("a");
        assert!(group.state().reserved.is_empty());
    }

    #[tokio::test]
    async fn a_zero_linger_group_leaves_once_idle_and_a_reserved_one_does_not() {
        let group = lifetime(Some(Duration::ZERO), false);
        assert!(group.reserve("next"));
        group.idle();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!group.state().leaving, "the reservation holds it");
        group.created("next");
        group.idle();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(group.state().leaving, "idle, unreserved: it leaves");
    }

    #[test]
    fn a_shim_of_its_own_leaves_on_removal_only_without_tasks() {
        assert!(!lifetime(None, true).bundle_removed());
        assert!(lifetime(None, false).bundle_removed());
    }
}
