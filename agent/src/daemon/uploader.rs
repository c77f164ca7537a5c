//! The async side: enrollment, uploads of the spool, heartbeats and catalog updates.

#[allow(clippy::wildcard_imports)]
// Reason: one module split into files; the parent holds the shared imports.
use super::*;

/// Whether a heartbeat also checked the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CatalogCheck {
    /// The acknowledgement named the collector's catalog version (fetched if newer).
    Done,
    /// It did not (an older collector, or none served); the catalog timer stays armed.
    NotDone,
}

pub(super) struct Uploader {
    pub(super) shared: Arc<Shared>,
    pub(super) spool: Arc<Mutex<Spool>>,
    pub(super) client: Client,
    pub(super) node_key: Option<Secret>,
    /// The node key in use could not be saved (a full disk): saving is tried again at every
    /// use, so a restart after the disk has room does not have to enroll again.
    pub(super) key_unsaved: bool,
}

impl Uploader {
    pub(super) fn key_path(&self) -> PathBuf {
        self.shared.config.state_dir.join("node_key")
    }

    /// The key the collector last refused, kept to prove who we are when enrolling again.
    pub(super) fn previous_key_path(&self) -> PathBuf {
        self.shared.config.state_dir.join("node_key.previous")
    }

    /// The key proposed to the collector by an enrollment whose answer has not arrived yet.
    pub(super) fn proposed_key_path(&self) -> PathBuf {
        self.shared.config.state_dir.join("node_key.proposed")
    }

    /// The node key to propose: the one an earlier attempt proposed (its answer may have been
    /// lost after the collector stored it: repeating it proves this host id, issue 19), else
    /// a fresh one, saved before it is sent.
    fn proposed_key(&self) -> Result<Secret, UploadError> {
        if let Some(key) = read_key(&self.proposed_key_path())
            && aiscout_wire::is_node_key_shaped(key.expose())
        {
            return Ok(key);
        }
        let key = upload::new_node_key()?;
        if let Err(error) = write_secret(&self.proposed_key_path(), key.expose()) {
            // Still worth trying: only a lost answer would then need an admin's approval.
            tracing::warn!(error = %error, "Cannot save the node key proposed to the collector.");
        }
        Ok(key)
    }

    pub(super) fn agent_info(&self) -> AgentInfo {
        AgentInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            catalog_version: self.shared.catalog_version(),
        }
    }

    /// The node key: in memory, else from its file, else from a fresh enrollment.
    pub(super) async fn node_key(&mut self) -> Result<Secret, UploadError> {
        if let Some(k) = &self.node_key {
            if self.key_unsaved && write_secret(&self.key_path(), k.expose()).is_ok() {
                self.key_unsaved = false;
                let _removed = std::fs::remove_file(self.proposed_key_path());
                tracing::info!("Saved the node key.");
            }
            return Ok(k.clone());
        }
        if let Some(key) = read_key(&self.key_path()) {
            self.node_key = Some(key.clone());
            return Ok(key);
        }
        let device = identity::device(self.shared.config.owner_email.clone());
        // A re-enrollment presents the key we held: the collector's `require_key` policy lets
        // a known host id enroll again only with it (issue 14 item 3).
        let previous = read_key(&self.previous_key_path());
        let proposed = self.proposed_key()?;
        let key = match self
            .client
            .enroll(&self.shared.config.enroll_secret, device, previous.as_ref(), Some(&proposed))
            .await
        {
            Ok(key) => key,
            Err(UploadError::Status { status: 403, .. }) => {
                tracing::warn!(
                    "The collector refuses to enroll this host id again without the node key it knows; an admin can approve the re-enrollment."
                );
                return Err(UploadError::Status { status: 403, body: String::new() });
            }
            Err(UploadError::Status { status: 409, .. }) => {
                tracing::warn!(
                    "The collector holds this re-enrollment for an admin's approval; trying again later."
                );
                return Err(UploadError::Status { status: 409, body: String::new() });
            }
            Err(e) => return Err(e),
        };
        // Already gone is fine.
        let _removed = std::fs::remove_file(self.previous_key_path());
        if let Err(error) = write_secret(&self.key_path(), key.expose()) {
            tracing::warn!(error = %error, "Cannot save the node key yet; saving it is tried again at every upload and heartbeat.");
            self.key_unsaved = true;
        } else {
            // The proposed key stays while the key is unsaved: it is the same key, and
            // proves this host id if the agent restarts before it is saved.
            let _removed = std::fs::remove_file(self.proposed_key_path());
        }
        tracing::info!("Enrolled with the collector.");
        self.node_key = Some(key.clone());
        Ok(key)
    }

    /// Drops the key the collector refused, keeping it as the previous key for the next
    /// enrollment.
    pub(super) fn forget_key(&mut self) {
        let key = self.node_key.take().or_else(|| read_key(&self.key_path()));
        self.key_unsaved = false;
        if let Some(key) = key
            && let Err(error) = write_secret(&self.previous_key_path(), key.expose())
        {
            tracing::warn!(error = %error, "Cannot keep the refused node key for the next enrollment.");
        }
        // A missing file is fine: the key is being replaced either way.
        let _removed = std::fs::remove_file(self.key_path());
    }

    /// Sends batches until the spool is empty; returns how many were acknowledged.
    pub(super) async fn drain(&mut self) -> Result<u64, UploadError> {
        let mut sent = 0;
        // Bounded: a spool holds at most its cap; 10,000 batches is far beyond any cap.
        for _ in 0..10_000 {
            let batch = with_spool(&self.spool, Spool::next_batch).await?;
            let Some(batch) = batch else { return Ok(sent) };
            let key = self.node_key().await?;
            let agent = self.agent_info();
            match self.client.send_batch(&key, &agent, &batch).await {
                Ok(_ack) => {
                    with_spool(&self.spool, move |s| s.ack(&batch)).await?;
                    sent += 1;
                }
                Err(UploadError::Unauthorized) => {
                    tracing::warn!("The collector refused the node key; enrolling again.");
                    self.forget_key();
                    return Err(UploadError::Unauthorized);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Sends a heartbeat; when its acknowledgement names a catalog newer than ours, fetches
    /// it. Says whether the acknowledgement named the collector's catalog version, which
    /// makes it a catalog check.
    pub(super) async fn heartbeat(&mut self) -> Result<CatalogCheck, UploadError> {
        let key = self.node_key().await?;
        let spool = Arc::clone(&self.spool);
        let stats =
            tokio::task::spawn_blocking(move || spool.lock().ok().and_then(|s| s.stats().ok()))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
        let h = &self.shared.health;
        let heartbeat = Heartbeat {
            agent: self.agent_info(),
            interfaces: h.interfaces.lock().map(|l| l.clone()).unwrap_or_default(),
            packets: h.packets.load(Ordering::Relaxed),
            drops: h.drops.load(Ordering::Relaxed),
            spool_depth: stats.rows,
            evictions: h.evictions.load(Ordering::Relaxed),
            last_scan: Some(h.last_scan.load(Ordering::Relaxed)).filter(|t| *t > 0).map(UnixSecs),
        };
        match self.client.heartbeat(&key, &heartbeat).await {
            Ok(ack) => {
                if ack.overlay_version.is_some_and(|v| v > self.shared.overlay_version()) {
                    self.update_overlay().await?;
                }
                let Some(version) = ack.catalog_version else { return Ok(CatalogCheck::NotDone) };
                if version > self.shared.catalog_version() {
                    self.update_catalog().await?;
                }
                Ok(CatalogCheck::Done)
            }
            Err(UploadError::Unauthorized) => {
                tracing::warn!("The collector refused the node key; enrolling again.");
                self.forget_key();
                Err(UploadError::Unauthorized)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the collector's catalog; swaps it in only when its signature verifies against
    /// the pinned key and it is newer than the one in use, and keeps it as the last good one.
    pub(super) async fn update_catalog(&mut self) -> Result<(), UploadError> {
        let key = self.node_key().await?;
        let bytes = match self.client.catalog(&key).await {
            Ok(b) => b,
            Err(UploadError::Status { status: 404, .. }) => return Ok(()), // none served
            Err(e) => return Err(e),
        };
        let current = self.shared.catalog_version();
        let floor = current.max(self.shared.catalog_high_water.load(Ordering::SeqCst));
        match Verifier::new(self.shared.config.catalog_key).verify(&bytes, Some(floor)) {
            Ok(catalog) if catalog.version() > current => {
                let version = catalog.version();
                if let Err(error) = save_catalog(&self.shared.config.state_dir, &bytes, version) {
                    tracing::warn!(error = %error, "Cannot save the new catalog as the last good one.");
                }
                self.shared.catalog_high_water.fetch_max(version, Ordering::SeqCst);
                self.shared.swap_catalog(catalog);
                tracing::info!(version, "Catalog updated and verified.");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, current, "Catalog from the collector refused; the current one stays in use.");
            }
        }
        Ok(())
    }
}

impl Uploader {
    /// Fetches the collector's organisation overlay when an overlay key is pinned; swaps it
    /// in only when it verifies against that key, is newer than the one in use and not below
    /// the high-water mark (no rollback), and merges with the vendor catalog; keeps it as the
    /// last good one.
    pub(super) async fn update_overlay(&mut self) -> Result<(), UploadError> {
        let Some(pinned) = self.shared.config.overlay_key else { return Ok(()) };
        let key = self.node_key().await?;
        let bytes = match self.client.overlay(&key).await {
            Ok(b) => b,
            Err(UploadError::Status { status: 404, .. }) => return Ok(()), // none served
            Err(e) => return Err(e),
        };
        let current = self.shared.overlay_version();
        let floor = current.max(self.shared.overlay_high_water.load(Ordering::SeqCst));
        match Verifier::new(pinned).verify_overlay(&bytes, Some(floor)) {
            Ok(overlay) if overlay.version() > current => {
                let version = overlay.version();
                match self.shared.swap_overlay(overlay) {
                    Ok(()) => {
                        if let Err(error) =
                            save_overlay(&self.shared.config.state_dir, &bytes, version)
                        {
                            tracing::warn!(error = %error, "Cannot save the new organisation overlay as the last good one.");
                        }
                        self.shared.overlay_high_water.fetch_max(version, Ordering::SeqCst);
                        tracing::info!(version, "Organisation overlay updated and verified.");
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, version, "Organisation overlay refused: it collides with the vendor catalog.");
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, current, "Organisation overlay from the collector refused (is overlay_key or overlay_key_file the key of this collector?); the current one stays in use.");
            }
        }
        Ok(())
    }
}

/// Runs a spool operation on the blocking pool (SQLite does file IO).
async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    op: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, UploadError> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || match spool.lock() {
        Ok(mut guard) => op(&mut guard).map_err(UploadError::Spool),
        Err(_) => Err(UploadError::SpoolTask(SpoolTaskError::Poisoned)),
    })
    .await
    .map_err(|e| UploadError::SpoolTask(SpoolTaskError::Join(e)))?
}
