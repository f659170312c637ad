//! Which database the server runs on: an embedded libSQL file, or a remote libSQL (Turso,
//! sqld) reached over Hrana HTTP. Each worker thread takes its own `Db` port from it.

use tollgate::db::{
    Db, DbError,
    hrana::{DEFAULT_MAX_INFLIGHT, HranaDb, HranaShared},
};

use crate::{db::LibsqlDb, hrana::ReqwestTransport};

#[derive(Clone)]
pub enum Database {
    Embedded(LibsqlDb),
    Remote {
        url: String,
        token: Option<String>,
        transport: ReqwestTransport,
        /// What the ports of every worker thread share: one cap on requests in flight for
        /// the process, and one memory of the refusals reported.
        shared: HranaShared,
    },
}

impl Database {
    /// `url` is a file path (`file:` prefix allowed), `:memory:`, or a `libsql://` /
    /// `http(s)://` URL; `token` authenticates to a remote one, which gets
    /// [`DEFAULT_MAX_INFLIGHT`] requests in flight (see [`Database::with_max_inflight`]).
    pub async fn open(url: &str, token: Option<String>) -> Result<Self, DbError> {
        let url = url.trim();
        if HranaDb::is_remote_url(url) {
            return Ok(Database::Remote {
                url: url.to_owned(),
                token,
                transport: ReqwestTransport::new(),
                shared: HranaShared::new(DEFAULT_MAX_INFLIGHT),
            });
        }
        let path = url.strip_prefix("file:").unwrap_or(url);
        Ok(Database::Embedded(LibsqlDb::open(path).await?))
    }

    /// At most `max_inflight` requests of this process at once to a remote database; an
    /// embedded one is not concerned. Call before handing out ports.
    pub fn with_max_inflight(self, max_inflight: usize) -> Self {
        match self {
            Database::Remote {
                url,
                token,
                transport,
                ..
            } => Database::Remote {
                url,
                token,
                transport,
                shared: HranaShared::new(max_inflight),
            },
            embedded => embedded,
        }
    }

    /// A `Db` port onto this database.
    pub fn port(&self) -> Box<dyn Db> {
        match self {
            Database::Embedded(db) => Box::new(db.clone()),
            Database::Remote {
                url,
                token,
                transport,
                shared,
            } => Box::new(
                HranaDb::new(url, token.clone(), Box::new(transport.clone())).sharing(shared),
            ),
        }
    }
}

impl From<LibsqlDb> for Database {
    fn from(db: LibsqlDb) -> Self {
        Database::Embedded(db)
    }
}
