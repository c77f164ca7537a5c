//! The binding of [`super`] to the Windows service control manager through the
//! `windows-service` crate: the dispatcher, the control handler and the status reports.
//!
//! `define_windows_service!` generates the `extern "system"` entry point the SCM calls; that
//! entry point gets no context, so the validated configuration reaches it through `LAUNCH`,
//! set once by [`run`] before the dispatcher starts and taken once by the service's main.
//! This is the one static in the agent, and it exists only because the SCM's callback
//! signature has no room for a context pointer.
//!
//! Not run here: no Windows machine was available. It is compiled and linted from Linux
//! (`.ci/windows-check`); what that does and does not prove is in `installer/README.md`.

// SAFETY: the only unsafe code is inside `define_windows_service!`, which converts the
// argument vector the SCM passes to the service entry point (a count and that many valid
// wide-string pointers, per the ServiceMain contract) into owned strings.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::sync::{Mutex, OnceLock};

use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;

use super::{Control, Phase, Reply, SERVICE_NAME, StopRequest};
use crate::config::Config;
use crate::daemon::{self, RunOptions};

/// What the service's main runs: set by [`run`], taken once by `service_main`.
static LAUNCH: OnceLock<Mutex<Option<(Config, RunOptions)>>> = OnceLock::new();

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The SCM dispatcher did not start: typically the binary was started from a console
    /// rather than by the SCM (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT, 1063).
    // The library's message leaves out the Windows error under it, so the message shows the
    // whole chain, and `source()` returns nothing (issue 18: each cause once).
    #[error(
        "cannot connect to the service control manager (run `aiscout-agent run` from a console; `service` is for the SCM): {}",
        daemon::error_chain(.0)
    )]
    Dispatcher(windows_service::Error),
    /// `run` was called twice in one process.
    #[error("the service was already started in this process")]
    AlreadyStarted,
}

/// Hands the process to the SCM and runs the daemon as the service `aiscout-agent` until the
/// SCM stops it. Blocks until the service has stopped.
///
/// # Errors
/// When the dispatcher cannot start (not launched by the SCM) or was started already.
pub fn run(config: Config, options: RunOptions) -> Result<(), ServiceError> {
    LAUNCH.set(Mutex::new(Some((config, options)))).map_err(|_| ServiceError::AlreadyStarted)?;
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(ServiceError::Dispatcher)
}

windows_service::define_windows_service!(ffi_service_main, service_main);

fn control(event: ServiceControl) -> Control {
    match event {
        ServiceControl::Stop => Control::Stop,
        ServiceControl::Shutdown | ServiceControl::Preshutdown => Control::Shutdown,
        ServiceControl::Interrogate => Control::Interrogate,
        _ => Control::Other,
    }
}

fn status(phase: Phase, checkpoint: u32, exit: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: match phase {
            Phase::StartPending => ServiceState::StartPending,
            Phase::Running => ServiceState::Running,
            Phase::StopPending => ServiceState::StopPending,
            Phase::Stopped => ServiceState::Stopped,
        },
        controls_accepted: if phase.accepts_stop() {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if exit == 0 {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint,
        wait_hint: phase.wait_hint(),
        process_id: None,
    }
}

/// The service's main, on a thread of the SCM's dispatcher.
fn service_main(_arguments: Vec<OsString>) {
    let launch = LAUNCH.get().and_then(|m| m.lock().ok().and_then(|mut l| l.take()));
    let stop = StopRequest::new();
    let handler = {
        let stop = stop.clone();
        move |event: ServiceControl| match super::on_control(control(event), &stop) {
            Reply::Handled => ServiceControlHandlerResult::NoError,
            Reply::NotImplemented => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let handle = match service_control_handler::register(SERVICE_NAME, handler) {
        Ok(h) => h,
        Err(error) => {
            tracing::error!(error = %error, "Cannot register with the service control manager.");
            return;
        }
    };
    let report = |phase: Phase, checkpoint: u32, exit: u32| {
        if let Err(error) = handle.set_service_status(status(phase, checkpoint, exit)) {
            tracing::warn!(error = %error, "Cannot report the service status.");
        }
    };
    report(Phase::StartPending, 1, 0);
    let Some((config, options)) = launch else {
        tracing::error!("The service started without its configuration.");
        report(Phase::Stopped, 0, super::exit_code(false));
        return;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(error = %error, "Cannot start the async runtime.");
            report(Phase::Stopped, 0, super::exit_code(false));
            return;
        }
    };
    report(Phase::Running, 0, 0);
    let shutdown = async {
        stop.requested().await;
        report(Phase::StopPending, 1, 0);
    };
    let result = runtime.block_on(daemon::run(config, options, shutdown));
    if let Err(error) = &result {
        tracing::error!(error = %error, "The agent stopped with an error.");
    }
    // The daemon has joined its threads and finished its last upload; bound what is left
    // (an abandoned blocking task) so Stopped is always reported.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    report(Phase::Stopped, 0, super::exit_code(result.is_ok()));
}
