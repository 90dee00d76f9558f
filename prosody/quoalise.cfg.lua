-- Attaching quoalise-component to Prosody (0.11 or later).
--
-- Add this to /etc/prosody/prosody.cfg.lua (after your VirtualHost "example.org"), or drop it in
-- /etc/prosody/conf.d/quoalise.cfg.lua, then `prosodyctl reload` (or restart Prosody).
-- Replace example.org by your domain, and use the same domain and secret in the component's
-- component.toml:
--
--   [xmpp]
--   domain = "quoalise.example.org"
--   server = "127.0.0.1:5347"
--   # secret: set QUOALISE_XMPP_SECRET, or secret_file, or secret = "..."

-- The XEP-0114 listener. These are global settings: put them in the global section at the top
-- of the file, not under a VirtualHost or Component line. Prosody's defaults are shown: port 5347
-- on the loopback interface only, which is what you want when the component runs on the same
-- machine. Listen on another interface only behind a firewall: the handshake is not encrypted.
component_ports = { 5347 }
component_interfaces = { "127.0.0.1", "::1" }

Component "quoalise.example.org"
	-- The shared secret: long and random, e.g. `openssl rand -hex 32`.
	component_secret = "change-me-to-a-long-random-secret"
	-- Prosody keeps the first connection and refuses a second one for the same domain with a
	-- `conflict` stream error (the default, component_conflict_resolve = "kick_new"); the
	-- second instance (on the same PostgreSQL store) stands by and retries every 2 s, taking
	-- over within seconds of the first one's death: Prosody's high availability is a warm standby.
	-- Components may send larger stanzas than clients; the component pages its answers to
	-- stay under 512 KiB (its [xmpp] max_stanza_size, Prosody's default for components).

-- Federation: for users of other XMPP servers to reach quoalise.example.org,
--  * DNS: the subdomain must resolve to this Prosody, for server-to-server connections:
--      _xmpp-server._tcp.quoalise.example.org. SRV 0 5 5269 xmpp.example.org.
--    or simply an A/AAAA record for quoalise.example.org pointing at this server
--    (the default s2s port 5269 is then used);
--  * TLS: the certificate Prosody presents for the subdomain must cover it: include
--    quoalise.example.org in the certificate (or use a *.example.org wildcard), e.g. with
--    certbot: `certbot certonly -d example.org -d quoalise.example.org`, then
--    `prosodyctl --root cert import /etc/letsencrypt/live`.
-- Local users of example.org need neither: Prosody routes to the component internally.
