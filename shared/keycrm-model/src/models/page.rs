use serde::Deserialize;

/// Laravel's length-aware paginator envelope. Only what paging needs is typed; the other keys
/// (`first_page_url`, `from`, `path`, …) are tolerated and ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub current_page: u32,
    #[serde(default)]
    pub last_page: u32,
    #[serde(default)]
    pub per_page: u32,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub next_page_url: Option<String>,
}
