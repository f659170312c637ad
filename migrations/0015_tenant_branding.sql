-- A reseller's own brand (shared/src/tenancy/branding.rs): the name its people see, a logo
-- (an https URL or a small data: image) and an accent colour (#rrggbb, dark enough to carry
-- white text). NULL everywhere means Tollgate's own look.
ALTER TABLE tenants ADD COLUMN brand_name TEXT;
ALTER TABLE tenants ADD COLUMN brand_logo_url TEXT;
ALTER TABLE tenants ADD COLUMN brand_accent TEXT;
