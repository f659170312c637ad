//! Where a tenant's people reach the console, for the links in its mails: its custom
//! domain, else its subdomain of the base domain, else the platform's public URL. The
//! routing that maps such a host back to its tenant is `tenancy::tenants::TenantSelector`.

use crate::config::Config;

/// Where the tenant's people reach the console: its custom domain, else its subdomain of
/// the base domain, else the platform's public URL (scheme and port as the public URL's).
pub fn console_origin(config: &Config, slug: &str, custom_domain: Option<&str>) -> String {
    let host = match (custom_domain, &config.base_domain) {
        (Some(domain), _) => domain.to_owned(),
        (None, Some(base)) => format!("{slug}.{base}"),
        (None, None) => return config.public_url.clone(),
    };
    let public: Option<http::Uri> = config.public_url.parse().ok();
    let scheme = public
        .as_ref()
        .and_then(|uri| uri.scheme_str())
        .unwrap_or("https");
    match public.as_ref().and_then(http::Uri::port_u16) {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// `link`, a page of the platform's console, moved to the tenant's own domain; a link
/// elsewhere is kept as it is.
pub fn on_tenant_domain(
    config: &Config,
    link: &str,
    slug: &str,
    custom_domain: Option<&str>,
) -> String {
    match link.strip_prefix(config.public_url.as_str()) {
        Some(path) if path.starts_with("/console/") => {
            format!("{}{path}", console_origin(config, slug, custom_domain))
        }
        _ => link.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_link_to_the_tenants_own_domain() {
        let mut config = Config::from_lookup(|name| match name {
            "TOLLGATE_JWT_SECRET" => Some("branding-secret-branding-secret-branding".into()),
            "TOLLGATE_PUBLIC_URL" => Some("http://auth.tollgate.test:8080".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            console_origin(&config, "acme", None),
            "http://auth.tollgate.test:8080"
        );
        config.base_domain = Some("tollgate.test".into());
        assert_eq!(
            console_origin(&config, "acme", None),
            "http://acme.tollgate.test:8080"
        );
        assert_eq!(
            console_origin(&config, "acme", Some("studio.acme.example")),
            "http://studio.acme.example:8080"
        );
        assert_eq!(
            on_tenant_domain(
                &config,
                "http://auth.tollgate.test:8080/console/reset-password?token=t",
                "acme",
                None
            ),
            "http://acme.tollgate.test:8080/console/reset-password?token=t"
        );
        let elsewhere = "https://elsewhere.test/console/x";
        assert_eq!(
            on_tenant_domain(&config, elsewhere, "acme", None),
            elsewhere
        );
    }
}
