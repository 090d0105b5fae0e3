//! Order push's shared KeyCRM dictionaries (`CONN#{id}` / `CACHE#dictionaries`), counted.

use super::*;
use store::{CachedDictionaries, DictionaryCache};

pub struct Dictionaries {
    pub inner: Arc<store::MemoryDictionaryCache>,
    pub ctx: Ctx,
}

impl Dictionaries {
    fn size(d: &CachedDictionaries) -> usize {
        json_len(d) + ITEM_OVERHEAD + 60
    }
}

#[async_trait]
impl DictionaryCache for Dictionaries {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(CachedDictionaries, DateTime<Utc>)>, StoreError> {
        let got = self.inner.get(connection_id, max_age).await?;
        // A consistent GetItem; an expired entry is still read whole.
        let r = got
            .as_ref()
            .map_or(1.0, |(d, _)| read_units(Self::size(d), true));
        self.ctx.meter.dynamo(
            self.ctx.index.conn(connection_id),
            "dictionaries.get",
            r,
            0.0,
        );
        Ok(got)
    }
    async fn put(
        &self,
        connection_id: &str,
        dictionaries: &CachedDictionaries,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.ctx.meter.dynamo(
            self.ctx.index.conn(connection_id),
            "dictionaries.put",
            0.0,
            write_units(Self::size(dictionaries)),
        );
        self.inner.put(connection_id, dictionaries, ttl).await
    }
    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        self.ctx.meter.dynamo(
            self.ctx.index.conn(connection_id),
            "dictionaries.invalidate",
            0.0,
            1.0,
        );
        self.inner.invalidate(connection_id).await
    }
}
