//! The `aiscout-collector` binary: `serve`, `sync`, `check-config`, `token`, `mdm-package`, `import`,
//! `report`, `policy` and `backup`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aiscout_collector::api::{self, AppState};
use aiscout_collector::config::{self, Config, Database, Overrides, Tls};
use aiscout_collector::model::{Role, Token};
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;
use aiscout_collector::store::{self, Store};
use aiscout_collector::{credentials, retention, review, telemetry};
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "aiscout-collector", version, about = "The aiscout collector")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "AISCOUT_CONFIG")]
    config: Option<PathBuf>,
    /// Database: sqlite:PATH (default sqlite:<data-dir>/aiscout.db) or postgres://...
    #[arg(long, global = true, env = "AISCOUT_DB", hide_env_values = true)]
    db: Option<String>,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API for agents and the console for people (https://HOST:PORT/login).
    Serve,
    /// Validate the configuration and list every problem.
    CheckConfig,
    /// Manage API tokens for people.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write the agent payloads for an MDM (Jamf, Kandji, Intune) or a Linux configuration
    /// tool, filled in with this collector's URL, enroll secret, certificate pin and catalog key.
    MdmPackage(aiscout_collector::mdm::Args),
    /// The organisation overlay: your own AI tools and sanctioned gateway hosts, signed with
    /// the collector's overlay.key for agents that pin its public key (overlay_key).
    #[command(subcommand)]
    Overlay(aiscout_collector::cli::OverlayCommand),
    /// Import expense exports, gateway spend or the people directory.
    #[command(subcommand)]
    Import(aiscout_collector::cli::ImportCommand),
    /// Print the AI inventory or procurement's reconciliation.
    #[command(subcommand)]
    Report(aiscout_collector::cli::ReportCommand),
    /// Export the review decisions as blocklists and policies for DNS filters, browsers, IDEs,
    /// EDR, web gateways and osquery (also served at GET /api/v1/policy/FORMAT).
    #[command(subcommand)]
    Policy(aiscout_collector::cli::PolicyCommand),
    /// Run the pull connectors ([[connector]] in the config) in the foreground, printing a
    /// line per run: each once with --once, else on their intervals until stopped.
    Sync {
        /// Run each once and exit (1 when any failed).
        #[arg(long)]
        once: bool,
        /// Only these connectors, by name [default: all].
        names: Vec<String>,
    },
    /// A person's data: everything stored about one email address, as JSON (also served to
    /// admins at GET /api/v1/people/EMAIL/export).
    #[command(subcommand)]
    Person(PersonCommand),
    /// Re-enrollments of known host ids (`[enroll] reenroll`): list and approve.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Retention (`[retention]`): delete what is older than its kind's period (`serve` does
    /// this daily).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Copy the SQLite database into a new file PATH while `serve` runs (SQLite's online
    /// backup API); for PostgreSQL use pg_dump (README, "Backup and restore").
    Backup {
        /// The backup file to write (never overwritten).
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete, in chunks, what is older than the configured periods; print the counts per kind.
    Run {
        /// Only count what would be deleted, per kind; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List re-enrollments waiting for an admin (`hold`) and approvals not yet used.
    Reenrollments,
    /// Let the next enrollment of HOST_ID in without its node key (a reinstalled machine that
    /// lost its state); used up by that enrollment, and audited.
    ApproveReenroll {
        /// The host id (machine-id, IOPlatformUUID or MachineGuid) as the devices list shows.
        host_id: String,
    },
}

#[derive(Subcommand)]
enum PersonCommand {
    /// Print everything stored about EMAIL as JSON: the directory entry, devices they own and
    /// what was seen on them, expense lines they paid, their usage and spend totals, and audit
    /// entries with them as actor or subject.
    Export {
        /// The person's email address.
        email: String,
    },
    /// Erase EMAIL (the right to erasure): the person becomes a tombstone
    /// (`erased-<hex>@erased.invalid`) in the directory, devices, sightings, expense and
    /// gateway rows, reviews and the audit log, so counts and totals stay as they were but the
    /// person cannot be found. One audit entry records the reason, never the email. Prints what
    /// changed as JSON; a second run finds nothing.
    Erase {
        /// The person's email address.
        email: String,
        /// Why (a request's reference): kept in the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once.
    Create {
        /// admin, security, procurement, viewer (the console, read-only) or policy (only
        /// GET /api/v1/policy/{format}, for DNS filters, MDM and EDR; never the console).
        #[arg(long)]
        role: Role,
        /// A unique name, shown in the audit log.
        #[arg(long)]
        name: String,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let secret_env = std::env::var("AISCOUT_ENROLL_SECRET").ok();
    let config = match config::load(
        cli.config.as_deref(),
        cli.db.as_deref(),
        secret_env.as_deref(),
        &cli.overrides,
    ) {
        Ok(c) => c,
        Err(e) => {
            report(&anyhow::Error::new(e));
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::CheckConfig) {
        // The organisation overlay's signing key, when the collector has one (issue 17).
        if let Err(e) = api::overlay::public_key(&config.data_dir) {
            report(&anyhow::anyhow!("overlay_key: {e}"));
            return ExitCode::from(2);
        }
        return say("configuration ok");
    }
    if let Command::MdmPackage(args) = &cli.command {
        let policies = if args.no_policies {
            None
        } else {
            match mdm_policies(&config) {
                Ok((policies, note)) => {
                    say(&format!("note: {note}"));
                    policies
                }
                Err(e) => {
                    report(&e);
                    return ExitCode::FAILURE;
                }
            }
        };
        return match aiscout_collector::mdm::run_with(args, &config, policies) {
            Ok(lines) => {
                for line in &lines {
                    say(line);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                let code = if e.is_usage() { 2 } else { 1 };
                report(&anyhow::Error::new(e));
                ExitCode::from(code)
            }
        };
    }
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report(&anyhow::Error::new(e));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            // A bad argument found while running (such as `--out` naming a directory for a
            // format that writes one file) exits 2, as clap's own usage errors do.
            let usage = e
                .downcast_ref::<aiscout_collector::cli::CommandError>()
                .is_some_and(aiscout_collector::cli::CommandError::is_usage);
            if usage { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// The browser and IDE policies of the current review decisions for `mdm-package`, with a
/// line saying what was included. Without a database (no SQLite file yet) there are none:
/// mdm-package never creates a database.
fn mdm_policies(
    config: &Config,
) -> anyhow::Result<(Option<aiscout_collector::policy::BrowserPolicies>, String)> {
    use aiscout_collector::policy;
    if let Database::Sqlite(path) = &config.db
        && !path.is_file()
    {
        return Ok((
            None,
            format!(
                "no collector database at {}: the package has no browser or IDE blocklists (pass \
                 --db, or run it where the collector runs)",
                path.display()
            ),
        ));
    }
    let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reviews = runtime.block_on(async {
        match &config.db {
            Database::Sqlite(path) => SqliteStore::open(path).await?.reviews().await,
            Database::Postgres(url) => PgStore::open(url.expose()).await?.reviews().await,
        }
    })?;
    let plan = policy::plan(&catalog, &reviews, &policy::Selection::default(), &config.policy);
    let note = format!(
        "the browser and IDE policies of the current decisions are included: {} blocked \
         product(s), {} held back indicator(s) (see `policy export`)",
        plan.blocked.len(),
        plan.held_back.len()
    );
    Ok((Some(policy::browser_policies(&plan)), note))
}

#[allow(clippy::print_stderr)] // The binary's one place that reports a fatal error.
fn report(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

/// Writes a subcommand's output; a closed stdout (`| head`) is success, not an error.
#[allow(clippy::print_stderr)] // Row errors and per-file failures go to stderr.
fn emit(out: &aiscout_collector::cli::Output) -> anyhow::Result<()> {
    use std::io::Write;
    for line in &out.stderr {
        eprintln!("{line}");
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.stdout.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[allow(clippy::print_stdout)] // The binary's output channel for scripts and tests.
fn say(line: &str) -> ExitCode {
    println!("{line}");
    ExitCode::SUCCESS
}

/// `backup --to PATH`: SQLite's online backup of the configured database; never opens the
/// store (no migration, no writer), so it runs beside `serve` and touches nothing.
async fn backup(config: &Config, to: &std::path::Path) -> anyhow::Result<()> {
    let Database::Sqlite(path) = &config.db else {
        return Err(aiscout_collector::cli::CommandError::Usage(format!(
            "backup copies a SQLite database; the database from {} is PostgreSQL: back it up \
             with pg_dump --format=custom and restore with pg_restore (README, \"Backup and \
             restore\")",
            config.db_origin
        ))
        .into());
    };
    let (from, dest) = (path.clone(), to.to_owned());
    let report = tokio::task::spawn_blocking(move || store::sqlite::backup(&from, &dest))
        .await?
        .with_context(|| format!("backing up sqlite:{} to {}", path.display(), to.display()))?;
    say(&format!(
        "backed up sqlite:{} to {}: {} bytes, schema version {}",
        path.display(),
        to.display(),
        report.bytes,
        report.schema_version
    ));
    Ok(())
}

/// Commands that only read the store. On SQLite they never create the database: a typo in a
/// path must not read as an empty inventory ("no AI tools").
fn only_reads(command: &Command) -> bool {
    matches!(
        command,
        Command::Report(_)
            | Command::Policy(_)
            | Command::Person(PersonCommand::Export { .. })
            | Command::Token(TokenCommand::List)
            | Command::Device(DeviceCommand::Reenrollments)
            | Command::Overlay(
                aiscout_collector::cli::OverlayCommand::Show
                    | aiscout_collector::cli::OverlayCommand::Export
            )
    )
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    if let Command::Backup { to } = &command {
        return backup(&config, to).await;
    }
    match config.db.clone() {
        Database::Sqlite(path) => {
            if only_reads(&command) && !path.is_file() {
                return Err(aiscout_collector::cli::CommandError::Usage(format!(
                    "no collector database at {} (from {}): this command only reads and never \
                     creates one; check the path",
                    path.display(),
                    config.db_origin
                ))
                .into());
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // The data folder is kept 0700; another folder named by --db is created 0700
                // when missing but, being the operator's, not changed when it exists.
                let made = if dir == config.data_dir {
                    store::files::private_dir(dir)
                } else {
                    use std::os::unix::fs::DirBuilderExt as _;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(store::files::DIR_MODE)
                        .create(dir)
                };
                made.with_context(|| format!("creating {}", dir.display()))?;
            }
            let store = SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening sqlite:{}", path.display()))?;
            dispatch(command, config, store).await
        }
        Database::Postgres(url) => {
            let store = PgStore::open(url.expose()).await.with_context(|| {
                format!("opening the PostgreSQL database from {}", config.db_origin)
            })?;
            dispatch(command, config, store).await
        }
    }
}

/// How a privacy mode keeps people, for a sentence.
fn kept_words(mode: aiscout_collector::identity::PrivacyMode) -> &'static str {
    match mode {
        aiscout_collector::identity::PrivacyMode::Plain => "in plain text",
        aiscout_collector::identity::PrivacyMode::Pseudonymous => "as keyed pseudonyms",
    }
}

async fn dispatch<S: Store + Clone>(
    command: Command,
    config: Config,
    store: S,
) -> anyhow::Result<()> {
    if !matches!(command, Command::CheckConfig | Command::MdmPackage(_) | Command::Backup { .. }) {
        // Every command that writes or reads people goes through the identity key (issue 21).
        if config.privacy_key_file.parent() == Some(config.data_dir.as_path()) {
            store::files::private_dir(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
        }
        let ids = aiscout_collector::identity::Identities::load_or_create(
            &config.privacy_key_file,
            config.privacy,
        )?;
        store.protect_identities(Arc::new(ids));
    }
    // One database keeps people one way: a switch of `privacy` would mix plain and
    // pseudonymised identities (an existing database is not converted). Checked by the commands
    // that write people or look them up by identity (a person export or erasure in the other
    // mode would find nothing); tokens, reports, policy, overlay and device commands neither
    // write people nor look them up, so an operator's token command without the config works.
    let writes_people = matches!(
        command,
        Command::Serve | Command::Sync { .. } | Command::Import(_) | Command::Person(_)
    );
    if writes_people {
        let kept = store
            .privacy_mode(config.privacy, store::now())
            .await
            .context("reading the privacy mode the database keeps people in")?;
        if kept != config.privacy {
            anyhow::bail!(
                "this database keeps people {} (privacy = \"{}\"), but the collector was started \
                 with privacy = \"{}\" (the `privacy` setting, --privacy or AISCOUT_PRIVACY): new \
                 people would be stored {} beside them. Start it with privacy = \"{}\", or use a new \
                 database for the other mode (an existing database is not converted)",
                kept_words(kept),
                kept.as_str(),
                config.privacy.as_str(),
                kept_words(config.privacy),
                kept.as_str()
            );
        }
    }
    match command {
        Command::Serve => serve(config, store).await,
        Command::Sync { once, names } => sync(config, store, once, &names).await,
        Command::CheckConfig | Command::MdmPackage(_) | Command::Backup { .. } => Ok(()),
        Command::Import(aiscout_collector::cli::ImportCommand::Watch { dir, once }) => {
            use aiscout_collector::ingest::drop;
            let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
            let index = Arc::new(aiscout_signatures::Index::new(catalog));
            let show = show_drop;
            let mappings = &config.import.mappings;
            if once {
                drop::prepare(&dir)?;
                for (path, outcome) in drop::process_waiting(&store, &index, mappings, &dir).await?
                {
                    show(&path, &outcome);
                }
                return Ok(());
            }
            let ready = || {
                say(&format!("watching {}", dir.display()));
            };
            let shutdown = terminated();
            drop::watch(&store, index, mappings, &dir, show, ready, shutdown).await?;
            Ok(())
        }
        Command::Import(c) => {
            let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
            let mappings = &config.import.mappings;
            match aiscout_collector::cli::import(&store, catalog, c, mappings, true).await {
                Ok(out) => emit(&out),
                Err((out, e)) => {
                    emit(&out)?;
                    Err(e.into())
                }
            }
        }
        Command::Report(c) => {
            let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
            emit(&aiscout_collector::cli::report(&store, &catalog, &config.risk, c).await?)
        }
        Command::Overlay(c) => {
            let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
            let key = api::overlay::public_key(&config.data_dir)
                .map_err(|e| anyhow::anyhow!("overlay key: {e}"))?;
            emit(&aiscout_collector::cli::overlay(&store, &catalog, key.as_deref(), c).await?)
        }
        Command::Policy(c) => {
            let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
            emit(&aiscout_collector::cli::policy(&store, &catalog, &config.policy, c).await?)
        }
        Command::Device(DeviceCommand::Reenrollments) => {
            for r in store.reenroll_requests().await? {
                let requested = r.requested_at.map_or("no request yet".to_owned(), |at| {
                    format!("requested {at} from {}", r.source)
                });
                let approved = match (&r.approved_by, r.approved_at) {
                    (Some(by), Some(at)) => format!("approved by {by} at {at}"),
                    _ => "waiting for approval".to_owned(),
                };
                say(&format!("{}\t{}\t{}\t{requested}\t{approved}", r.host_id, r.hostname, r.os));
            }
            Ok(())
        }
        Command::Device(DeviceCommand::ApproveReenroll { host_id }) => {
            let host_id = host_id.trim().to_owned();
            if host_id.is_empty() || host_id.len() > aiscout_wire::validate::MAX_ID_LEN {
                anyhow::bail!(
                    "host id: expected 1 to {} characters",
                    aiscout_wire::validate::MAX_ID_LEN
                );
            }
            let known = store.devices().await?.iter().any(|d| d.device.host_id == host_id);
            store
                .approve_reenroll(host_id.clone(), review::CLI_ACTOR.to_owned(), store::now())
                .await?;
            if known {
                say(&format!("approved the next enrollment of {host_id}"));
            } else {
                say(&format!(
                    "approved the next enrollment of {host_id} (note: no device has this host id \
                     yet, and a first enrollment needs no approval)"
                ));
            }
            Ok(())
        }
        Command::Person(PersonCommand::Export { email }) => {
            let email = aiscout_collector::person::email(&email)
                .map_err(aiscout_collector::cli::CommandError::Usage)?;
            let record = aiscout_collector::person::export(&store, &email).await?;
            let json = serde_json::to_string_pretty(&aiscout_collector::person::to_json(&record))?;
            emit(&aiscout_collector::cli::Output { stdout: json + "\n", stderr: Vec::new() })
        }
        Command::Person(PersonCommand::Erase { email, reason }) => {
            let email = aiscout_collector::person::email(&email)
                .map_err(aiscout_collector::cli::CommandError::Usage)?;
            let reason = aiscout_collector::person::reason(&reason, &email)
                .map_err(aiscout_collector::cli::CommandError::Usage)?;
            let erasure =
                aiscout_collector::person::erase(&store, &email, review::CLI_ACTOR, &reason)
                    .await?;
            let json =
                serde_json::to_string_pretty(&aiscout_collector::person::erasure_json(&erasure))?;
            let note = if erasure.tombstone.is_some() {
                "erased; the audit log records the reason and the tombstone, not the email"
            } else {
                "nothing is stored under this email (already erased, or never known)"
            };
            emit(&aiscout_collector::cli::Output {
                stdout: json + "\n",
                stderr: vec![note.to_owned()],
            })
        }
        Command::Retention(RetentionCommand::Run { dry_run }) => {
            let outcome = retention::run(&store, &config.retention, dry_run, store::now()).await?;
            let mut stdout = retention::render(&config.retention, &outcome);
            if !config.retention.any() {
                stdout.push_str("no retention period is configured ([retention] in the config)\n");
            }
            emit(&aiscout_collector::cli::Output { stdout, stderr: Vec::new() })
        }
        Command::Token(TokenCommand::Create { role, name }) => {
            let secret = credentials::generate(credentials::API_TOKEN_PREFIX)?;
            let token = Token {
                name,
                role,
                created_at: aiscout_wire::UnixSecs(store::now()),
                revoked_at: None,
            };
            let audit = review::token_created(&token, review::CLI_ACTOR);
            store.create_token(token, credentials::hash(&secret), audit).await?;
            say(&secret);
            Ok(())
        }
        Command::Token(TokenCommand::List) => {
            for t in store.tokens().await? {
                let state = t.revoked_at.map_or("active".to_owned(), |at| format!("revoked {at}"));
                say(&format!("{}\t{}\tcreated {}\t{state}", t.name, t.role, t.created_at));
            }
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { name }) => {
            let now = store::now();
            match store
                .revoke_token(name.clone(), now, review::token_revoked(review::CLI_ACTOR, now))
                .await?
            {
                Some(_) => {
                    say(&format!("revoked {name}"));
                    Ok(())
                }
                None => anyhow::bail!("no active token named {name:?}"),
            }
        }
    }
}

/// Prints one connector run's outcome.
fn show_run(
    settings: &aiscout_collector::connectors::Settings,
    result: &Result<
        aiscout_collector::connectors::Progress,
        aiscout_collector::connectors::ConnectorError,
    >,
) {
    match result {
        Ok(progress) => say(&format!("{}: {progress}", settings.name)),
        Err(e) => say(&format!("{}: failed: {e}", settings.name)),
    };
}

/// `sync`: the chosen connectors once (`--once`), or on their intervals until stopped.
async fn sync<S: Store + Clone>(
    config: Config,
    store: S,
    once: bool,
    names: &[String],
) -> anyhow::Result<()> {
    use aiscout_collector::connectors;
    let configured: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
    if configured.is_empty() {
        anyhow::bail!("no [[connector]] in the configuration");
    }
    for name in names {
        if !configured.contains(&name.as_str()) {
            anyhow::bail!("no connector named {name:?} (configured: {})", configured.join(", "));
        }
    }
    let chosen: Vec<connectors::Settings> = config
        .connectors
        .into_iter()
        .filter(|c| names.is_empty() || names.contains(&c.name))
        .collect();
    let catalog = aiscout_collector::cli::catalog(config.catalog.as_deref())?;
    let index = Arc::new(aiscout_signatures::Index::new(catalog));
    let stats = Arc::new(connectors::Stats::default());
    if once {
        let mut failed = 0;
        for settings in &chosen {
            let result = connectors::run(&store, &index, settings, &stats, store::now()).await;
            show_run(settings, &result);
            failed += usize::from(result.is_err());
        }
        if failed > 0 {
            anyhow::bail!("{failed} of {} connector(s) failed", chosen.len());
        }
        return Ok(());
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = spawn_connectors(&store, &index, chosen, &stats, &stopped);
    terminated().await;
    stop_connectors(stop, tasks).await
}

/// Runs each connector on its interval as a task until `stopped` turns true.
fn spawn_connectors<S: Store + Clone>(
    store: &S,
    index: &Arc<aiscout_signatures::Index>,
    connectors: Vec<aiscout_collector::connectors::Settings>,
    stats: &Arc<aiscout_collector::connectors::Stats>,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    connectors
        .into_iter()
        .map(|settings| {
            let (store, index, stats) = (store.clone(), Arc::clone(index), Arc::clone(stats));
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let stop = async move {
                    // Told to stop, or the sender is gone: either way, stop.
                    while !*stopped.borrow_and_update() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                };
                aiscout_collector::connectors::schedule(
                    &store, &index, &settings, &stats, show_run, stop,
                )
                .await;
            })
        })
        .collect()
}

/// Stops the connector tasks (a run in progress is dropped between requests; its committed
/// pages stay and its cursor does not move) and waits for them.
async fn stop_connectors(
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    if stop.send(true).is_err() {
        tracing::debug!("The connectors had already stopped.");
    }
    for task in tasks {
        task.await.context("connector task")?;
    }
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        } => {},
    }
}

/// How often `serve` refreshes the console's derived data when it changed.
const CACHE_WARM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often `serve` folds pending usage into the rollups.
const FOLD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Prints what the drop folder did with one file.
fn show_drop(path: &std::path::Path, outcome: &aiscout_collector::ingest::drop::Outcome) {
    use aiscout_collector::ingest::drop::Outcome;
    let name = path.display();
    match outcome {
        Outcome::Processed(summary) => say(&format!("processed {name}: {summary}")),
        Outcome::Rejected(reason) => say(&format!("rejected {name}: {reason}")),
        Outcome::Vanished => say(&format!("skipped {name}: taken by another instance")),
    };
}

/// Runs the drop folder watch as a task beside the API until `stop` fires. A watch that
/// fails (the folder vanished, the OS refused the watch) is logged; the API keeps serving.
fn spawn_drop_watch<S: Store + Clone>(
    store: S,
    catalog: aiscout_signatures::Catalog,
    mappings: aiscout_collector::ingest::mapping::Mappings,
    dir: PathBuf,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let index = Arc::new(aiscout_signatures::Index::new(catalog));
        let ready = || {
            say(&format!("watching {}", dir.display()));
        };
        let stopped = async {
            // Told to stop, or the sender is gone with the server: either way, stop.
            match stop.await {
                Ok(()) | Err(_) => {}
            }
        };
        let watched = aiscout_collector::ingest::drop::watch(
            &store, index, &mappings, &dir, show_drop, ready, stopped,
        )
        .await;
        if let Err(e) = watched {
            tracing::error!(error = %e, "The drop folder watch stopped.");
        }
    })
}

/// Raises the soft open-file limit towards `needed`, as far as the hard limit allows (a
/// service manager's default soft limit, often 1,024, is far below what `max_connections`
/// needs; the hard limit is the administrator's real bound). Returns the soft limit now in
/// force and the hard limit; `None` where the limits cannot be read.
#[cfg(unix)]
fn raise_open_file_limit(needed: u64) -> Option<(u64, u64)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    let (soft, hard) = (now.current.unwrap_or(u64::MAX), now.maximum.unwrap_or(u64::MAX));
    if soft >= needed || soft >= hard {
        return Some((soft, hard));
    }
    let wanted = hard.min(needed.max(soft));
    match setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: now.maximum }) {
        Ok(()) => {
            tracing::info!(from = soft, to = wanted, "Raised the soft open-file limit.");
            Some((wanted, hard))
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot raise the soft open-file limit.");
            Some((soft, hard))
        }
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit(_needed: u64) -> Option<(u64, u64)> {
    None
}

async fn serve<S: Store + Clone>(config: Config, store: S) -> anyhow::Result<()> {
    // Every connection, admitted or being refused, is a descriptor; past the limit, accept
    // fails and clients wait in the backlog instead of getting a 503.
    let needed = u64::from(config.server.max_connections) + 512;
    if let Some((limit, hard)) = raise_open_file_limit(needed).filter(|(l, _)| *l < needed) {
        tracing::warn!(
            limit,
            hard,
            needed,
            "The open-file limit is below server.max_connections plus headroom, and the hard \
             limit allows no more; raise it (LimitNOFILE in the systemd unit) or lower \
             max_connections."
        );
    }
    // Certificates, the SQLite files and uploads live here: 0700, tightened if found open.
    store::files::private_dir(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let (catalog, artifact) = match &config.catalog {
        None => (aiscout_signatures::Catalog::builtin().context("builtin catalog")?, None),
        Some(path) => {
            let bytes =
                config::read_capped(path).with_context(|| format!("reading {}", path.display()))?;
            let parts = aiscout_signatures::artifact::split(&bytes)
                .with_context(|| format!("{} is not a catalog artifact", path.display()))?;
            let version = parts.header.version;
            let catalog = aiscout_signatures::artifact::decode_payload(version, parts.payload)
                .with_context(|| format!("{}: unreadable payload", path.display()))?;
            (catalog, Some((axum::body::Bytes::from(bytes), version)))
        }
    };
    // The organisation overlay is signed with the collector's own key (issue 17).
    let (overlay_key, overlay_public) = api::overlay::load_or_generate_key(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("overlay key: {e}"))?;
    say(&format!("overlay key {overlay_public}"));
    let tls = match &config.tls {
        Tls::Off => None,
        Tls::Files { cert, key } => {
            let (chain, key) = api::tls::load(cert, key)?;
            Some(api::tls::server_config(chain, key)?)
        }
        Tls::Generated => {
            let (chain, key, generated) = api::tls::self_signed(&config.data_dir)?;
            let fp = chain.first().map(api::tls::fingerprint).unwrap_or_default();
            let cert_path = config.data_dir.join("cert.pem");
            if generated {
                tracing::info!(path = %cert_path.display(), "Generated a self-signed certificate.");
            }
            say(&format!("certificate {} sha256 {fp}", cert_path.display()));
            Some(api::tls::server_config(chain, key)?)
        }
    };
    if let Some(dir) = &config.import.drop_dir {
        // A drop folder that cannot be created is a configuration error: fail at start.
        aiscout_collector::ingest::drop::prepare(dir)?;
    }
    let drop_watch = config.import.drop_dir.clone().map(|dir| {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = spawn_drop_watch(
            store.clone(),
            catalog.clone(),
            config.import.mappings.clone(),
            dir,
            stopped,
        );
        (stop, task)
    });
    let state = Arc::new(AppState {
        store,
        catalog,
        artifact,
        enroll_secret: config.enroll_secret.clone(),
        metrics: telemetry::Metrics::default(),
        limiter: api::ratelimit::RateLimiter::new(
            config.rate_limit_per_minute,
            config.rate_limit_burst,
        ),
        mappings: config.import.mappings.clone(),
        console: config.console.settings.clone(),
        sso: config.console.oidc.clone().map(aiscout_collector::console::Sso::new),
        policy: config.policy.clone(),
        cache: Default::default(),
        metrics_token: config.metrics_token.clone(),
        uploads: api::upload::Uploads::new(
            config.data_dir.join("uploads"),
            config.server.max_imports,
        ),
        alerts: Arc::new(config.alerts.clone()),
        enrollment: config.enroll.enrollment(),
        overlay: Some(api::overlay::OverlaySigner::new(overlay_key)),
        overlay_cache: Default::default(),
        risk: config.risk,
    });
    let counters = Arc::clone(&state.metrics.connections);
    let (connectors_stop, connectors_stopped) = tokio::sync::watch::channel(false);
    let connector_tasks = spawn_connectors(
        &state.store,
        &Arc::new(aiscout_signatures::Index::new(state.catalog.clone())),
        config.connectors.clone(),
        &state.metrics.connectors,
        &connectors_stopped,
    );
    // Keep the rollups close behind ingest so that reads rarely have much to fold first.
    let folder = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FOLD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match state.store.fold_when_idle().await {
                    Ok(0) => {}
                    Ok(rows) => tracing::debug!(rows, "Folded usage into the rollups."),
                    Err(e) => tracing::warn!(error = %e, "Folding usage into the rollups failed."),
                }
            }
        })
    };
    // Rebuild what the console's pages keep (join::cache) soon after an import, so that the
    // next page does not pay for it; a no-op while nothing changed (one small query).
    let warmer = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CACHE_WARM_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = state.cache.warm(&state.store, store::now()).await {
                    tracing::warn!(error = %e, "Refreshing the console's derived data failed.");
                }
            }
        })
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = api::bound(&listener)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    say(&format!("listening on {scheme}://{addr}"));
    // Alert deliveries: one task per channel, reading the outbox the store writes.
    let console_url =
        config.alerts.console_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let deliveries = aiscout_collector::alerts::deliver::Deliverer::new(
        state.store.clone(),
        state.catalog.clone(),
        console_url,
    )?
    .with_policy(config.policy.clone())
    .start(&config.alerts)
    .await
    .context("starting alert deliveries")?;
    // The periodic alert rules, when anything would receive their events.
    let rules = (!config.alerts.channels.is_empty()).then(|| {
        let state = Arc::clone(&state);
        let settings = config.alerts.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.rules_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = store::now();
                match aiscout_collector::alerts::rules::run(
                    &state.store,
                    &state.cache,
                    &state.catalog,
                    &settings,
                    now,
                )
                .await
                {
                    Ok(0) => {}
                    Ok(new) => tracing::info!(new, "The alert rules raised events."),
                    Err(e) => tracing::warn!(error = %e, "Evaluating the alert rules failed."),
                }
            }
        })
    });
    // Retention, once at start and then daily; every collector on a shared database may run
    // it, since deleting what is already gone deletes nothing.
    let pruner = config.retention.any().then(|| {
        let state = Arc::clone(&state);
        let settings = config.retention;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(retention::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match retention::run(&state.store, &settings, false, store::now()).await {
                    Ok(o) if o.total() == 0 => {}
                    Ok(o) => tracing::info!(rows = o.total(), "Retention deleted old data."),
                    Err(e) => tracing::warn!(error = %e, "Applying retention failed."),
                }
            }
        })
    });
    tracing::info!(%addr, backend = state.store.backend(), "Collector started.");
    let shutdown = async {
        terminated().await;
        tracing::info!("Shutting down.");
    };
    api::serve(listener, api::router(state), tls, config.server.clone(), counters, shutdown).await;
    folder.abort();
    warmer.abort();
    for task in deliveries.into_iter().chain(rules).chain(pruner) {
        task.abort();
    }
    stop_connectors(connectors_stop, connector_tasks).await?;
    if let Some((stop, task)) = drop_watch {
        // The watch finishes the file it is importing, then stops.
        if stop.send(()).is_err() {
            tracing::debug!("The drop folder watch had already stopped.");
        }
        task.await.context("drop folder task")?;
    }
    Ok(())
}
