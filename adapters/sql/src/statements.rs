//! The stores' statements that both databases run the same way: the same
//! parameters bound in the same order, the rows read by [`crate::rows`].
//! Each adapter gives its own SQL text ([`StoreSql`]); batched writes,
//! which each database does its own way, stay in the adapters.

use shop_rules::inventory::{InventoryState, ProductStock, Reservation};
use shop_rules::order::Order;
use shop_runtime::ports::{
    CatalogueEntry, MovementEntry, OrderQuery, Provenance, SealedDelivery, StoreError, StoredKey, StoredRecord,
    Versioned,
};
use sqlx::query::Query;
use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Pool, Type};

use crate::Driver;
use crate::rows::{self, StoreRow, corrupt, to_sql};

/// One adapter's SQL for [`Statements`]; `$N` is the N-th parameter.
#[derive(Debug)]
pub struct StoreSql {
    /// `$1` order id: its `state` and `version`.
    pub order: &'static str,
    /// `$1` order id: its `order_id`, `state`, `version` and `policy` (as
    /// text), with its delivery's `key_id` and `sealed` or NULLs.
    pub order_record: &'static str,
    /// The number of PENDING orders, as `count`.
    pub pending_count: &'static str,
    /// `$1` cutoff, `$2` limit: ids (`order_id`) of orders confirmed before the cutoff, oldest first.
    pub confirmed_before: &'static str,
    /// `$1` customer, `$2` status or NULL, `$3` cursor's created_at or
    /// NULL, `$4` cursor's order id, `$5` limit: their `state`, newest first.
    pub customer_orders: &'static str,
    /// `$1` product, `$2` unit price, `$3` currency, `$4` source version:
    /// stores the entry unless that or a newer version is stored.
    pub update_catalogue: &'static str,
    /// `$1` product, `$2` after sequence, `$3` limit: movements in order,
    /// with their actor and request id.
    pub movements: &'static str,
    /// `$1` order id: the reservation's `status` and `lines`.
    pub reservation: &'static str,
    /// `$1` the order ids, as the adapter binds a list: their reservations'
    /// `order_id`, `status` and `lines`.
    pub reservations: &'static str,
    /// `$1` the product ids, as the adapter binds a list: their columns
    /// in table order, by product id.
    pub products: &'static str,
    /// `$1` id to start after or NULL, `$2` LIKE pattern (escaped with `\`)
    /// or NULL, `$3` limit: products' columns in table order, by id, those
    /// whose id or name matches the pattern ignoring ASCII case.
    pub product_page: &'static str,
    /// `$1`..`$11` the product's columns in table order: inserts it unless its id is taken.
    pub insert_product: &'static str,
    /// `$1` the order ids, as the adapter binds a list: their deliveries' columns.
    pub deliveries: &'static str,
    /// `$1` the order ids, as the adapter binds a list: `order_id` and
    /// `policy` (as text) of those that have one.
    pub provenance: &'static str,
    /// `$1` customer: their key's columns.
    pub customer_key: &'static str,
    /// `$1` customer, `$2` key id, `$3` kek id, `$4` wrapped, `$5` created
    /// at: inserts the key unless the customer has one.
    pub insert_key: &'static str,
    /// `$1` the key ids, as the adapter binds a list: their columns.
    pub keys: &'static str,
    /// `$1` customer: deletes their key.
    pub destroy_key: &'static str,
    /// `$1` kek id, `$2` key id to start after, `$3` limit: columns of
    /// keys under other keks, by key id.
    pub keys_not_under: &'static str,
    /// `$1` key id, `$2` new kek id, `$3` new wrapping, `$4` the kek id it
    /// must still be under.
    pub rewrap_key: &'static str,
}

/// [`StoreSql`] run on a database of kind `DB`, through the adapter's [`Driver`].
#[derive(Debug)]
pub struct Statements<DB: Database> {
    sql: &'static StoreSql,
    driver: Driver<DB>,
}

impl<DB: Database> Statements<DB> {
    pub const fn new(sql: &'static StoreSql, driver: Driver<DB>) -> Self {
        Self { sql, driver }
    }
}

impl<DB> Statements<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    DB::Row: StoreRow,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a String: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
{
    pub async fn order(&self, pool: &Pool<DB>, order_id: &str) -> Result<Option<Versioned<Order>>, StoreError> {
        self.of_one(pool, self.sql.order, order_id, rows::versioned_order).await
    }

    pub async fn order_record(&self, pool: &Pool<DB>, order_id: &str) -> Result<Option<StoredRecord>, StoreError> {
        self.of_one(pool, self.sql.order_record, order_id, rows::order_record)
            .await
    }

    pub async fn pending_count(&self, pool: &Pool<DB>) -> Result<u64, StoreError> {
        let row = sqlx::query::<DB>(self.sql.pending_count)
            .fetch_one(pool)
            .await
            .map_err(self.driver.db_error)?;
        let count = row.number("count").map_err(|e| corrupt("order count", e))?;
        Ok(rows::version(count))
    }

    pub async fn confirmed_before(
        &self,
        pool: &Pool<DB>,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query::<DB>(self.sql.confirmed_before)
            .bind(cutoff_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?
            .iter()
            .map(|row| row.text("order_id").map_err(|e| corrupt("order id", e)))
            .collect()
    }

    pub async fn customer_orders(&self, pool: &Pool<DB>, query: OrderQuery<'_>) -> Result<Vec<Order>, StoreError> {
        sqlx::query::<DB>(self.sql.customer_orders)
            .bind(query.customer_id)
            .bind(query.status.map(|s| s.as_str()))
            .bind(query.after.map(|c| c.created_at))
            .bind(query.after.map(|c| c.order_id.as_str()))
            .bind(i64::from(query.limit))
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?
            .iter()
            .map(rows::order)
            .collect()
    }

    pub async fn update_catalogue(&self, pool: &Pool<DB>, entry: &CatalogueEntry) -> Result<(), StoreError> {
        sqlx::query::<DB>(self.sql.update_catalogue)
            .bind(&entry.price.product_id)
            .bind(entry.price.unit_price)
            .bind(&entry.price.currency)
            .bind(to_sql(entry.source_version))
            .execute(pool)
            .await
            .map_err(self.driver.db_error)?;
        Ok(())
    }

    pub async fn movements(
        &self,
        pool: &Pool<DB>,
        product_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<MovementEntry>, StoreError> {
        sqlx::query::<DB>(self.sql.movements)
            .bind(product_id)
            .bind(to_sql(after))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?
            .iter()
            .map(rows::movement)
            .collect()
    }

    pub async fn reservation(&self, pool: &Pool<DB>, order_id: &str) -> Result<Option<Reservation>, StoreError> {
        self.of_one(pool, self.sql.reservation, order_id, |row| {
            rows::reservation(order_id, row)
        })
        .await
    }

    /// The stock of `product_ids` (bound as `ids`, the list the adapter's
    /// [`StoreSql::products`] takes) and the reservation of `order_id`.
    pub async fn inventory_state<'q, P>(
        &self,
        pool: &Pool<DB>,
        ids: P,
        order_id: Option<&str>,
    ) -> Result<InventoryState, StoreError>
    where
        P: Encode<'q, DB> + Type<DB> + Send + 'q,
    {
        let rows = sqlx::query::<DB>(self.sql.products)
            .bind(ids)
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?;
        let products = rows.iter().map(rows::product).collect::<Result<_, _>>()?;
        let reservation = match order_id {
            Some(order_id) => self.reservation(pool, order_id).await?,
            None => None,
        };
        Ok(InventoryState { products, reservation })
    }

    pub async fn product_page(
        &self,
        pool: &Pool<DB>,
        after: Option<&str>,
        search: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProductStock>, StoreError> {
        let pattern = search.map(like_pattern);
        let rows = sqlx::query::<DB>(self.sql.product_page)
            .bind(after)
            .bind(pattern.as_deref())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?;
        rows.iter().map(rows::product).collect()
    }

    pub async fn reservations<'q, P>(&self, pool: &Pool<DB>, order_ids: P) -> Result<Vec<Reservation>, StoreError>
    where
        P: Encode<'q, DB> + Type<DB> + Send + 'q,
    {
        self.of_orders(pool, self.sql.reservations, order_ids, rows::order_reservation)
            .await
    }

    pub async fn deliveries<'q, P>(&self, pool: &Pool<DB>, order_ids: P) -> Result<Vec<SealedDelivery>, StoreError>
    where
        P: Encode<'q, DB> + Type<DB> + Send + 'q,
    {
        self.of_orders(pool, self.sql.deliveries, order_ids, rows::sealed_delivery)
            .await
    }

    pub async fn provenance<'q, P>(&self, pool: &Pool<DB>, order_ids: P) -> Result<Vec<Provenance>, StoreError>
    where
        P: Encode<'q, DB> + Type<DB> + Send + 'q,
    {
        self.of_orders(pool, self.sql.provenance, order_ids, rows::provenance)
            .await
    }

    /// `sql`, which takes one id, its row (if any) read by `read`.
    async fn of_one<T>(
        &self,
        pool: &Pool<DB>,
        sql: &'static str,
        id: &str,
        read: impl Fn(&DB::Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = sqlx::query::<DB>(sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(self.driver.db_error)?;
        row.as_ref().map(read).transpose()
    }

    /// `sql`, which takes a list of order ids, its rows read by `read`.
    async fn of_orders<'q, P, T>(
        &self,
        pool: &Pool<DB>,
        sql: &'static str,
        order_ids: P,
        read: fn(&DB::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>
    where
        P: Encode<'q, DB> + Type<DB> + Send + 'q,
    {
        let rows = sqlx::query::<DB>(sql)
            .bind(order_ids)
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?;
        rows.iter().map(read).collect()
    }

    /// The customer's key: the stored one, else `candidate` once stored.
    /// The insert yields to a key stored meanwhile, read by the statement
    /// after it.
    pub async fn obtain_key(&self, pool: &Pool<DB>, candidate: &StoredKey) -> Result<StoredKey, StoreError> {
        if let Some(stored) = self.customer_key(pool, &candidate.customer_id).await? {
            return Ok(stored);
        }
        sqlx::query::<DB>(self.sql.insert_key)
            .bind(&candidate.customer_id)
            .bind(&candidate.key_id)
            .bind(&candidate.kek_id)
            .bind(&candidate.wrapped)
            .bind(candidate.created_at)
            .execute(pool)
            .await
            .map_err(self.driver.db_error)?;
        self.customer_key(pool, &candidate.customer_id)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("the key of customer {}", candidate.customer_id)))
    }

    async fn customer_key(&self, pool: &Pool<DB>, customer_id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.of_one(pool, self.sql.customer_key, customer_id, rows::stored_key)
            .await
    }

    pub async fn keys<'q, P>(&self, pool: &Pool<DB>, key_ids: P) -> Result<Vec<StoredKey>, StoreError>
    where
        P: Encode<'q, DB> + Type<DB> + Send + 'q,
    {
        let rows = sqlx::query::<DB>(self.sql.keys)
            .bind(key_ids)
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?;
        rows.iter().map(rows::stored_key).collect()
    }

    /// Deletes the customer's key in the transaction `tx` is in; whether there was one.
    pub async fn destroy_key(&self, tx: &mut DB::Connection, customer_id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query::<DB>(self.sql.destroy_key)
            .bind(customer_id)
            .execute(&mut *tx)
            .await
            .map_err(self.driver.db_error)?;
        Ok((self.driver.rows_affected)(&deleted) > 0)
    }

    pub async fn keys_not_under(
        &self,
        pool: &Pool<DB>,
        kek_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query::<DB>(self.sql.keys_not_under)
            .bind(kek_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?;
        rows.iter().map(rows::stored_key).collect()
    }

    pub async fn rewrap_key(
        &self,
        pool: &Pool<DB>,
        rewrapped: &StoredKey,
        previous_kek: &str,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query::<DB>(self.sql.rewrap_key)
            .bind(&rewrapped.key_id)
            .bind(&rewrapped.kek_id)
            .bind(&rewrapped.wrapped)
            .bind(previous_kek)
            .execute(pool)
            .await
            .map_err(self.driver.db_error)?;
        Ok((self.driver.rows_affected)(&updated) > 0)
    }

    /// Inserts `p` in the transaction `tx` is; a conflict when its id is taken.
    pub async fn insert_product(&self, tx: &mut DB::Connection, p: &ProductStock) -> Result<(), StoreError> {
        let inserted = bind_product(sqlx::query::<DB>(self.sql.insert_product), p)
            .execute(&mut *tx)
            .await
            .map_err(self.driver.db_error)?;
        if (self.driver.rows_affected)(&inserted) == 0 {
            return Err(StoreError::Conflict(format!("product {} already exists", p.product_id)));
        }
        Ok(())
    }
}

/// The [`InventoryStore`](shop_runtime::ports::InventoryStore) reads that
/// both adapters answer alike, inside their `impl InventoryStore`:
/// through `$statements` (their [`Statements`]) on `self.pool`.
#[macro_export]
macro_rules! inventory_reads {
    ($statements:path) => {
        async fn movements(
            &self,
            product_id: &str,
            after: u64,
            limit: u32,
        ) -> Result<Vec<::shop_runtime::ports::MovementEntry>, ::shop_runtime::ports::StoreError> {
            $statements.movements(&self.pool, product_id, after, limit).await
        }

        async fn products(
            &self,
            after: Option<&str>,
            search: Option<&str>,
            limit: u32,
        ) -> Result<Vec<::shop_rules::inventory::ProductStock>, ::shop_runtime::ports::StoreError> {
            $statements.product_page(&self.pool, after, search, limit).await
        }

        async fn product(
            &self,
            product_id: &str,
        ) -> Result<Option<::shop_rules::inventory::ProductStock>, ::shop_runtime::ports::StoreError> {
            let state = self.load(&[product_id.to_owned()], None).await?;
            Ok(state.products.into_iter().next())
        }

        async fn reservation(
            &self,
            order_id: &str,
        ) -> Result<Option<::shop_rules::inventory::Reservation>, ::shop_runtime::ports::StoreError> {
            $statements.reservation(&self.pool, order_id).await
        }
    };
}

/// `%text%` for LIKE, with LIKE's own characters in `text` escaped by `\`.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Binds a product's columns as `$1` to `$11`, in table order.
pub fn bind_product<'q, DB>(query: Query<'q, DB, DB::Arguments>, p: &'q ProductStock) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'a> &'a String: Encode<'a, DB> + Type<DB>,
    i64: Type<DB> + for<'e> Encode<'e, DB>,
{
    query
        .bind(&p.product_id)
        .bind(&p.name)
        .bind(p.unit_price)
        .bind(&p.currency)
        .bind(p.available)
        .bind(p.reserved)
        .bind(p.initial)
        .bind(p.restocked)
        .bind(p.adjusted)
        .bind(p.deducted)
        .bind(to_sql(p.version))
}
