//! What agents send and receive: enrollment, sighting batches, acknowledgements, heartbeats.
//!
//! Flow (DESIGN.md, "Wire protocol"): the agent enrolls once with the organisation's enroll
//! secret and keeps the node key it gets back; every later call carries that node key as
//! `Authorization: Bearer <node key>`. A batch is deleted from the agent's spool only after a
//! [`BatchAck`] for its `batch_id`; sending the same batch again is always safe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::time::UnixSecs;

/// `POST /api/v1/enroll`: trade the enroll secret for a node key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The organisation-wide enroll secret the agent was configured with.
    pub enroll_secret: Secret,
    /// Who is enrolling.
    pub device: DeviceIdentity,
    /// The node key this agent held before, when it re-enrolls (issue 14 item 3): it proves
    /// that the request comes from the machine that enrolled this host id, which the
    /// collector's default `require_key` policy demands before it replaces that machine's key.
    /// Absent on a first enrollment; omitted from the JSON then, so older collectors and agents
    /// are unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_node_key: Option<Secret>,
    /// The node key the agent asks for: `aisnk_` and 64 lowercase hex digits from its own
    /// system random generator, saved before the request is sent. A collector that accepts it
    /// stores it as this device's key, so when the answer is lost on the way back the agent's
    /// next attempt presents a key the collector already knows, which proves the host id
    /// under `require_key` (issue 19: a lost enroll reply used to lock the machine out). A
    /// collector that does not recognise the field issues a key of its own, which the agent
    /// uses instead. Omitted from the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_node_key: Option<Secret>,
}

/// Whether `key` has the shape of a node key: `aisnk_` and 64 lowercase hex digits (32 random
/// bytes).
pub fn is_node_key_shaped(key: &str) -> bool {
    key.strip_prefix(NODE_KEY_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The prefix of every node key.
pub const NODE_KEY_PREFIX: &str = "aisnk_";

/// The identity of one machine, as its agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// Stable host id: Linux `/etc/machine-id`, macOS IOPlatformUUID, Windows MachineGuid.
    pub host_id: String,
    /// Host name.
    pub hostname: String,
    /// Operating system family (`linux`, `macos`, `windows`).
    pub os: String,
    /// Operating system version.
    pub os_version: String,
    /// Agent version.
    pub agent_version: String,
    /// Owner email from MDM configuration, when configured.
    #[serde(default)]
    pub owner_email: Option<String>,
}

/// The answer to an enrollment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The node key for every later call; the collector keeps only its SHA-256.
    pub node_key: Secret,
}

/// The agent's own version facts, sent with batches and heartbeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent version.
    pub version: String,
    /// Version of the catalog the agent matched with.
    pub catalog_version: u64,
}

/// `POST /api/v1/sightings`: one batch of aggregated sightings from the spool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SightingBatch {
    /// Unique per batch and stable across retries: the collector counts a batch id once.
    pub batch_id: String,
    /// The sending agent.
    pub agent: AgentInfo,
    /// The sightings (at most [`crate::validate::MAX_SIGHTINGS_PER_BATCH`]).
    pub sightings: Vec<Sighting>,
    /// Sightings the agent dropped since its last acknowledged batch (bounded queues full).
    #[serde(default)]
    pub dropped: u64,
    /// Sightings evicted from the spool by its size cap since the last acknowledged batch.
    #[serde(default)]
    pub evicted: u64,
}

/// One aggregated sighting: a matched product seen `count` times in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// Catalog product id (`openai.chatgpt`).
    pub product: String,
    /// Which indicator matched.
    pub kind: SightingKind,
    /// The matched value (a domain, an app id, an extension id, a process name, a model).
    pub value: String,
    /// The OS user, possibly pseudonymised; absent for network sightings without an owner.
    #[serde(default)]
    pub user: Option<String>,
    /// The process name, when known.
    #[serde(default)]
    pub process: Option<String>,
    /// First time seen in this window.
    pub first_seen: UnixSecs,
    /// Last time seen in this window.
    pub last_seen: UnixSecs,
    /// How many times it was seen in this window (at least 1).
    pub count: u64,
    /// Start of the aggregation window.
    pub window: UnixSecs,
    /// True when this installed item (app, extension, cli, mcp_server, model) was present in an earlier report and is gone now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// Risk flags of an `mcp_server` sighting (issue 17), wire names of [`McpFlag`] in its order;
    /// empty (and omitted from the JSON) for every other kind and for a server without risk.
    /// Optional and added without a version change: older collectors ignore it, and a
    /// collector keeps only the names it knows, so a newer agent's flag is never refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// A risk flag of a configured MCP server, read from its configuration (issue 17; after the
/// `risk_flags` column of Fleet's `ai_tools` table). Flags say that something is there, never
/// what: no secret value, hash or length ever travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum McpFlag {
    /// A secret is written in the configuration in plain text (an `env` or header value of a
    /// secret-named key, a token argument), not a reference to one.
    PlaintextSecret,
    /// The server can run shell commands: its command is a shell, or it is a known
    /// command-execution server.
    ShellExec,
    /// The server can write files: a known filesystem server.
    FileWrite,
    /// The server is a package fetched at launch without a pinned version (`npx -y pkg`,
    /// `uvx pkg`, `pipx run pkg`).
    UnpinnedPackage,
    /// The server is remote: a URL (`url`, `serverUrl`, `httpUrl`) or an `sse`/`http` type.
    RemoteUrl,
}

impl McpFlag {
    /// Every flag, in the order of the enum.
    pub const ALL: [McpFlag; 5] = [
        McpFlag::PlaintextSecret,
        McpFlag::ShellExec,
        McpFlag::FileWrite,
        McpFlag::UnpinnedPackage,
        McpFlag::RemoteUrl,
    ];

    /// The wire (and storage) name.
    pub fn as_str(self) -> &'static str {
        match self {
            McpFlag::PlaintextSecret => "plaintext_secret",
            McpFlag::ShellExec => "shell_exec",
            McpFlag::FileWrite => "file_write",
            McpFlag::UnpinnedPackage => "unpinned_package",
            McpFlag::RemoteUrl => "remote_url",
        }
    }

    /// What a reviewer reads for it.
    pub fn label(self) -> &'static str {
        match self {
            McpFlag::PlaintextSecret => "Plaintext secret in config",
            McpFlag::ShellExec => "Can run shell commands",
            McpFlag::FileWrite => "Can write files",
            McpFlag::UnpinnedPackage => "Unpinned package",
            McpFlag::RemoteUrl => "Remote server",
        }
    }

    /// The flag with this wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The known flags among `names`, sorted and without duplicates (unknown names, from a
    /// newer agent, are dropped).
    pub fn known<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<McpFlag> {
        let mut out: Vec<McpFlag> = names.into_iter().filter_map(Self::parse).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The indicator kind of a sighting. Discovery sources are these plus `expense` and `gateway`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SightingKind {
    /// An installed application.
    App,
    /// A command-line tool on a PATH.
    Cli,
    /// A DNS query or answer.
    Dns,
    /// A browser or IDE extension.
    Extension,
    /// A locally listening model runtime.
    LocalRuntime,
    /// An MCP server configured in a client.
    McpServer,
    /// A model name (for example in a local runtime).
    Model,
    /// A running process.
    Process,
    /// The SNI of a QUIC Initial.
    QuicSni,
    /// The SNI of a TLS ClientHello.
    TlsSni,
}

impl SightingKind {
    /// Every kind, in the order of the enum.
    pub const ALL: [SightingKind; 10] = [
        SightingKind::App,
        SightingKind::Cli,
        SightingKind::Dns,
        SightingKind::Extension,
        SightingKind::LocalRuntime,
        SightingKind::McpServer,
        SightingKind::Model,
        SightingKind::Process,
        SightingKind::QuicSni,
        SightingKind::TlsSni,
    ];

    /// The wire (and storage) name.
    pub fn as_str(self) -> &'static str {
        match self {
            SightingKind::App => "app",
            SightingKind::Cli => "cli",
            SightingKind::Dns => "dns",
            SightingKind::Extension => "extension",
            SightingKind::LocalRuntime => "local_runtime",
            SightingKind::McpServer => "mcp_server",
            SightingKind::Model => "model",
            SightingKind::Process => "process",
            SightingKind::QuicSni => "quic_sni",
            SightingKind::TlsSni => "tls_sni",
        }
    }

    /// The kind with this wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// True for the kinds that name something installed on the machine (`app`, `cli`,
    /// `extension`, `mcp_server`, `model`): the only kinds an agent reports as removed
    /// ([`Sighting::removed`]). Network sightings, processes and listening runtimes come and go
    /// and are never "removed".
    pub fn is_installed(self) -> bool {
        matches!(
            self,
            SightingKind::App
                | SightingKind::Cli
                | SightingKind::Extension
                | SightingKind::McpServer
                | SightingKind::Model
        )
    }
}

impl fmt::Display for SightingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SightingKind {
    type Err = UnknownSightingKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| UnknownSightingKind(name.to_owned()))
    }
}

/// A sighting kind name this build does not know: from a newer agent, or a stored value
/// edited by hand. A wire batch carrying one is refused as a whole (with the JSON path of the
/// `kind` field), as any value outside the contract is; a stored one fails to read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown sighting kind {0:?}")]
pub struct UnknownSightingKind(pub String);

/// The acknowledgement of a batch, sent only after the batch is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// The acknowledged batch.
    pub batch_id: String,
    /// Sightings in the batch.
    pub accepted: u64,
    /// True when this batch id had been committed before and was not counted again.
    pub duplicate: bool,
}

/// `POST /api/v1/heartbeat`: the agent's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sending agent.
    pub agent: AgentInfo,
    /// Capture status per interface.
    #[serde(default)]
    pub interfaces: Vec<InterfaceStatus>,
    /// Packets seen since the agent started.
    pub packets: u64,
    /// Packets or observations dropped since the agent started.
    pub drops: u64,
    /// Sightings waiting in the spool.
    pub spool_depth: u64,
    /// Sightings evicted from the spool since the agent started.
    pub evictions: u64,
    /// When the inventory scan last finished, if it has.
    #[serde(default)]
    pub last_scan: Option<UnixSecs>,
}

/// Capture on one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// Interface name.
    pub name: String,
    /// Whether capture is running.
    pub state: CaptureState,
    /// Packets seen on this interface.
    pub packets: u64,
    /// Packets dropped on this interface (kernel plus agent).
    pub drops: u64,
    /// Why capture is not running, when it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// The state of capture on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CaptureState {
    /// Capture is off by configuration.
    Disabled,
    /// Capture failed; see `error`.
    Failed,
    /// Capturing.
    Running,
}

impl CaptureState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureState::Disabled => "disabled",
            CaptureState::Failed => "failed",
            CaptureState::Running => "running",
        }
    }
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The collector's clock, so agents can report skew.
    pub server_time: UnixSecs,
    /// Version of the catalog the collector serves, if it serves one; the agent fetches
    /// `GET /api/v1/catalog` when this is newer than its own.
    #[serde(default)]
    pub catalog_version: Option<u64>,
    /// Version of the organisation overlay the collector serves, if any; an agent with an
    /// overlay key fetches `GET /api/v1/overlay` when this is newer than its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_version: Option<u64>,
}
