-- Signing users in for other applications (OpenID Connect): what a user's profile releases, and how a client
-- uses the authorization endpoint (JSON; NULL for a client that may not).
ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN code_flow TEXT;
