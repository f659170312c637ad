//! Single sign-on with OpenID Connect, per tenant: its owners and admins configure
//! identity providers ([`providers`]: generic OIDC, or presets for Google and Microsoft
//! Entra ID), the email domains whose people join on their first sign-in ([`domains`]),
//! whether members must use SSO, and the role newcomers get. A sign-in is the
//! authorization code flow with PKCE ([`flow`]), its ID token checked in full ([`oidc`]).
//!
//! A tenant that requires SSO refuses its members' passwords (`sessions::check_password`);
//! its owners keep theirs, the way back in should the provider fail.
//!
//! SAML 2.0 is not offered: see `docs/SSO.md` for why and how it would be added.

pub mod domains;
pub mod flow;
pub mod oidc;
pub mod providers;
