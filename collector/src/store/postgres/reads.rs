//! PostgreSQL aggregations for the reports: a person's usage and spend, and the gateway
//! totals by day.

use crate::model::{GatewayTotal, PersonUsage};
use crate::store::{PeopleUsage, StoreError};

/// [`crate::store::Store::gateway_totals`].
pub(super) async fn gateway_totals(
    client: &deadpool_postgres::Object,
    since: Option<i64>,
) -> Result<Vec<GatewayTotal>, StoreError> {
    // The directory's emails are ASCII-lowercased on import, and so is the end user here:
    // `lower` under the C collation touches only ASCII letters (as SQLite's does), and is
    // a fifth faster over a million rows than the locale's.
    let rows = client
        .query(
            "SELECT g.product, g.provider, COALESCE(NULLIF(p.department, ''), g.team) AS dep,
                    g.currency, g.period_start - mod(g.period_start, 86400) AS day,
                    SUM(g.cost_nanos)::bigint, SUM(g.input_tokens + g.output_tokens)::bigint,
                    COUNT(*)
             FROM gateway_spend g
             LEFT JOIN people p ON p.email = lower(g.end_user COLLATE \"C\")
             WHERE ($1::bigint IS NULL OR g.period_start >= $1)
             GROUP BY g.product, g.provider, dep, g.currency, day
             ORDER BY day, g.product NULLS FIRST, g.provider, dep, g.currency",
            &[&since],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(GatewayTotal {
                product: r.try_get(0)?,
                provider: r.try_get(1)?,
                department: r.try_get(2)?,
                currency: r.try_get(3)?,
                day: r.try_get(4)?,
                cost_nanos: r.try_get(5)?,
                tokens: r.try_get(6)?,
                rows: r.try_get(7)?,
            })
        })
        .collect()
}

/// [`crate::store::Store::person_usage`] of an ASCII-lowercased email, or of everyone, after
/// a fold (the products come from the rollups).
pub(super) async fn person_usage(
    client: &mut deadpool_postgres::Object,
    email: Option<&str>,
) -> Result<Vec<PersonUsage>, StoreError> {
    // One snapshot for the three reads. Emails are lowercased under the C collation
    // (ASCII letters only, as SQLite's `lower` and the directory's import).
    let tx = super::snapshot(client).await?;
    let mut people = PeopleUsage::default();
    let products = by_email(
        &tx,
        "SELECT lower(d.owner_email COLLATE \"C\") AS email, s.product,
                    MAX(s.last_seen)
             FROM usage_device s JOIN devices d ON d.id = s.device_id
             WHERE d.owner_email IS NOT NULL AND d.owner_email <> ''
               AND ($1::text IS NULL OR lower(d.owner_email COLLATE \"C\") = $1)
             GROUP BY email, s.product",
        email,
    )
    .await?;
    for r in &products {
        people.product(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    }
    let expenses = by_email(
        &tx,
        "SELECT lower(payer_email COLLATE \"C\") AS email, currency,
                    SUM(amount_minor)::bigint, MAX(occurred_at)
             FROM expense_lines
             WHERE product IS NOT NULL AND payer_email <> ''
               AND ($1::text IS NULL OR lower(payer_email COLLATE \"C\") = $1)
             GROUP BY email, currency",
        email,
    )
    .await?;
    for r in &expenses {
        people.expense(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
    }
    let gateway = by_email(
        &tx,
        "SELECT lower(end_user COLLATE \"C\") AS email, currency,
                    SUM(cost_nanos)::bigint, MAX(period_start)
             FROM gateway_spend
             WHERE (strpos(end_user, '@') > 0 OR end_user LIKE 'person-%')
               AND ($1::text IS NULL OR lower(end_user COLLATE \"C\") = $1)
             GROUP BY email, currency",
        email,
    )
    .await?;
    for r in &gateway {
        people.gateway(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
    }
    tx.commit().await?;
    Ok(people.finish())
}

/// Runs one of [`person_usage`]'s reads, whose one parameter is the email (or NULL for all).
async fn by_email(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    email: Option<&str>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    Ok(tx.query(&tx.prepare_cached(sql).await?, &[&email]).await?)
}
