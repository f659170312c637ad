//! Which database the server runs on: an embedded libSQL file, or a remote libSQL (Turso,
//! sqld) reached over Hrana HTTP. Each worker thread takes its own `Db` port from it.

use tollgate::db::{Db, DbError, hrana::HranaDb};

use crate::{db::LibsqlDb, hrana::ReqwestTransport};

#[derive(Clone)]
pub enum Database {
    Embedded(LibsqlDb),
    Remote {
        url: String,
        token: Option<String>,
        transport: ReqwestTransport,
    },
}

impl Database {
    /// `url` is a file path (`file:` prefix allowed), `:memory:`, or a `libsql://` /
    /// `http(s)://` URL; `token` authenticates to a remote one.
    pub async fn open(url: &str, token: Option<String>) -> Result<Self, DbError> {
        let url = url.trim();
        if HranaDb::is_remote_url(url) {
            return Ok(Database::Remote {
                url: url.to_owned(),
                token,
                transport: ReqwestTransport::new(),
            });
        }
        let path = url.strip_prefix("file:").unwrap_or(url);
        Ok(Database::Embedded(LibsqlDb::open(path).await?))
    }

    /// A `Db` port onto this database.
    pub fn port(&self) -> Box<dyn Db> {
        match self {
            Database::Embedded(db) => Box::new(db.clone()),
            Database::Remote {
                url,
                token,
                transport,
            } => Box::new(HranaDb::new(
                url,
                token.clone(),
                Box::new(transport.clone()),
            )),
        }
    }
}

impl From<LibsqlDb> for Database {
    fn from(db: LibsqlDb) -> Self {
        Database::Embedded(db)
    }
}
