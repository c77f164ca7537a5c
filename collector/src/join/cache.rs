//! What the console and the API derive from slowly changing data, kept in the collector's
//! memory while the store's data versions say that data is unchanged.
//!
//! With a million expense lines and gateway rows, reading them and resolving every payer took
//! seconds per page (collector/BENCH-CONSOLE.md); they change only when a file is imported.
//! Each entry is keyed by the [`Versions`] counters of the data it was computed from, which
//! the store bumps in the same transaction as the change, so an entry is never used after a
//! change that any collector on the same database committed: every read starts with one small
//! query for the counters (after folding pending sightings, as rollup reads do). Entries that
//! depend on the clock (subscriptions active at a time) are also rebuilt after [`MAX_AGE`].
//! Entries computed from the rollups may lag a fold by up to [`USAGE_LAG`], since with agents
//! reporting every fold moves them; imports, enrolments and reviews are never lagged.
//!
//! A build holds its slot's lock, so concurrent requests for a stale entry wait for one build
//! instead of each starting their own. Nothing here is a second query path: the entries are
//! the values `join` would read and compute without the cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::people::{PeopleSpend, people_spend};
use super::{Owners, Spend, read_owners, read_spend};
use crate::model::ValueUsage;
use crate::model::calendar::DAY_SECS;
use crate::store::{Store, StoreError, Versions};

/// How long an entry that depends on the clock is kept even when the data is unchanged.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// How long an entry computed from the rollups (people's products, owners' last use) may
/// answer after a fold moved the rollups on. Imports and enrolments are never lagged.
pub const USAGE_LAG: Duration = Duration::from_secs(60);

/// Most products whose matched values are kept.
const VALUES_KEPT: usize = 64;

struct Slot<K, V> {
    entry: Mutex<Option<(K, Instant, Arc<V>)>>,
}

impl<K, V> Default for Slot<K, V> {
    fn default() -> Self {
        Self { entry: Mutex::new(None) }
    }
}

impl<K, V> Slot<K, V> {
    /// The entry when `fresh` accepts its key and build time; else one built by `build` and
    /// kept under `key`.
    async fn get<F>(
        &self,
        key: K,
        fresh: impl Fn(&K, Instant) -> bool,
        build: F,
    ) -> Result<Arc<V>, StoreError>
    where
        F: Future<Output = Result<V, StoreError>>,
    {
        let mut entry = self.entry.lock().await;
        if let Some((k, built, v)) = entry.as_ref()
            && fresh(k, *built)
        {
            return Ok(Arc::clone(v));
        }
        let v = Arc::new(build.await?);
        *entry = Some((key, Instant::now(), Arc::clone(&v)));
        Ok(v)
    }

    /// Whether an entry was ever built.
    async fn is_used(&self) -> bool {
        self.entry.lock().await.is_some()
    }
}

/// Whether an entry built from `built` at `at` may answer for `now`: the spend and devices
/// counters must match exactly; the usage counter may lag by at most [`USAGE_LAG`] (with
/// agents reporting all the time, every fold moves it).
fn usage_fresh(built: &Versions, at: Instant, now: &Versions) -> bool {
    built.spend == now.spend
        && built.devices == now.devices
        && (built.usage == now.usage || at.elapsed() < USAGE_LAG)
}

/// Matched values of a product, with the usage version they were read at.
type Values = (i64, Instant, Arc<Vec<ValueUsage>>);

/// The collector's derived-data cache; one per process, in `AppState`.
#[derive(Default)]
pub struct Cache {
    spend: Slot<i64, Spend>,
    owners: Slot<(Versions, Vec<String>), Owners>,
    people: Slot<Versions, PeopleSpend>,
    values: Mutex<BTreeMap<String, Values>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

impl Cache {
    /// The spend facts since `since`: all of them from the cache; since a UTC midnight, the
    /// cached facts filtered (gateway totals are per UTC day, so a midnight cuts them exactly
    /// as the store's filter would); since another time, read from the store.
    ///
    /// # Errors
    /// A store read fails.
    pub async fn spend<S: Store>(
        &self,
        store: &S,
        since: Option<i64>,
        now: i64,
    ) -> Result<Arc<Spend>, StoreError> {
        if let Some(t) = since.filter(|t| t.rem_euclid(DAY_SECS) != 0) {
            return Ok(Arc::new(read_spend(store, Some(t), true, now).await?));
        }
        let version = store.versions().await?.spend;
        let all = self
            .spend
            .get(version, |k, at| *k == version && at.elapsed() < MAX_AGE, async {
                read_spend(store, None, true, now).await
            })
            .await?;
        Ok(match since {
            None => all,
            Some(t) => Arc::new(all.since(t)),
        })
    }

    /// The device owners and their last use of the `sanctioned` products.
    ///
    /// # Errors
    /// A store read fails.
    pub async fn owners<S: Store>(
        &self,
        store: &S,
        sanctioned: Vec<String>,
    ) -> Result<Arc<Owners>, StoreError> {
        let v = Versions { spend: 0, ..store.versions().await? };
        let key = (v, sanctioned.clone());
        let fresh =
            |(k, s): &(Versions, Vec<String>), at| *s == sanctioned && usage_fresh(k, at, &v);
        self.owners.get(key, fresh, async { read_owners(store, sanctioned.clone()).await }).await
    }

    /// Everyone's use and spend ([`people_spend`] of [`Store::person_usage`] for everyone).
    ///
    /// # Errors
    /// A store read fails.
    pub async fn people<S: Store>(
        &self,
        store: &S,
        now: i64,
    ) -> Result<Arc<PeopleSpend>, StoreError> {
        let v = store.versions().await?;
        self.people
            .get(v, |k, at| usage_fresh(k, at, &v), async {
                let (usage, spend) =
                    tokio::try_join!(store.person_usage(None), self.spend(store, None, now))?;
                Ok(people_spend(usage, &spend))
            })
            .await
    }

    /// What matched `product` ([`Store::product_values`] with `limit`).
    ///
    /// # Errors
    /// A store read fails.
    pub async fn product_values<S: Store>(
        &self,
        store: &S,
        product: &str,
        limit: i64,
    ) -> Result<Arc<Vec<ValueUsage>>, StoreError> {
        let usage = store.versions().await?.usage;
        let key = format!("{limit}\u{0}{product}");
        if let Some((v, at, values)) = self.values.lock().await.get(&key)
            && (*v == usage || at.elapsed() < USAGE_LAG)
        {
            return Ok(Arc::clone(values));
        }
        let values = Arc::new(store.product_values(product.to_owned(), limit).await?);
        let mut kept = self.values.lock().await;
        if kept.len() >= VALUES_KEPT && !kept.contains_key(&key) {
            kept.clear();
        }
        kept.insert(key, (usage, Instant::now(), Arc::clone(&values)));
        Ok(values)
    }

    /// Rebuilds, ahead of the next page, the entries that pages have used and whose data
    /// changed: `serve` calls it every few seconds, so that the first page after an import
    /// rarely pays for the rebuild.
    ///
    /// # Errors
    /// A store read fails.
    pub async fn warm<S: Store>(&self, store: &S, now: i64) -> Result<(), StoreError> {
        if self.spend.is_used().await {
            self.spend(store, None, now).await?;
        }
        if self.people.is_used().await {
            self.people(store, now).await?;
        }
        if self.owners.is_used().await {
            let reviews = store.reviews().await?;
            self.owners(store, super::sanctioned(&reviews)).await?;
        }
        Ok(())
    }
}
