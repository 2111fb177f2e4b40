-- Clients that authenticate with private_key_jwt keep their public keys.
ALTER TABLE clients ADD COLUMN jwks TEXT;
