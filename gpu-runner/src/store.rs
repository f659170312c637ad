//! Where job outputs go once fetched from ComfyUI. A local directory today; an
//! S3-compatible store implements the same trait later.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "output store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

#[async_trait]
pub trait OutputStore: Send + Sync {
    /// Stores `bytes` under `key` (a relative, `/`-separated path) and returns where it
    /// went (a path or URL to record with the job).
    async fn put(&self, key: &str, content_type: &str, bytes: &[u8]) -> Result<String, StoreError>;
}

/// Files under one root directory; keys become relative paths.
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDirStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path for `key`, refusing anything that could leave the root.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError(format!("unsafe key {key:?}")));
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl OutputStore for LocalDirStore {
    async fn put(
        &self,
        key: &str,
        _content_type: &str,
        bytes: &[u8],
    ) -> Result<String, StoreError> {
        let path = self.path_for(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        }
        // Write beside, then rename: a reader never sees half a file.
        let tmp = path.with_extension("partial");
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| StoreError(format!("{}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        Ok(path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_the_root() {
        let store = LocalDirStore::new("/srv/out");
        assert!(store.path_for("job/chain/a.png").is_ok());
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
            assert!(store.path_for(bad).is_err(), "{bad}");
        }
    }
}
