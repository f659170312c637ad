//! A tenant's own brand, for resellers that sell under their name: the name its people
//! see, a logo and an accent colour. The console shows it when reached through the
//! tenant's subdomain or custom domain (before sign-in) and to the tenant's people after
//! it; the tenant's mails are sent under its name and link to its own domain
//! ([`crate::mail::links`]).
//!
//! The accent colour must carry white text at WCAG's 4.5:1 contrast, because the console
//! draws buttons in it with white labels and links in it on white: a reseller cannot make
//! its console unreadable. A logo is an `https://` URL or a small `data:` image, so a
//! console page never loads script or styles from elsewhere.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::ApiRequest,
    db::Row,
    error::ApiResult,
    ids::TenantId,
    sql,
    tenancy::{parse_display_name, tenants::TenantSelector},
};

/// The columns [`Branding::from_row`] reads (with `slug`, `name`, `custom_domain`).
pub(crate) const BRANDING_COLUMNS: &str = "brand_name, brand_logo_url, brand_accent";

/// The largest `data:` logo accepted, encoded.
const DATA_LOGO_LIMIT: usize = 64 * 1024;
const URL_LOGO_LIMIT: usize = 2048;
/// WCAG 2's minimum contrast for normal text.
const MINIMUM_CONTRAST: f64 = 4.5;

/// What a tenant's people see: its brand, or its own name and Tollgate's look.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Branding {
    pub name: String,
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub accent: Option<String>,
}

impl Branding {
    /// From a row with `name` and [`BRANDING_COLUMNS`].
    pub(crate) fn from_row(row: &Row<'_>) -> ApiResult<Self> {
        let brand: Option<String> = row.get("brand_name")?;
        Ok(Self {
            name: match brand {
                Some(brand) => brand,
                None => row.get("name")?,
            },
            logo_url: row.get("brand_logo_url")?,
            accent: row.get("brand_accent")?,
        })
    }

    /// The brand of the tenant whose subdomain or custom domain the request came to, if
    /// the host names an active one.
    pub async fn for_host(env: &Env, request: &ApiRequest) -> ApiResult<Option<Self>> {
        let Ok(selector) = TenantSelector::from_request(env, request, None) else {
            return Ok(None);
        };
        let rows = env
            .db
            .execute(selector.bind(sql!(format!(
                "SELECT name, {BRANDING_COLUMNS} FROM tenants t
                 WHERE (t.slug = ? OR t.custom_domain = ?) AND t.status = 'active'"
            ))))
            .await?;
        rows.first().map(|row| Self::from_row(&row)).transpose()
    }

    /// The brand of `tenant`.
    pub async fn of_tenant(env: &Env, tenant: &TenantId) -> ApiResult<Self> {
        let rows = env
            .db
            .execute(sql!(
                format!("SELECT name, {BRANDING_COLUMNS} FROM tenants WHERE id = ?"),
                tenant
            ))
            .await?;
        rows.first()
            .map(|row| Self::from_row(&row))
            .ok_or_else(|| ApiError::not_found("tenant"))?
    }
}

/// How `GET tenant` shows the brand as stored (`null` where the tenant set none).
pub(crate) fn branding_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "display_name": row.get::<Option<String>>("brand_name")?,
        "logo_url": row.get::<Option<String>>("brand_logo_url")?,
        "accent_color": row.get::<Option<String>>("brand_accent")?,
    }))
}

/// The `branding` of `PUT tenant`: it replaces the three at once; a field left out or
/// `null` goes back to Tollgate's default.
#[derive(Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct BrandingUpdate {
    display_name: Option<String>,
    logo_url: Option<String>,
    accent_color: Option<String>,
}

/// A checked [`BrandingUpdate`]: the values to store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StoredBranding {
    pub name: Option<String>,
    pub logo_url: Option<String>,
    pub accent: Option<String>,
}

impl BrandingUpdate {
    pub(crate) fn check(&self) -> ApiResult<StoredBranding> {
        let present = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        Ok(StoredBranding {
            name: present(&self.display_name)
                .map(|name| parse_display_name("branding.display_name", &name))
                .transpose()?,
            logo_url: present(&self.logo_url)
                .map(|logo| parse_logo(&logo))
                .transpose()?,
            accent: present(&self.accent_color)
                .map(|accent| parse_accent(&accent))
                .transpose()?,
        })
    }
}

fn parse_logo(text: &str) -> ApiResult<String> {
    const FIELD: &str = "branding.logo_url";
    if let Some(data) = text.strip_prefix("data:") {
        let image = [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "image/svg+xml",
        ]
        .iter()
        .find_map(|kind| data.strip_prefix(kind)?.strip_prefix(";base64,"));
        let Some(encoded) = image else {
            return Err(ApiError::invalid_field(
                FIELD,
                "a data: logo must be a base64 PNG, JPEG, GIF, WebP or SVG image",
            ));
        };
        if text.len() > DATA_LOGO_LIMIT {
            return Err(ApiError::invalid_field(
                FIELD,
                format!(
                    "a data: logo may be at most {DATA_LOGO_LIMIT} bytes; link a larger one by https URL"
                ),
            ));
        }
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| ApiError::invalid_field(FIELD, "the data: logo is not valid base64"))?;
        return Ok(text.to_owned());
    }
    let uri: Option<http::Uri> = text.parse().ok();
    let valid = text.len() <= URL_LOGO_LIMIT
        && !text.contains(['"', '\'', '<', '>', '\\', ' '])
        && uri.is_some_and(|uri| uri.scheme_str() == Some("https") && uri.host().is_some());
    if !valid {
        return Err(ApiError::invalid_field(
            FIELD,
            "must be an https:// URL of an image, or a data: image",
        ));
    }
    Ok(text.to_owned())
}

fn parse_accent(text: &str) -> ApiResult<String> {
    const FIELD: &str = "branding.accent_color";
    let colour = text.to_ascii_lowercase();
    let channels = colour
        .strip_prefix('#')
        .filter(|hex| hex.len() == 6)
        .and_then(|hex| hex::decode(hex).ok());
    let Some(channels) = channels else {
        return Err(ApiError::invalid_field(
            FIELD,
            "must be a colour like #1d4ed8",
        ));
    };
    let contrast = contrast_with_white(&channels);
    if contrast < MINIMUM_CONTRAST {
        return Err(ApiError::invalid_field(
            FIELD,
            format!(
                "is too light: white text on it has a contrast of {contrast:.1}:1, and at least {MINIMUM_CONTRAST}:1 is needed; choose a darker shade"
            ),
        ));
    }
    Ok(colour)
}

/// WCAG 2's contrast ratio between white and the sRGB colour `channels`.
fn contrast_with_white(channels: &[u8]) -> f64 {
    let linear = |channel: u8| {
        let value = f64::from(channel) / 255.0;
        if value <= 0.04045 {
            value / 12.92
        } else {
            ((value + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance =
        0.2126 * linear(channels[0]) + 0.7152 * linear(channels[1]) + 0.0722 * linear(channels[2]);
    1.05 / (luminance + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(display_name: &str, logo_url: &str, accent_color: &str) -> BrandingUpdate {
        BrandingUpdate {
            display_name: Some(display_name.into()),
            logo_url: Some(logo_url.into()),
            accent_color: Some(accent_color.into()),
        }
    }

    #[test]
    fn a_dark_accent_a_logo_and_a_name_are_kept() {
        let stored = update(
            " Pixel Forge ",
            "https://cdn.pixel.test/logo.svg",
            "#0B5D1E",
        )
        .check()
        .unwrap();
        assert_eq!(
            stored,
            StoredBranding {
                name: Some("Pixel Forge".into()),
                logo_url: Some("https://cdn.pixel.test/logo.svg".into()),
                accent: Some("#0b5d1e".into()),
            }
        );
        let small_png = "data:image/png;base64,iVBORw0KGgo=";
        assert_eq!(
            update("P", small_png, "#000000").check().unwrap().logo_url,
            Some(small_png.into())
        );
    }

    #[test]
    fn empty_fields_fall_back_to_the_default() {
        assert_eq!(
            update("", " ", "").check().unwrap(),
            StoredBranding {
                name: None,
                logo_url: None,
                accent: None
            }
        );
    }

    #[test]
    fn a_light_accent_is_refused_with_its_contrast() {
        let error = update("P", "", "#ffd700").check().unwrap_err();
        assert_eq!(error.status, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.message.contains("1.4:1"), "{}", error.message);
        // Tollgate's own blue passes; pure white, and not-a-colour, do not.
        assert!(update("P", "", "#1d4ed8").check().is_ok());
        for bad in ["#ffffff", "blue", "#12345", "#12345g", "1d4ed8"] {
            assert!(update("P", "", bad).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_logo_is_an_https_url_or_a_small_data_image() {
        for bad in [
            "http://cdn.test/logo.png",
            "javascript:alert(1)",
            "https://cdn.test/logo.png\" onload=\"x",
            "data:text/html;base64,PHA+",
            "data:image/png;base64,not base64!",
            "/logo.png",
        ] {
            assert!(update("P", bad, "").check().is_err(), "{bad}");
        }
        let huge = format!("data:image/png;base64,{}", "A".repeat(DATA_LOGO_LIMIT));
        assert!(update("P", &huge, "").check().is_err());
    }
}
