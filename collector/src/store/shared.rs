//! The [`super::Store`] methods both backends implement alike, written once.
//!
//! Most methods only choose how a statement function of [`super::queries`] runs: on a pooled
//! connection outside any transaction it does not open itself (a read, or a write of one
//! statement), or in a writing transaction committed when the function succeeds. Those
//! choices are the backend's: SQLite runs the (synchronous) function on the blocking pool
//! through [`super::sql::ready`], with `BEGIN IMMEDIATE` for writes; PostgreSQL awaits it on
//! a pooled client or in a transaction of one. So each backend names two macros, `read` and
//! `write`, of the form `read!(self, conn => statement_future)`, and [`store_methods`]
//! expands, inside the backend's `impl Store`, into every method that is no more than that.
//!
//! Bulk imports and the aggregations behind the reports are written per backend, as
//! functions of the backend's own connection with the same names in both (`bulk::expenses`,
//! `bulk::gateway`, `bulk::people`, `reads::gateway_totals`, `reads::person_usage`); a third
//! macro, `with!(self, conn => call)`, hands them a pooled connection (SQLite: on the
//! blocking pool; PostgreSQL: awaited), so what surrounds them (applying the identity key,
//! folding first) is written once here too.
//!
//! A backend keeps the methods that really differ: batch ingest and the inventory from the
//! rollups; it has an inherent `fold_now(background)` (the SQLite writer thread, PostgreSQL's
//! fold under an advisory lock), and after an erasure its inherent `after_erasure()` clears
//! what its logs still hold of the old values (SQLite's write-ahead log; nothing on
//! PostgreSQL, which takes no connection for it). Its `protect(device, value, f)`
//! ([`protect_method`]) runs [`super::queries::lifecycle::protect`] in a writing transaction
//! when an identity key is set; the methods here call it before the writes that carry
//! identities.

/// Expands into the shared [`super::Store`] methods; `$backend` is the backend's name, `$read`,
/// `$write` and `$with` its macros (see the module documentation), and the backend has an
/// inherent `fold_now(background)` that [`super::Store::fold`] and
/// [`super::Store::fold_when_idle`] call. Item paths are absolute, so the backend's imports
/// do not matter.
macro_rules! store_methods {
    ($backend:literal, $read:ident, $write:ident, $with:ident) => {
        fn backend(&self) -> &'static str {
            $backend
        }

        async fn fold(&self) -> Result<u64, $crate::store::StoreError> {
            self.fold_now(false).await
        }

        async fn fold_when_idle(&self) -> Result<u64, $crate::store::StoreError> {
            self.fold_now(true).await
        }

        async fn ping(&self) -> Result<(), $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::ping(c))
        }

        fn protect_identities(&self, ids: std::sync::Arc<$crate::identity::Identities>) {
            self.identities.set(ids).ok();
        }

        fn identities(&self) -> Option<std::sync::Arc<$crate::identity::Identities>> {
            self.identities.get().cloned()
        }

        async fn reveal_sealed(
            &self,
            pseudonym: String,
            audit: $crate::model::AuditRecord,
        ) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
            $write!(self, tx => {
                $crate::store::queries::lifecycle::reveal_sealed(tx, &pseudonym, &audit)
            })
        }

        async fn enroll(
            &self,
            device: $crate::model::Device,
            key_hash: $crate::store::CredentialHash,
            now: i64,
        ) -> Result<$crate::model::DeviceId, $crate::store::StoreError> {
            let device = self.protect(None, device, |p, d| p.device(d)).await?;
            $write!(self, tx => {
                $crate::store::queries::lifecycle::enroll(tx, &device, &key_hash, now)
            })
        }

        async fn enroll_checked(
            &self,
            a: $crate::model::EnrollAttempt,
        ) -> Result<$crate::model::EnrollOutcome, $crate::store::StoreError> {
            let a = self.protect(None, a, |p, a| p.device(&mut a.device)).await?;
            $write!(self, tx => $crate::store::queries::lifecycle::enroll_checked(tx, &a))
        }

        async fn approve_reenroll(
            &self,
            host_id: String,
            actor: String,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            $write!(self, tx => {
                $crate::store::queries::lifecycle::approve_reenroll(tx, &host_id, &actor, now)
            })
        }

        async fn apply_retention(
            &self,
            cutoffs: $crate::store::retention::Cutoffs,
            dry_run: bool,
        ) -> Result<$crate::store::retention::Outcome, $crate::store::StoreError> {
            use $crate::store::queries::{append_audit, lifecycle};
            use $crate::store::retention::{self, CHUNK, Kind, MAX_CHUNKS, Outcome};
            let mut outcome = Outcome { rows: Vec::new(), dry_run };
            for kind in Kind::ALL {
                let Some(cutoff) = cutoffs.of(kind) else { continue };
                let n = if dry_run {
                    $read!(self, c => lifecycle::retention_count(c, kind, cutoff))?
                } else {
                    // One transaction a chunk, so a long purge never holds the writers off.
                    let mut total = 0u64;
                    for _ in 0..MAX_CHUNKS {
                        let n = $write!(self, tx => lifecycle::retention_chunk(tx, kind, cutoff))?;
                        total += n;
                        if n < CHUNK.unsigned_abs() {
                            break;
                        }
                    }
                    total
                };
                outcome.rows.push((kind, cutoff, n));
            }
            if !dry_run && outcome.total() > 0 {
                let record = retention::audit(&outcome, $crate::store::now());
                $write!(self, tx => append_audit(tx, &record))?;
            }
            Ok(outcome)
        }

        async fn reenroll_requests(
            &self,
        ) -> Result<Vec<$crate::model::ReenrollRequest>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::lifecycle::reenroll_requests(c))
        }

        async fn device_by_key(
            &self,
            key_hash: $crate::store::CredentialHash,
        ) -> Result<Option<$crate::model::DeviceId>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::device_by_key(c, &key_hash[..]))
        }

        async fn heartbeat(
            &self,
            device: $crate::model::DeviceId,
            h: $crate::model::Health,
        ) -> Result<(), $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::heartbeat(tx, device, &h))
        }

        async fn devices(
            &self,
        ) -> Result<Vec<$crate::model::DeviceSummary>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::devices(c))
        }

        async fn product_people(
            &self,
            product: String,
        ) -> Result<Vec<String>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::product_people(c, &product))
        }

        async fn product_devices(
            &self,
            product: String,
        ) -> Result<Vec<$crate::model::DeviceUsage>, $crate::store::StoreError> {
            self.fold().await?;
            $read!(self, c => $crate::store::queries::product_devices(c, &product))
        }

        async fn devices_page(
            &self,
            q: $crate::model::DeviceQuery,
        ) -> Result<$crate::model::DevicePage, $crate::store::StoreError> {
            use $crate::store::queries::{device_counts, device_page};
            // The counts and the page are independent scans: two connections at once.
            let counted = q.clone();
            let counts = async {
                Ok::<_, $crate::store::StoreError>($read!(self, c => device_counts(c, &counted))?)
            };
            let page = async {
                Ok::<_, $crate::store::StoreError>($read!(self, c => device_page(c, &q))?)
            };
            let ((total, stale, matched), devices) = tokio::try_join!(counts, page)?;
            Ok($crate::model::DevicePage { total, stale, matched, devices })
        }

        async fn versions(&self) -> Result<$crate::store::Versions, $crate::store::StoreError> {
            self.fold().await?;
            $read!(self, c => $crate::store::queries::versions(c))
        }

        async fn product_values(
            &self,
            product: String,
            limit: i64,
        ) -> Result<Vec<$crate::model::ValueUsage>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::product_values(c, &product, limit))
        }

        async fn mcp_flags(
            &self,
        ) -> Result<Vec<$crate::model::McpServerFlags>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::mcp_flags(c))
        }

        async fn reviews(&self) -> Result<Vec<$crate::model::Review>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::reviews(c))
        }

        async fn review(
            &self,
            product: String,
        ) -> Result<Option<$crate::model::Review>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::review(c, &product))
        }

        async fn set_review(
            &self,
            review: $crate::model::Review,
            audit: $crate::store::AuditFn<$crate::model::Review>,
        ) -> Result<Option<$crate::model::Review>, $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::set_review(tx, &review, audit))
        }

        async fn create_token(
            &self,
            token: $crate::model::Token,
            hash: $crate::store::CredentialHash,
            audit: $crate::model::AuditRecord,
        ) -> Result<(), $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::create_token(tx, token, &hash, &audit))
        }

        async fn revoke_token(
            &self,
            name: String,
            now: i64,
            audit: $crate::store::AuditFn<$crate::model::Token>,
        ) -> Result<Option<$crate::model::Token>, $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::revoke_token(tx, &name, now, audit))
        }

        async fn tokens(&self) -> Result<Vec<$crate::model::Token>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::tokens(c))
        }

        async fn token_by_hash(
            &self,
            hash: $crate::store::CredentialHash,
        ) -> Result<Option<$crate::model::Token>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::token_by_hash(c, &hash))
        }

        async fn expenses(
            &self,
            since: Option<i64>,
        ) -> Result<Vec<$crate::model::ExpenseLine>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::expenses(c, since))
        }

        async fn mappings(
            &self,
        ) -> Result<Vec<$crate::model::DescriptorMapping>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::mappings(c))
        }

        async fn add_mapping(
            &self,
            mapping: $crate::model::DescriptorMapping,
            audit: $crate::model::AuditRecord,
        ) -> Result<($crate::model::DescriptorMapping, u64), $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::lifecycle::add_mapping(tx, mapping, &audit))
        }

        async fn remove_mapping(
            &self,
            id: i64,
            audit: $crate::store::AuditFn<$crate::model::DescriptorMapping>,
        ) -> Result<Option<($crate::model::DescriptorMapping, u64)>, $crate::store::StoreError>
        {
            $write!(self, tx => $crate::store::queries::lifecycle::remove_mapping(tx, id, audit))
        }

        async fn people_active(&self) -> Result<Vec<(String, bool)>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::people_active(c))
        }

        async fn scim_get(
            &self,
            kind: &'static str,
            id: String,
        ) -> Result<Option<$crate::model::ScimResource>, $crate::store::StoreError> {
            let row = $read!(self, c => $crate::store::queries::scim_get(c, kind, &id))?;
            let ids = self.identities.get().cloned();
            row.map(|r| $crate::store::open_scim(ids.as_deref(), r)).transpose()
        }

        async fn scim_list(
            &self,
            kind: &'static str,
            name: Option<String>,
            offset: i64,
            limit: i64,
        ) -> Result<(i64, Vec<$crate::model::ScimResource>), $crate::store::StoreError> {
            let ids = self.identities.get().cloned();
            let name = $crate::store::scim_name(ids.as_deref(), name);
            let (total, page) = $read!(self, c => {
                $crate::store::queries::scim_list(c, kind, name.as_deref(), offset, limit)
            })?;
            let page = page
                .into_iter()
                .map(|r| $crate::store::open_scim(ids.as_deref(), r))
                .collect::<Result<_, _>>()?;
            Ok((total, page))
        }

        async fn scim_write(
            &self,
            write: $crate::model::ScimWrite,
        ) -> Result<bool, $crate::store::StoreError> {
            let write = self.protect(None, write, |p, w| p.scim(w)).await?;
            $write!(self, tx => $crate::store::queries::lifecycle::scim_write(tx, write))
        }

        async fn scim_delete(
            &self,
            kind: &'static str,
            id: String,
            email: Option<String>,
            audit: $crate::model::AuditRecord,
        ) -> Result<bool, $crate::store::StoreError> {
            let email = self.protect(None, email, |p, e| p.optional(e)).await?;
            use $crate::store::queries::lifecycle::scim_delete;
            $write!(self, tx => scim_delete(tx, kind, &id, email.as_deref(), &audit))
        }

        async fn people(&self) -> Result<Vec<$crate::model::Person>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::people(c))
        }

        async fn owner_last_use(
            &self,
            products: Vec<String>,
        ) -> Result<Vec<$crate::model::OwnerUse>, $crate::store::StoreError> {
            if products.is_empty() {
                return Ok(Vec::new());
            }
            self.fold().await?;
            $read!(self, c => $crate::store::queries::owner_last_use(c, &products))
        }

        async fn device_sightings(
            &self,
            since: Option<i64>,
        ) -> Result<Vec<$crate::model::DeviceSighting>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::device_sightings(c, since))
        }

        async fn overlay(&self) -> Result<Option<(i64, String)>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::overlay(c))
        }

        async fn overlay_version(&self) -> Result<Option<i64>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::overlay_version(c))
        }

        async fn put_overlay(
            &self,
            version: i64,
            document: String,
            audit: $crate::model::AuditRecord,
        ) -> Result<bool, $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::put_overlay(tx, version, &document, &audit))
        }

        async fn process_sightings(
            &self,
            product: String,
        ) -> Result<Vec<$crate::model::ProcessSighting>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::process_sightings(c, &product))
        }

        async fn audit(
            &self,
            after: i64,
            limit: i64,
        ) -> Result<Vec<$crate::model::AuditEntry>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::audit(c, after, limit))
        }

        async fn create_session(
            &self,
            hash: $crate::store::CredentialHash,
            session: $crate::model::Session,
            audit: $crate::model::AuditRecord,
        ) -> Result<(), $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::create_session(tx, &hash, session, &audit))
        }

        async fn session(
            &self,
            hash: $crate::store::CredentialHash,
            now: i64,
        ) -> Result<Option<$crate::model::Session>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::session(c, &hash, now))
        }

        async fn touch_session(
            &self,
            hash: $crate::store::CredentialHash,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::touch_session(c, &hash, now))
        }

        async fn end_session(
            &self,
            hash: $crate::store::CredentialHash,
            audit: Option<$crate::model::AuditRecord>,
        ) -> Result<bool, $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::end_session(tx, &hash, audit.as_ref()))
        }

        async fn purge_sessions(
            &self,
            now: i64,
            idle_before: i64,
        ) -> Result<u64, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::purge_sessions(c, now, idle_before))
        }

        async fn audit_query(
            &self,
            filter: $crate::model::AuditFilter,
        ) -> Result<Vec<$crate::model::AuditEntry>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::audit_query(c, &filter))
        }

        async fn connector_cursor(
            &self,
            name: String,
        ) -> Result<Option<i64>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::connector_cursor(c, &name))
        }

        async fn set_connector_cursor(
            &self,
            name: String,
            cursor_at: i64,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            $read!(self, c => {
                $crate::store::queries::set_connector_cursor(c, &name, cursor_at, now)
            })
        }

        async fn record_import(
            &self,
            run: $crate::model::ImportRun,
        ) -> Result<(), $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::record_import(c, &run))
        }

        async fn import_runs(
            &self,
            limit: i64,
        ) -> Result<Vec<$crate::model::ImportRun>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::import_runs(c, limit))
        }

        async fn device(
            &self,
            host_id: String,
        ) -> Result<Option<$crate::model::DeviceSummary>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::device(c, &host_id))
        }

        async fn device_products(
            &self,
            host_id: String,
        ) -> Result<Vec<$crate::model::DeviceSighting>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::device_products(c, &host_id))
        }

        async fn rotate_enroll_secret(
            &self,
            hash: $crate::store::CredentialHash,
            now: i64,
            audit: $crate::model::AuditRecord,
        ) -> Result<(), $crate::store::StoreError> {
            $write!(self, tx => {
                $crate::store::queries::rotate_enroll_secret(tx, &hash, now, &audit)
            })
        }

        async fn enroll_secret(
            &self,
        ) -> Result<Option<($crate::store::CredentialHash, i64)>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::enroll_secret(c))
        }

        async fn sync_channels(
            &self,
            channels: Vec<$crate::model::ChannelRow>,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::alerts::sync_channels(tx, &channels, now))
        }

        async fn emit(
            &self,
            events: Vec<$crate::model::NewEvent>,
            audit: Option<$crate::model::AuditRecord>,
            now: i64,
        ) -> Result<u64, $crate::store::StoreError> {
            $write!(self, tx => {
                $crate::store::queries::alerts::emit(tx, &events, audit.as_ref(), now)
            })
        }

        async fn claim_deliveries(
            &self,
            channel: String,
            claimer: String,
            now: i64,
            lease_until: i64,
            limit: i64,
        ) -> Result<Vec<$crate::model::Claimed>, $crate::store::StoreError> {
            $write!(self, tx => {
                $crate::store::outbox::claim(tx, &channel, &claimer, now, lease_until, limit)
            })
        }

        async fn finish_delivery(
            &self,
            claimed: $crate::model::Claimed,
            claimer: String,
            attempt: $crate::model::Attempt,
            audit: Option<$crate::model::AuditRecord>,
            now: i64,
        ) -> Result<bool, $crate::store::StoreError> {
            $write!(self, tx => {
                $crate::store::queries::alerts::finish_delivery(
                    tx,
                    &claimed,
                    &claimer,
                    &attempt,
                    audit.as_ref(),
                    now,
                )
            })
        }

        async fn admit_deliveries(
            &self,
            claimed: Vec<$crate::model::Claimed>,
            claimer: String,
            now: i64,
            rule: $crate::model::AdmitRule,
        ) -> Result<Vec<$crate::model::Admit>, $crate::store::StoreError> {
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            $write!(self, tx => $crate::store::outbox::admit(tx, &claimed, &claimer, now, &rule))
        }

        async fn deliveries(
            &self,
            limit: i64,
        ) -> Result<Vec<$crate::model::DeliveryRow>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::deliveries(c, limit))
        }

        async fn delivery_counts(
            &self,
        ) -> Result<Vec<(String, String, i64)>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::delivery_counts(c))
        }

        async fn ticket(
            &self,
            channel: String,
            subject: String,
        ) -> Result<Option<String>, $crate::store::StoreError> {
            $read!(self, c => $crate::store::queries::ticket(c, &channel, &subject))
        }

        async fn set_ticket(
            &self,
            channel: String,
            subject: String,
            issue_key: String,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            $read!(self, c => {
                $crate::store::queries::set_ticket(c, &channel, &subject, &issue_key, now)
            })
        }

        async fn channel_events(
            &self,
            channel: String,
            state: String,
            from: i64,
            to: i64,
        ) -> Result<Vec<$crate::model::StoredEvent>, $crate::store::StoreError> {
            $read!(self, c => {
                $crate::store::queries::channel_events(c, &channel, &state, from, to)
            })
        }

        async fn digest_failed(
            &self,
            channel: String,
            period_end: i64,
            claimer: String,
            retry_at: i64,
        ) -> Result<(), $crate::store::StoreError> {
            $read!(self, c => {
                $crate::store::queries::alerts::digest_failed(
                    c,
                    &channel,
                    period_end,
                    &claimer,
                    retry_at,
                )
            })
        }

        async fn digest_sent(
            &self,
            channel: String,
            period_end: i64,
            claimer: String,
            now: i64,
            events: i64,
        ) -> Result<bool, $crate::store::StoreError> {
            $read!(self, c => {
                $crate::store::queries::alerts::digest_sent(
                    c,
                    &channel,
                    period_end,
                    &claimer,
                    now,
                    events,
                )
            })
        }
        async fn add_expenses(
            &self,
            lines: Vec<$crate::model::ExpenseLine>,
            now: i64,
        ) -> Result<$crate::model::ImportCounts, $crate::store::StoreError> {
            if lines.is_empty() {
                return Ok($crate::model::ImportCounts::default());
            }
            let lines = self.protect(None, lines, |p, l| p.expenses(l)).await?;
            $with!(self, c => bulk::expenses(c, lines, now))
        }

        async fn add_gateway_spend(
            &self,
            rows: Vec<$crate::model::GatewaySpend>,
            now: i64,
        ) -> Result<$crate::model::ImportCounts, $crate::store::StoreError> {
            if rows.is_empty() {
                return Ok($crate::model::ImportCounts::default());
            }
            let rows = self.protect(None, rows, |p, r| p.gateway(r)).await?;
            $with!(self, c => bulk::gateway(c, rows, now))
        }

        async fn upsert_people(
            &self,
            people: Vec<$crate::model::Person>,
        ) -> Result<$crate::model::ImportCounts, $crate::store::StoreError> {
            let people = self.protect(None, people, |p, v| p.people(v)).await?;
            $with!(self, c => bulk::people(c, people))
        }

        async fn gateway_totals(
            &self,
            since: Option<i64>,
        ) -> Result<Vec<$crate::model::GatewayTotal>, $crate::store::StoreError> {
            $with!(self, c => reads::gateway_totals(c, since))
        }

        async fn person_usage(
            &self,
            email: Option<String>,
        ) -> Result<Vec<$crate::model::PersonUsage>, $crate::store::StoreError> {
            // The products come from the rollups.
            self.fold().await?;
            let email = email.map(|e| e.to_ascii_lowercase());
            $with!(self, c => reads::person_usage(c, email.as_deref()))
        }
        async fn privacy_mode(
            &self,
            opened_with: $crate::identity::PrivacyMode,
            now: i64,
        ) -> Result<$crate::identity::PrivacyMode, $crate::store::StoreError> {
            $write!(self, tx => $crate::store::queries::privacy_mode(tx, opened_with, now))
        }

        async fn erase_person(
            &self,
            email: String,
            actor: String,
            reason: String,
            now: i64,
        ) -> Result<$crate::store::erase::Erasure, $crate::store::StoreError> {
            use $crate::store::queries::lifecycle::{Erase, erase_person};
            let ids = self.identities.get().cloned();
            let erase = Erase::new(ids, email, actor, reason, now);
            let erasure = $write!(self, tx => erase_person(tx, &erase))?;
            if erasure.tombstone.is_some() {
                self.after_erasure().await?;
            }
            Ok(erasure)
        }

        async fn claim_digest(
            &self,
            channel: String,
            period_end: i64,
            claimer: String,
            now: i64,
            lease_until: i64,
        ) -> Result<Option<$crate::model::DigestClaim>, $crate::store::StoreError> {
            use $crate::store::queries::alerts::claim_digest;
            $write!(self, tx => claim_digest(tx, &channel, period_end, &claimer, now, lease_until))
        }
    };
}

pub(crate) use store_methods;

/// Expands, inside a backend's inherent `impl`, into its `protect`, which runs
/// [`super::queries::lifecycle::protect`] through the backend's `$write` macro.
macro_rules! protect_method {
    ($write:ident) => {
        /// Applies the identity key to what a write carries, in a writing transaction, before
        /// the write itself ([`$crate::store::queries::lifecycle::protect`]); `device`: the
        /// device of a batch.
        async fn protect<T: Send + 'static>(
            &self,
            device: Option<$crate::model::DeviceId>,
            value: T,
            f: fn(&mut $crate::identity::Protect<'_>, &mut T),
        ) -> Result<T, $crate::store::StoreError> {
            let Some(ids) = self.identities.get().cloned() else { return Ok(value) };
            use $crate::store::queries::lifecycle::protect;
            $write!(self, tx => protect(tx, &ids, device, value, f))
        }
    };
}
pub(crate) use protect_method;
