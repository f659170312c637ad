//! Appending: the statement a handler pushes into the batch of the change it records.

use serde_json::Value as Json;

use crate::{
    api::ClientInfo,
    audit::Action,
    auth::principal::{Credential, Principal},
    db::Statement,
    ids::new_id,
    sql,
};

/// Who acted, and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    kind: &'static str,
    id: Option<String>,
    user_id: Option<String>,
    client: ClientInfo,
}

impl Actor {
    /// A signed-in caller: the user with a session, or the API key acting for its owner.
    pub fn of(principal: &Principal) -> Self {
        let user_id = principal.user_id.as_str().to_owned();
        let (kind, id) = match &principal.credential {
            Credential::Session { .. } => ("user", user_id.clone()),
            Credential::ApiKey { key_id, .. } => ("api_key", key_id.clone()),
        };
        Actor {
            kind,
            id: Some(id),
            user_id: Some(user_id),
            client: principal.client.clone(),
        }
    }

    /// A user acting without a principal yet: signing in, accepting an invitation,
    /// resetting a password with a mailed token.
    pub fn user(user_id: &str, client: ClientInfo) -> Self {
        Actor {
            kind: "user",
            id: Some(user_id.to_owned()),
            user_id: Some(user_id.to_owned()),
            client,
        }
    }

    /// A platform operator signed in to the admin API.
    pub fn platform_admin(admin_id: &str, client: ClientInfo) -> Self {
        Actor {
            kind: "platform_admin",
            id: Some(admin_id.to_owned()),
            user_id: None,
            client,
        }
    }

    /// Someone not (yet) known: a failed sign-in.
    pub fn anonymous(client: ClientInfo) -> Self {
        Actor {
            kind: "anonymous",
            id: None,
            user_id: None,
            client,
        }
    }

    /// Whom other records (a ledger row's `actor_id`) name for this actor: the tenant user,
    /// whatever credential they used, or else the admin's or component's id.
    pub fn acting_id(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.id.as_deref())
    }

    /// Tollgate itself, named by the component acting (`cli`, `billing`, `cron`).
    pub fn system(component: &str) -> Self {
        Actor {
            kind: "system",
            id: Some(component.to_owned()),
            user_id: None,
            client: ClientInfo::default(),
        }
    }
}

/// What an action was done to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    kind: Option<&'static str>,
    id: Option<String>,
}

impl Target {
    pub fn new(kind: &'static str, id: impl Into<String>) -> Self {
        Target {
            kind: Some(kind),
            id: Some(id.into()),
        }
    }

    pub fn none() -> Self {
        Target::default()
    }
}

/// The statement that appends one unsealed entry to `tenant_id`'s chain, with the tenant's
/// next sequence number: after its newest entry, and never at or below its sealed head (so
/// numbering goes on when retention removed every entry, or someone removed the newest). Push it into the batch of the change it records; when the
/// change may not happen, guard it with `.only_if_exists(...)` on a query that holds
/// exactly when the change does (see [`if_changed`]). `metadata` should be a JSON object.
pub fn entry(
    tenant_id: &str,
    actor: &Actor,
    action: Action,
    target: Target,
    metadata: Json,
    now: i64,
) -> Statement {
    // The sequence subquery sits mid-list: `only_if_exists` rewrites the VALUES list and
    // needs it to end in a plain parameter.
    sql!(
        "INSERT INTO audit_log (id, tenant_id, seq, action, actor_type, actor_id, actor_user_id,
                                target_type, target_id, ip, user_agent, metadata, created_at)
         VALUES (?, ?,
                 MAX(COALESCE((SELECT MAX(seq) FROM audit_log WHERE tenant_id = ?), 0),
                     COALESCE((SELECT sealed_seq FROM audit_chains WHERE tenant_id = ?), 0)) + 1,
                 ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        new_id(),
        tenant_id,
        tenant_id,
        tenant_id,
        action.as_str(),
        actor.kind,
        actor.id.clone(),
        actor.user_id.clone(),
        target.kind,
        target.id,
        actor.client.ip.clone(),
        actor.client.user_agent.clone(),
        metadata.to_string(),
        now
    )
}

/// The statement that records a platform admin's change outside every tenant (the
/// platform's provider keys, the global model catalogue) in `platform_audit_log`. Push it
/// into the batch of the change, guarded like [`entry`].
pub fn platform_entry(
    actor: &Actor,
    action: Action,
    target: Target,
    metadata: Json,
    now: i64,
) -> Statement {
    sql!(
        "INSERT INTO platform_audit_log (id, action, actor_id, target_type, target_id, ip, user_agent,
                                         metadata, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        new_id(),
        action.as_str(),
        actor.id.clone().unwrap_or_default(),
        target.kind,
        target.id,
        actor.client.ip.clone(),
        actor.client.user_agent.clone(),
        metadata.to_string(),
        now
    )
}

/// A guard for `entry(...).only_if_exists(...)`: true when the statement just before it in
/// the batch wrote a row (SQLite's `changes()`). It must directly follow that statement.
pub fn if_changed() -> Statement {
    sql!("SELECT 1 WHERE changes() > 0")
}
