//! `aiscout-agent`: the command-line entry point (`run`, `status`, `check-config`, `scan`, `replay`,
//! `capture`, and on Windows `service`).
//!
//! Exit codes: 0 on success (a closed output pipe counts as success), 1 on a runtime
//! failure, 2 on a usage error (clap's own).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aiscout_agent::capture::FileReader;
use aiscout_agent::matching::Matcher;
use aiscout_agent::pipeline::{self, Options, PipelineError, Summary};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// Discovers AI tools used on this machine (network names, installed apps, extensions,
/// command-line tools, local models) and reports the ones in the AI catalog to the aiscout
/// collector. Nothing that does not match the catalog is stored, logged or sent.
///
/// Deployed by MDM as a service running `aiscout-agent run --config FILE`; `check-config`
/// validates that file first. `scan`, `replay` and `capture` run one stage in the foreground
/// for diagnostics.
#[derive(Parser, Debug)]
#[command(name = "aiscout-agent", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Settings that override the config file (flags) or come from MDM (environment).
#[derive(Args, Debug, Clone)]
struct ConfigArgs {
    /// The agent's TOML config file.
    #[arg(long, env = "AISCOUT_CONFIG")]
    config: Option<PathBuf>,
    /// The collector's https:// URL.
    #[arg(long)]
    collector: Option<String>,
    /// A file holding the enroll secret (or set AISCOUT_ENROLL_SECRET).
    #[arg(long)]
    enroll_secret_file: Option<PathBuf>,
    /// The CA that signed the collector's certificate (PEM).
    #[arg(long, conflicts_with = "pin_sha256")]
    ca_file: Option<PathBuf>,
    /// The SHA-256 of the collector's certificate, as `aiscout-collector serve` prints it.
    #[arg(long)]
    pin_sha256: Option<String>,
    /// A file holding the catalog public key (64 hex digits).
    #[arg(long)]
    catalog_key: Option<PathBuf>,
    /// A file holding the collector's organisation-overlay public key (64 hex digits).
    #[arg(long)]
    overlay_key: Option<PathBuf>,
    /// An interface to capture on (repeatable); all that are up by default.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// The spool database.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// The state folder (node key, last good catalog, spool).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The device owner's email (or set AISCOUT_OWNER_EMAIL).
    #[arg(long)]
    owner_email: Option<String>,
}

impl ConfigArgs {
    fn overrides(&self) -> aiscout_agent::config::Overrides {
        aiscout_agent::config::Overrides {
            collector_url: self.collector.clone(),
            spool: self.spool.clone(),
            owner_email: self.owner_email.clone(),
            state_dir: self.state_dir.clone(),
            ..Default::default()
        }
    }

    /// The locations only, without reading any secret (for `status`).
    fn locations(
        &self,
    ) -> Result<aiscout_agent::config::Locations, aiscout_agent::config::ConfigError> {
        let mut o = self.overrides();
        if o.owner_email.is_none() {
            o.owner_email = std::env::var("AISCOUT_OWNER_EMAIL").ok();
        }
        let managed = if cfg!(target_os = "macos") {
            aiscout_agent::config::Overrides::from_managed_settings(std::path::Path::new(
                aiscout_agent::config::MACOS_MANAGED_SETTINGS,
            ))
            .map_err(|p| aiscout_agent::config::ConfigError { file: None, problems: vec![p] })?
        } else {
            aiscout_agent::config::Overrides::default()
        };
        aiscout_agent::config::locations(self.config.as_deref(), o.or(managed))
    }

    fn load(&self) -> Result<aiscout_agent::config::Config, aiscout_agent::config::ConfigError> {
        let overrides = aiscout_agent::config::Overrides {
            collector_url: self.collector.clone(),
            enroll_secret_file: self.enroll_secret_file.clone(),
            ca_file: self.ca_file.clone(),
            pin_sha256: self.pin_sha256.clone(),
            catalog_key_file: self.catalog_key.clone(),
            overlay_key_file: self.overlay_key.clone(),
            interfaces: self.interfaces.clone(),
            spool: self.spool.clone(),
            owner_email: self.owner_email.clone(),
            state_dir: self.state_dir.clone(),
            ..Default::default()
        }
        .from_env();
        // On macOS, MDM-managed settings win over the config file; flags and the
        // environment win over both.
        let managed = if cfg!(target_os = "macos") {
            aiscout_agent::config::Overrides::from_managed_settings(std::path::Path::new(
                aiscout_agent::config::MACOS_MANAGED_SETTINGS,
            ))
            .map_err(|p| aiscout_agent::config::ConfigError { file: None, problems: vec![p] })?
        } else {
            aiscout_agent::config::Overrides::default()
        };
        aiscout_agent::config::load(self.config.as_deref(), overrides.or(managed))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the agent until SIGTERM or SIGINT: network discovery and the inventory watcher
    /// feed the spool, and the spool is uploaded to the collector.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Read these capture files instead of capturing live (testing and offline runs).
        #[arg(long)]
        pcap: Vec<PathBuf>,
        /// Do not capture network traffic.
        #[arg(long, conflicts_with = "pcap")]
        no_capture: bool,
        /// Scan this folder as the filesystem root instead of `/` (testing).
        #[arg(long, conflicts_with = "no_scan")]
        scan_root: Option<PathBuf>,
        /// Do not scan the machine's software.
        #[arg(long)]
        no_scan: bool,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
    },
    /// Runs the agent as the Windows service `aiscout-agent`, answering the service control
    /// manager (start, stop, shutdown); what the installer registers. From a console, use `run`.
    #[cfg(windows)]
    Service {
        #[command(flatten)]
        config: ConfigArgs,
        /// Do not capture network traffic.
        #[arg(long)]
        no_capture: bool,
    },
    /// Shows what this device's agent holds and has sent: enrollment, collector, catalog
    /// version, what waits in the spool (counts per kind and product, never the values), the
    /// last upload, and where the transparency page is. Needs no secret.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validates the configuration and lists every problem with its key.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Scans installed software once and prints what matches the catalog.
    Scan {
        /// Treat this folder as the filesystem root (a mounted disk image or a fixture tree);
        /// processes and listening ports are then not read.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Windows registry exports (.reg) of Uninstall keys to read too.
        #[arg(long = "registry-export")]
        registry_exports: Vec<PathBuf>,
        /// Keep watching and print installs and removals as they happen.
        #[arg(long)]
        watch: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Reads pcap or pcapng files and prints the observations that match the catalog.
    Replay {
        /// A signed catalog artifact to use instead of the built-in catalog.
        #[arg(long, requires = "catalog_key")]
        catalog: Option<PathBuf>,
        /// A file holding the hex Ed25519 public key the artifact must verify against.
        #[arg(long, requires = "catalog")]
        catalog_key: Option<PathBuf>,
        /// Print every extracted name, matched or not (offline diagnostic only).
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Read every file with libpcap, not our own classic pcap reader (for comparisons
        /// and benchmarks).
        #[arg(long, hide = true)]
        libpcap_reader: bool,
        /// Capture files.
        #[arg(required = true)]
        pcap: Vec<PathBuf>,
    },
    /// Captures live, in the foreground, and prints the observations that match the catalog.
    Capture {
        /// An interface to capture on (repeatable); all interfaces that are up by default.
        #[arg(long = "interface")]
        interfaces: Vec<String>,
        /// Stop after this many seconds (run until killed otherwise).
        #[arg(long)]
        duration: Option<u64>,
        /// A signed catalog artifact to use instead of the built-in catalog.
        #[arg(long, requires = "catalog_key")]
        catalog: Option<PathBuf>,
        /// A file holding the hex Ed25519 public key the artifact must verify against.
        #[arg(long, requires = "catalog")]
        catalog_key: Option<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain once, then the exit code of the README's policy: 2 for a usage or
            // configuration error (as clap's own usage errors), 1 for any other failure.
            let code = if is_configuration(&e) { ExitCode::from(2) } else { ExitCode::FAILURE };
            let mut err = io::stderr().lock();
            if writeln!(err, "aiscout-agent: error: {e:#}").is_err() {
                return code;
            }
            code
        }
    }
}

/// A configuration problem (a bad key, a missing required setting) anywhere in the chain.
fn is_configuration(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<aiscout_agent::config::ConfigError>().is_some())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<PipelineError>(), Some(PipelineError::Output(io)) if io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn matcher(catalog: Option<PathBuf>, key: Option<PathBuf>) -> anyhow::Result<Matcher> {
    Ok(match (catalog, key) {
        (Some(artifact), Some(key)) => Matcher::from_artifact(&artifact, &key)?,
        _ => Matcher::builtin()?,
    })
}

fn summary(s: &Summary) -> anyhow::Result<()> {
    writeln!(io::stderr().lock(), "{s}").context("cannot write the summary")
}

fn scan_line(f: &aiscout_agent::inventory::Finding, json: bool, change: Option<&str>) -> String {
    if json {
        let mut v = f.to_json();
        if let (Some(c), Some(obj)) = (change, v.as_object_mut()) {
            obj.insert("change".into(), serde_json::Value::from(c));
        }
        v.to_string()
    } else {
        let prefix = change.map(|c| format!("{c}\t")).unwrap_or_default();
        format!(
            "{prefix}{}\t{}\t{}\t{}\t{}",
            f.kind.as_str(),
            f.product,
            f.value,
            f.user.as_deref().unwrap_or("-"),
            f.path.as_deref().unwrap_or("-")
        )
    }
}

fn scan(
    root: Option<PathBuf>,
    registry_exports: Vec<PathBuf>,
    watch: bool,
    json: bool,
) -> anyhow::Result<()> {
    use aiscout_agent::inventory::{self, ScanOptions, watch::Change, watch::Watch};
    let index = aiscout_signatures::Index::new(aiscout_signatures::Catalog::builtin()?);
    let mut options = match root {
        Some(r) => ScanOptions::root(r),
        None => ScanOptions::live(),
    };
    options.registry_exports = registry_exports;
    let started = std::time::Instant::now();
    let result = inventory::scan(&index, &options);
    let mut out = io::stdout().lock();
    for f in &result.findings {
        writeln!(out, "{}", scan_line(f, json, None))?;
    }
    out.flush()?;
    let mut err = io::stderr().lock();
    for w in &result.warnings {
        writeln!(err, "warning: {}: {}", w.path, w.reason)?;
    }
    writeln!(
        err,
        "findings={} files_read={} folders={} warnings={} elapsed={:.3}s",
        result.findings.len(),
        result.files_read,
        result.dirs_listed,
        result.warning_count,
        started.elapsed().as_secs_f64()
    )?;
    drop(err);
    if !watch {
        return Ok(());
    }
    let mut w = Watch::start(&index, options, inventory::watch::DEFAULT_QUIET)?;
    loop {
        for change in w.next_changes(Duration::from_secs(3600)) {
            let (what, f) = match &change {
                Change::Added(f) => ("added", f),
                Change::Removed(f) => ("removed", f),
            };
            writeln!(out, "{}", scan_line(f, json, Some(what)))?;
            out.flush()?;
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                // Without signal handlers, Ctrl-C still works through the default path.
                let _ignored = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ignored = tokio::signal::ctrl_c().await;
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, pcap, no_capture, scan_root, no_scan, log_json } => {
            aiscout_agent::telemetry::init(log_json);
            let config = config.load()?;
            let frames = if no_capture {
                aiscout_agent::daemon::FrameSource::None
            } else if !pcap.is_empty() {
                aiscout_agent::daemon::FrameSource::Files(pcap)
            } else {
                aiscout_agent::daemon::FrameSource::Live(config.interfaces.clone())
            };
            let scan = match (no_scan, scan_root) {
                (true, _) => None,
                (false, Some(root)) => Some(aiscout_agent::inventory::ScanOptions::root(root)),
                (false, None) => Some(aiscout_agent::inventory::ScanOptions::live()),
            };
            // One thread: the agent's async side (uploads, timers) is light, and every worker
            // thread costs its stack and allocator arena (issue 22: steady RSS).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let options = aiscout_agent::daemon::RunOptions { frames, scan };
            runtime.block_on(aiscout_agent::daemon::run(config, options, shutdown_signal()))?;
            Ok(())
        }
        #[cfg(windows)]
        Command::Service { config, no_capture } => {
            aiscout_agent::telemetry::init(false);
            let config = config.load()?;
            let frames = if no_capture {
                aiscout_agent::daemon::FrameSource::None
            } else {
                aiscout_agent::daemon::FrameSource::Live(config.interfaces.clone())
            };
            let scan = Some(aiscout_agent::inventory::ScanOptions::live());
            let options = aiscout_agent::daemon::RunOptions { frames, scan };
            aiscout_agent::service::windows::run(config, options)?;
            Ok(())
        }
        Command::Status { config, json } => {
            let loc = config.locations()?;
            let status = aiscout_agent::status::gather(&loc);
            let text = if json {
                let mut t = serde_json::to_string_pretty(&aiscout_agent::status::to_json(&status))?;
                t.push('\n');
                t
            } else {
                aiscout_agent::status::to_text(&status)
            };
            io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::CheckConfig { config } => {
            let c = config.load()?;
            writeln!(
                io::stdout().lock(),
                "ok: collector {}, state in {}, spool {} (cap {} bytes), interfaces {}",
                c.collector_url,
                c.state_dir.display(),
                c.spool.display(),
                c.spool_max_bytes,
                if c.interfaces.is_empty() { "all up".to_owned() } else { c.interfaces.join(",") }
            )?;
            Ok(())
        }
        Command::Scan { root, registry_exports, watch, json } => {
            scan(root, registry_exports, watch, json)
        }
        Command::Replay { catalog, catalog_key, all, json, libpcap_reader, pcap } => {
            let matcher = matcher(catalog, catalog_key)?;
            let reader = if libpcap_reader { FileReader::Libpcap } else { FileReader::Auto };
            let opts = Options { all, json, attribute: false, reader, ..Options::default() };
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            let s = pipeline::replay(&pcap, &matcher, &opts, &mut out)?;
            summary(&s)
        }
        Command::Capture { interfaces, duration, catalog, catalog_key, json } => {
            let matcher = Arc::new(matcher(catalog, catalog_key)?);
            let opts = Options {
                all: false,
                json,
                attribute: cfg!(target_os = "linux"),
                ..Options::default()
            };
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let s = pipeline::capture(
                &interfaces,
                duration.map(Duration::from_secs),
                matcher,
                &opts,
                &mut out,
            )?;
            summary(&s)
        }
    }
}
