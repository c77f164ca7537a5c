//! `aiscout-agent service`: the agent under the Windows service control manager (SCM).
//!
//! A Windows service must answer the SCM: report `StartPending` then `Running` soon after it
//! starts, accept Stop and Shutdown, and report `Stopped` with an exit code, or the SCM marks
//! it unresponsive and kills it. The SCM talks to the process through a callback on one of its
//! own threads; this module turns those calls into the one thing the daemon understands, a
//! shutdown future (the same one SIGTERM and Ctrl-C complete on other platforms), so the
//! spool is flushed and a last upload tried exactly as on Linux.
//!
//! Everything here but `windows` is plain code, compiled and tested on every platform: the
//! mapping of control events to a shutdown request ([`on_control`]), the [`StopRequest`] the
//! daemon waits on, the status sequence ([`Phase`]) and the exit code ([`exit_code`]). The
//! `windows` submodule only binds them to the `windows-service` crate; it is compiled for
//! Windows only (checked from Linux with `cargo clippy --target x86_64-pc-windows-gnu`, see
//! `.ci/windows-check`).

use std::sync::Arc;
use std::time::Duration;

#[cfg(windows)]
pub mod windows;

/// The service name the installer registers (`installer/windows/install.ps1`).
pub const SERVICE_NAME: &str = "aiscout-agent";

/// How long the SCM should wait for a pending start or stop before deciding the service hung:
/// the daemon's final upload is bounded by 10 s, joining its threads by a capture slice and a
/// spool flush.
pub const PENDING_WAIT: Duration = Duration::from_secs(30);

/// A control request from the SCM, reduced to what the agent distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// "Report your status" (answer without doing anything).
    Interrogate,
    /// Any other control (pause, parameter change, device events ...): not accepted.
    Other,
    /// The machine is shutting down.
    Shutdown,
    /// An administrator or the installer stops the service.
    Stop,
}

/// The answer to the SCM's callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Handled (`NO_ERROR`).
    Handled,
    /// Not accepted (`ERROR_CALL_NOT_IMPLEMENTED`).
    NotImplemented,
}

/// The service states the agent reports, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reported first, before the runtime is built.
    StartPending,
    /// Reported once the daemon is about to run; Stop and Shutdown are accepted from then on.
    Running,
    /// Reported when a stop was requested and the daemon is flushing.
    StopPending,
    /// Reported last, with the exit code.
    Stopped,
}

impl Phase {
    /// Whether the SCM may send Stop and Shutdown in this phase.
    pub fn accepts_stop(self) -> bool {
        matches!(self, Phase::Running)
    }

    /// How long the SCM should wait before the next status report in this phase.
    pub fn wait_hint(self) -> Duration {
        match self {
            Phase::StartPending | Phase::StopPending => PENDING_WAIT,
            Phase::Running | Phase::Stopped => Duration::ZERO,
        }
    }
}

/// The request to stop, shared between the SCM's callback thread and the daemon. Asking twice
/// is the same as asking once; asking before anyone waits is not lost.
#[derive(Clone, Debug, Default)]
pub struct StopRequest {
    notify: Arc<tokio::sync::Notify>,
}

impl StopRequest {
    /// A request nobody has made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the daemon to stop (from any thread, without blocking).
    pub fn request(&self) {
        // `notify_one` keeps a permit when nobody waits yet, so an early Stop is not lost.
        self.notify.notify_one();
    }

    /// Completes once a stop was requested: the daemon's shutdown future.
    pub async fn requested(&self) {
        self.notify.notified().await;
    }
}

/// What the agent does with one control from the SCM: Stop and Shutdown request the daemon's
/// graceful shutdown, Interrogate is answered, anything else is refused.
pub fn on_control(control: Control, stop: &StopRequest) -> Reply {
    match control {
        Control::Stop | Control::Shutdown => {
            stop.request();
            Reply::Handled
        }
        Control::Interrogate => Reply::Handled,
        Control::Other => Reply::NotImplemented,
    }
}

/// The exit code reported with `Stopped`: 0 after a clean run, else service-specific code 1,
/// which the SCM's recovery actions (`sc.exe failure`, set by the installer with
/// `failureflag 1`) treat as a failure and restart.
pub fn exit_code(clean: bool) -> u32 {
    if clean { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_shutdown_request_the_daemons_shutdown_and_nothing_else_does() {
        for (control, reply, stops) in [
            (Control::Interrogate, Reply::Handled, false),
            (Control::Other, Reply::NotImplemented, false),
            (Control::Shutdown, Reply::Handled, true),
            (Control::Stop, Reply::Handled, true),
        ] {
            let stop = StopRequest::new();
            assert_eq!(on_control(control, &stop), reply, "{control:?}");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            let stopped = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(50), stop.requested()).await.is_ok()
            });
            assert_eq!(stopped, stops, "{control:?}");
        }
    }

    #[test]
    fn stop_from_another_thread_ends_a_daemon_run() {
        // The same future the SCM's Stop completes is what `daemon::run` waits on; here a
        // stand-in loop that only ends on it.
        let stop = StopRequest::new();
        let remote = stop.clone();
        let scm = std::thread::spawn(move || on_control(Control::Stop, &remote));
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().build().expect("rt");
        let ended = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), stop.requested()).await.is_ok()
        });
        assert_eq!(scm.join().expect("scm thread"), Reply::Handled);
        assert!(ended, "the shutdown future completed");
        // A second Stop (the SCM repeats itself when slow) is harmless.
        assert_eq!(on_control(Control::Stop, &stop), Reply::Handled);
    }

    #[test]
    fn status_sequence_accepts_stop_only_while_running_and_exit_codes_tell_failure() {
        let phases = [Phase::StartPending, Phase::Running, Phase::StopPending, Phase::Stopped];
        let accepts: Vec<bool> = phases.iter().map(|p| p.accepts_stop()).collect();
        assert_eq!(accepts, [false, true, false, false]);
        // Pending phases tell the SCM to wait longer than the daemon's final upload (10 s).
        for pending in [Phase::StartPending, Phase::StopPending] {
            assert!(pending.wait_hint() > Duration::from_secs(10), "{pending:?}");
        }
        assert!(Phase::Running.wait_hint().is_zero() && Phase::Stopped.wait_hint().is_zero());
        assert_eq!(exit_code(true), 0);
        assert_ne!(exit_code(false), 0);
    }
}
