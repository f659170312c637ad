//! The actions the audit log records. A closed list, so that a filter can be checked and a
//! typo in a handler does not compile.

macro_rules! actions {
    ($($variant:ident => $name:literal,)+) => {
        /// What an audit entry records; its name is `category.verb`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($variant,)+
        }

        impl Action {
            pub const ALL: &[Action] = &[$(Action::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }
        }
    };
}

actions! {
    AuthLogin => "auth.login",
    AuthLoginFailed => "auth.login_failed",
    AuthPasswordReset => "auth.password_reset",
    AuthPasswordChanged => "auth.password_changed",
    SsoIdentityLinked => "sso.identity_linked",
    SsoProviderCreated => "sso.provider_created",
    SsoProviderDeleted => "sso.provider_deleted",
    SsoDomainAdded => "sso.domain_added",
    SsoDomainVerified => "sso.domain_verified",
    SsoSettingsUpdated => "sso.settings_updated",
    ApiKeyCreated => "apikey.created",
    ApiKeyUpdated => "apikey.updated",
    ApiKeyRevoked => "apikey.revoked",
    UserCreated => "user.created",
    UserUpdated => "user.updated",
    UserDeleted => "user.deleted",
    UserRoleChanged => "user.role_changed",
    InvitationCreated => "invitation.created",
    InvitationAccepted => "invitation.accepted",
    InvitationRevoked => "invitation.revoked",
    TenantCreated => "tenant.created",
    TenantUpdated => "tenant.updated",
    TenantDeleted => "tenant.deleted",
    TenantSuspended => "tenant.suspended",
    TenantReactivated => "tenant.reactivated",
    PlanChanged => "plan.changed",
    CreditsGranted => "credits.granted",
    CreditsAdjusted => "credits.adjusted",
    CreditsAllowanceSet => "credits.allowance_set",
    CreditsRefunded => "credits.refunded",
    CreditsPurchased => "credits.purchased",
    BillingPaymentFailed => "billing.payment_failed",
    WebhookCreated => "webhook.created",
    WebhookUpdated => "webhook.updated",
    WebhookDeleted => "webhook.deleted",
    WebhookSecretRotated => "webhook.secret_rotated",
    JobCancelled => "job.cancelled",
    RunnerTokenCreated => "runner_token.created",
    RunnerTokenRevoked => "runner_token.revoked",
    WorkerCreated => "worker.created",
    WorkerUpdated => "worker.updated",
    BotCreated => "bot.created",
    BotUpdated => "bot.updated",
    BotMoved => "bot.moved",
    BotDeleted => "bot.deleted",
    LlmProviderKeyCreated => "llm_provider_key.created",
    LlmProviderKeyDeleted => "llm_provider_key.deleted",
    LlmModelCreated => "llm_model.created",
    LlmModelUpdated => "llm_model.updated",
    LlmModelDeleted => "llm_model.deleted",
    LlmSettingsUpdated => "llm_settings.updated",
    LlmUserModelsUpdated => "llm_user_models.updated",
}

impl Action {
    /// Whether `filter` names actions: one action (`apikey.revoked`) or a whole category
    /// (`apikey.*`).
    pub fn is_known_filter(filter: &str) -> bool {
        match filter.strip_suffix(".*") {
            Some(category) => Action::ALL
                .iter()
                .any(|action| action.as_str().split('.').next() == Some(category)),
            None => Action::ALL.iter().any(|action| action.as_str() == filter),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn names_are_unique_and_shaped_category_dot_verb() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
        for name in &names {
            let (category, verb) = name.split_once('.').unwrap();
            assert!(!category.is_empty() && !verb.is_empty() && !verb.contains('.'));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }

    #[test]
    fn filters_name_an_action_or_a_category() {
        assert!(Action::is_known_filter("apikey.revoked"));
        assert!(Action::is_known_filter("apikey.*"));
        assert!(!Action::is_known_filter("apikey"));
        assert!(!Action::is_known_filter("apikey.stolen"));
        assert!(!Action::is_known_filter("*"));
        assert!(Action::is_known_filter("worker.*"));
        assert!(Action::is_known_filter("bot.*"));
        assert!(Action::is_known_filter("bot.moved"));
    }
}
