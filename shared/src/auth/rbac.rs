//! Roles, permissions and scopes: the one permission table of the API.
//!
//! A caller may act on a route when its role holds the permission and, for an API key, the
//! key's scopes cover the permission's scope. Users signed in with a password carry their
//! role's scopes (what forward-auth checks, and the most their keys may get); an API key
//! carries the scopes it was given, never more than its owner's role allows.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    auth::forwarded::ForwardedPath,
    db::{FromValue, Value},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// The scopes a password session of this role carries.
    pub fn scopes(self) -> Scopes {
        match self {
            Role::Viewer => Scopes(vec![Scope::parse("*:read").expect("valid scope")]),
            _ => Scopes(vec![Scope::ALL]),
        }
    }

    pub fn holds(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            TenantRead | PlansRead | OwnApiKeysRead | OwnApiKeys | OwnProfile | CreditsRead => true,
            CreditsSpend => self != Role::Viewer,
            UsersRead | UsersManage | InvitationsManage | TenantUpdate | AllApiKeys
            | CreditsManage => {
                matches!(self, Role::Owner | Role::Admin)
            }
            TenantDelete => self == Role::Owner,
            UsageRead => true,
            UsageRecord => self != Role::Viewer,
            UsageReadAll | QuotaManage => matches!(self, Role::Owner | Role::Admin),
            // Endpoint URLs and delivery payloads are the tenant's integration secrets.
            WebhooksRead | WebhooksManage => matches!(self, Role::Owner | Role::Admin),
            AuditRead => matches!(self, Role::Owner | Role::Admin),
            // Reports list every user's consumption and the tenant's credits.
            ReportsRead => matches!(self, Role::Owner | Role::Admin),
            BillingManage => matches!(self, Role::Owner | Role::Admin),
            JobsRead => true,
            JobsSubmit => self != Role::Viewer,
            AllJobs => matches!(self, Role::Owner | Role::Admin),
            WorkersManage => matches!(self, Role::Owner | Role::Admin),
            LlmRead => true,
            LlmCall => self != Role::Viewer,
            // Provider keys are the tenant's credentials; interactions show every user's use.
            LlmManage | LlmInteractionsAll => matches!(self, Role::Owner | Role::Admin),
        }
    }
}

impl FromValue for Role {
    fn from_value(value: &Value) -> Option<Self> {
        String::from_value(value).as_deref().and_then(Role::parse)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs. Each permission also names the scope an API key must hold for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    TenantRead,
    TenantUpdate,
    TenantDelete,
    PlansRead,
    /// Read and edit one's own profile.
    OwnProfile,
    UsersRead,
    UsersManage,
    InvitationsManage,
    /// List one's own API keys.
    OwnApiKeysRead,
    /// Create, change and revoke one's own API keys.
    OwnApiKeys,
    /// List and revoke every API key of the tenant.
    AllApiKeys,
    /// Read one's own balance, ledger and alerts, and the tenant pool's balance.
    CreditsRead,
    /// Reserve credits for work, and settle or release one's own reservations.
    CreditsSpend,
    /// Read every account of the tenant, set allowances, grant to users, change settings.
    CreditsManage,
    /// Read one's own usage and limits.
    UsageRead,
    /// Meter work done for oneself (`POST usage/events`).
    UsageRecord,
    /// Read the tenant's usage and every user's.
    UsageReadAll,
    /// Set or remove a user's quota limits.
    QuotaManage,
    /// Read webhook endpoints and their delivery log.
    WebhooksRead,
    /// Create, change, delete and test webhook endpoints; rotate secrets; redeliver.
    WebhooksManage,
    /// Read and verify the tenant's audit log.
    AuditRead,
    /// Read the tenant's daily and monthly usage reports.
    ReportsRead,
    /// Buy plans and credits, open the billing portal, read invoices.
    BillingManage,
    /// Read the tenant's workers and bots, and one's own jobs.
    JobsRead,
    /// Submit jobs, and cancel one's own.
    JobsSubmit,
    /// Read and cancel every job of the tenant, not only one's own.
    AllJobs,
    /// Create and change workers and bots; create and revoke runner tokens.
    WorkersManage,
    /// List the models one may call, and read one's own LLM interactions.
    LlmRead,
    /// Call models through the gateway (`/v1/chat/completions`).
    LlmCall,
    /// Read every user's LLM interactions, not only one's own.
    LlmInteractionsAll,
    /// Add and remove the tenant's provider keys and models.
    LlmManage,
}

impl Permission {
    pub fn scope(self) -> Scope {
        use Permission::*;
        let (resource, access) = match self {
            TenantRead => ("tenant", Access::Read),
            TenantUpdate | TenantDelete => ("tenant", Access::Write),
            PlansRead => ("plans", Access::Read),
            OwnProfile => ("profile", Access::Read),
            UsersRead => ("users", Access::Read),
            UsersManage | InvitationsManage => ("users", Access::Write),
            OwnApiKeysRead => ("keys", Access::Read),
            OwnApiKeys | AllApiKeys => ("keys", Access::Write),
            CreditsRead => ("credits", Access::Read),
            CreditsSpend | CreditsManage => ("credits", Access::Write),
            UsageRead | UsageReadAll => ("usage", Access::Read),
            UsageRecord => ("usage", Access::Write),
            QuotaManage => ("users", Access::Write),
            WebhooksRead => ("webhooks", Access::Read),
            WebhooksManage => ("webhooks", Access::Write),
            AuditRead => ("audit", Access::Read),
            ReportsRead => ("reports", Access::Read),
            BillingManage => ("billing", Access::Write),
            JobsRead | AllJobs => ("jobs", Access::Read),
            JobsSubmit => ("jobs", Access::Write),
            WorkersManage => ("workers", Access::Write),
            LlmRead | LlmInteractionsAll => ("llm", Access::Read),
            LlmCall | LlmManage => ("llm", Access::Write),
        };
        Scope {
            resource: Resource::Named(resource.to_owned()),
            access,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Write includes read.
    Write,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Any,
    Named(String),
}

/// `resource:access` (`jobs:read`, `jobs:write`, `jobs:*`, `*:read`), or `*` for everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource: Resource,
    pub access: Access,
}

impl Scope {
    pub const ALL: Scope = Scope {
        resource: Resource::Any,
        access: Access::Any,
    };

    pub fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Scope::ALL);
        }
        let (resource, access) = text.split_once(':')?;
        let resource = match resource {
            "*" => Resource::Any,
            name if is_resource_name(name) => Resource::Named(name.to_owned()),
            _ => return None,
        };
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            "*" => Access::Any,
            _ => return None,
        };
        Some(Scope { resource, access })
    }

    /// The scope a request needs: the first segment of its path under `/api/v1/` (or under
    /// the root, for services behind the proxy) as resource, exactly as written, since
    /// proxies route paths case-sensitively (`/COMFY/` is not served by `/comfy/`); reading
    /// methods need read, the others write. `None` when that segment is no resource name.
    pub fn for_request(method: &str, path: &ForwardedPath) -> Option<Self> {
        let segments: Vec<&str> = path.segments().collect();
        let resource = match segments.as_slice() {
            ["api", "v1", rest @ ..] => rest.first()?,
            [first, ..] => first,
            [] => return None,
        };
        if !is_resource_name(resource) {
            return None;
        }
        let access = match method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" | "OPTIONS" => Access::Read,
            _ => Access::Write,
        };
        Some(Scope {
            resource: Resource::Named((*resource).to_owned()),
            access,
        })
    }

    fn covers(&self, needed: &Scope) -> bool {
        let resource = match (&self.resource, &needed.resource) {
            (Resource::Any, _) => true,
            (Resource::Named(held), Resource::Named(wanted)) => held == wanted,
            (Resource::Named(_), Resource::Any) => false,
        };
        let access = matches!(
            (self.access, needed.access),
            (Access::Any, _)
                | (Access::Write, Access::Read | Access::Write)
                | (Access::Read, Access::Read)
        );
        resource && access
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.resource, self.access) {
            (Resource::Any, Access::Any) => f.write_str("*"),
            (resource, access) => {
                let resource = match resource {
                    Resource::Any => "*",
                    Resource::Named(name) => name,
                };
                let access = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Any => "*",
                };
                write!(f, "{resource}:{access}")
            }
        }
    }
}

fn is_resource_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A set of scopes, written space-separated (as in the JWT `scope` claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(pub Vec<Scope>);

impl Scopes {
    /// Parses a list; the first invalid entry is returned as the error.
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes: Vec<Scope> = Vec::new();
        for item in items {
            let scope = Scope::parse(item.trim()).ok_or_else(|| item.to_owned())?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(Scopes(scopes))
    }

    /// Parses a space-separated list as stored; invalid entries (none are ever stored) drop out.
    pub fn parse_stored(text: &str) -> Self {
        Scopes(text.split_whitespace().filter_map(Scope::parse).collect())
    }

    pub fn covers(&self, needed: &Scope) -> bool {
        self.0.iter().any(|scope| scope.covers(needed))
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vec().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(text: &str) -> Scopes {
        Scopes::parse_stored(text)
    }

    fn needed(method: &str, uri: &str) -> Scope {
        Scope::for_request(method, &path(uri)).unwrap()
    }

    fn path(uri: &str) -> ForwardedPath {
        ForwardedPath::parse(uri.as_bytes()).unwrap()
    }

    #[test]
    fn the_wildcard_covers_everything() {
        assert!(scopes("*").covers(&needed("DELETE", "/api/v1/users/1")));
    }

    #[test]
    fn read_does_not_cover_write() {
        let held = scopes("jobs:read");
        assert!(held.covers(&needed("GET", "/api/v1/jobs/42?x=1")));
        assert!(!held.covers(&needed("POST", "/api/v1/jobs")));
    }

    #[test]
    fn write_covers_read_of_the_same_resource_only() {
        let held = scopes("jobs:write");
        assert!(held.covers(&needed("GET", "/api/v1/jobs")));
        assert!(held.covers(&needed("POST", "/api/v1/jobs")));
        assert!(!held.covers(&needed("GET", "/api/v1/users")));
    }

    #[test]
    fn a_resource_wildcard_with_read_covers_every_read() {
        let held = scopes("*:read");
        assert!(held.covers(&needed("GET", "/comfy/history/1")));
        assert!(!held.covers(&needed("PUT", "/comfy/prompt")));
    }

    #[test]
    fn malformed_scopes_are_rejected() {
        for text in ["", "jobs", "jobs:delete", "Jobs:read", ":read", "a b:read"] {
            assert!(Scope::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn scopes_round_trip_through_text() {
        let list = Scopes::parse_list(["jobs:read", "*", "llm:*", "jobs:read"]).unwrap();
        assert_eq!(list.to_string(), "jobs:read * llm:*");
        assert_eq!(Scopes::parse_stored(&list.to_string()), list);
    }

    #[test]
    fn a_request_to_the_root_needs_no_named_scope() {
        assert!(Scope::for_request("GET", &path("/")).is_none());
        assert!(Scope::for_request("GET", &path("/api/v1/")).is_none());
    }

    #[test]
    fn the_resource_is_the_first_segment_after_dot_segments_are_resolved() {
        assert_eq!(
            needed("POST", "/comfy/../llm/v1/chat").to_string(),
            "llm:write"
        );
        assert_eq!(
            needed("GET", "/comfy/%2e%2e/llm/v1").to_string(),
            "llm:read"
        );
        assert_eq!(needed("GET", "//llm/models").to_string(), "llm:read");
        assert_eq!(needed("GET", "/api/v1/jobs/42").to_string(), "jobs:read");
    }

    #[test]
    fn the_resource_is_matched_as_written_not_case_folded() {
        // A proxy routes /COMFY/ elsewhere than /comfy/, so no comfy scope may cover it.
        assert!(Scope::for_request("GET", &path("/COMFY/history")).is_none());
        assert!(Scope::for_request("GET", &path("/Comfy/history")).is_none());
    }

    #[test]
    fn api_v1_is_a_whole_segment_prefix() {
        assert_eq!(needed("GET", "/api/v1jobs/x").to_string(), "api:read");
    }

    #[test]
    fn only_owners_may_delete_the_tenant() {
        assert!(Role::Owner.holds(Permission::TenantDelete));
        assert!(!Role::Admin.holds(Permission::TenantDelete));
        assert!(!Role::Member.holds(Permission::UsersRead));
        assert!(Role::Viewer.holds(Permission::OwnApiKeys));
    }

    #[test]
    fn reports_are_for_owners_and_admins_under_reports_read() {
        assert!(Role::Owner.holds(Permission::ReportsRead));
        assert!(Role::Admin.holds(Permission::ReportsRead));
        assert!(!Role::Member.holds(Permission::ReportsRead));
        assert!(!Role::Viewer.holds(Permission::ReportsRead));
        assert_eq!(Permission::ReportsRead.scope().to_string(), "reports:read");
    }

    #[test]
    fn llm_calls_need_llm_write_and_the_catalogue_an_owner_or_admin() {
        assert!(Role::Member.holds(Permission::LlmCall));
        assert!(!Role::Viewer.holds(Permission::LlmCall));
        assert!(Role::Viewer.holds(Permission::LlmRead));
        assert!(!Role::Member.holds(Permission::LlmManage));
        assert!(!Role::Member.holds(Permission::LlmInteractionsAll));
        assert!(Role::Admin.holds(Permission::LlmManage));
        assert_eq!(Permission::LlmCall.scope().to_string(), "llm:write");
        assert_eq!(Permission::LlmRead.scope().to_string(), "llm:read");
    }

    #[test]
    fn webhooks_are_for_owners_and_admins_under_their_own_scope() {
        assert!(Role::Admin.holds(Permission::WebhooksManage));
        assert!(!Role::Member.holds(Permission::WebhooksRead));
        assert_eq!(
            Permission::WebhooksRead.scope().to_string(),
            "webhooks:read"
        );
        assert_eq!(
            Permission::WebhooksManage.scope().to_string(),
            "webhooks:write"
        );
    }
}
