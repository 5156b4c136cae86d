--
-- destinations: retl_create_destination, retl_drop_destination.
--
-- Every URL points at 127.0.0.1 port 9 (discard: nothing listens there).
--
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.sqlstate_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

SELECT retl_set_secret('hook_token', 'token-value');
SELECT retl_set_secret('hook_user', 'user-value');

--
-- Valid destinations.
--
-- defaults: no headers, timeout 10 s, one record per request, 8 attempts
SELECT retl_create_destination('plain', 'webhook', 'http://127.0.0.1:9/plain');
-- options null is the same as no options
SELECT retl_create_destination('null_options', 'webhook', 'http://127.0.0.1:9/null', NULL);
-- everything given; upper-case scheme, https, no path
SELECT retl_create_destination('full', 'webhook', 'HTTPS://127.0.0.1:9',
	'{"headers": {"Authorization": "Bearer {{secret:hook_token}}",
	              "X-Basic": "{{secret:hook_user}}:{{secret:hook_token}}",
	              "X-Plain": "no secret here",
	              "X-Empty": ""},
	  "timeout_ms": 2500, "batch_size": 100, "max_attempts": 3}');
-- bounds are inclusive; a whole number written with a fraction or an
-- exponent is accepted; null means the default
SELECT retl_create_destination('low', 'webhook', 'http://127.0.0.1:9/low?x=1#f',
	'{"timeout_ms": 1, "batch_size": 1, "max_attempts": 1}');
SELECT retl_create_destination('high', 'webhook', 'http://127.0.0.1:9/high',
	'{"timeout_ms": 3600000, "batch_size": 1000, "max_attempts": 1000}');
SELECT retl_create_destination('spelled', 'webhook', 'http://127.0.0.1:9/spelled',
	'{"timeout_ms": 2.0e3, "batch_size": 10.0, "max_attempts": null}');
SELECT retl_create_destination('empty_headers', 'webhook', 'http://127.0.0.1:9/e',
	'{"headers": {}}');

SELECT name, kind, url, headers, timeout_ms, batch_size, max_attempts, options
  FROM retl.destinations ORDER BY name;

--
-- Names.
--
SELECT retl_create_destination('plain', 'webhook', 'http://127.0.0.1:9/again');
SELECT retl_create_destination('', 'webhook', 'http://127.0.0.1:9/');
SELECT retl_create_destination(NULL, 'webhook', 'http://127.0.0.1:9/');

--
-- Kind.
--
SELECT retl_create_destination('k', 'kafka', 'http://127.0.0.1:9/');
SELECT retl_create_destination('k', 'Webhook', 'http://127.0.0.1:9/');
SELECT retl_create_destination('k', '', 'http://127.0.0.1:9/');
SELECT retl_create_destination('k', NULL, 'http://127.0.0.1:9/');

--
-- URL.
--
SELECT retl_create_destination('u', 'webhook', 'ftp://127.0.0.1:9/file');
SELECT retl_create_destination('u', 'webhook', 'not a url');
SELECT retl_create_destination('u', 'webhook', '127.0.0.1:9/no-scheme');
SELECT retl_create_destination('u', 'webhook', 'http://');
SELECT retl_create_destination('u', 'webhook', 'http:///path-only');
SELECT retl_create_destination('u', 'webhook', 'http:/127.0.0.1:9/');
SELECT retl_create_destination('u', 'webhook', 'http://127.0.0.1:9/with space');
SELECT retl_create_destination('u', 'webhook', ' http://127.0.0.1:9/');
SELECT retl_create_destination('u', 'webhook', 'http://127.0.0.1:9/	tab');
SELECT retl_create_destination('u', 'webhook', E'http://127.0.0.1:9/\nX-Injected: 1');
SELECT retl_create_destination('u', 'webhook', '');
SELECT retl_create_destination('u', 'webhook', NULL);

--
-- Options.
--
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', '[]');
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', '"headers"');
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', '42');
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', 'null');
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', '{"retries": 3}');
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', '{"Headers": {}}');
SELECT retl_create_destination('o', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": 100, "method": "PUT"}');

--
-- Headers.
--
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": []}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": "X-A: 1"}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": null}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": 1}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": true}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": null}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": ["a"]}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": {"b": "c"}}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": "a\nX-Injected: 1"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": "a\r"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"bad name": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A:": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A\n": "x"}}');
-- headers retl sets itself, in any case
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"content-type": "text/plain"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Content-Type": "text/plain"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Content-Length": "0"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"idempotency-key": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"IDEMPOTENCY-KEY": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"webhook-id": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Webhook-Id": "x"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Host": "example.com"}}');
SELECT retl_create_destination('h_te', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Transfer-Encoding": "chunked"}}');
SELECT retl_create_destination('h_conn', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"connection": "close"}}');
SELECT retl_create_destination('h_expect', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Expect": "100-continue"}}');
SELECT retl_create_destination('h_sig', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"webhook-signature": "v1,x"}}');
-- the header auth sets is auth's alone (any case); another header beside auth is fine
SELECT retl_create_destination('h_bearer', 'webhook', 'http://127.0.0.1:9/',
	'{"auth": {"type": "bearer", "token": "{{secret:hook_token}}"}, "headers": {"Authorization": "Bearer {{secret:hook_token}}"}}');
SELECT retl_create_destination('h_basic', 'webhook', 'http://127.0.0.1:9/',
	'{"auth": {"type": "basic", "username": "me", "password": "{{secret:hook_token}}"}, "headers": {"authorization": "Basic eA=="}}');
SELECT retl_create_destination('h_key', 'webhook', 'http://127.0.0.1:9/',
	'{"auth": {"type": "header", "name": "X-Api-Key", "value": "{{secret:hook_token}}"}, "headers": {"x-api-key": "k"}}');
SELECT retl_create_destination('h_key_ct', 'webhook', 'http://127.0.0.1:9/',
	'{"auth": {"type": "header", "name": "Content-Type", "value": "{{secret:hook_token}}"}}');
SELECT retl_create_destination('h_ok', 'webhook', 'http://127.0.0.1:9/',
	'{"auth": {"type": "header", "name": "X-Api-Key", "value": "{{secret:hook_token}}"}, "headers": {"Authorization": "Token t"}}');
-- a User-Agent of one's own replaces retl's
SELECT retl_create_destination('h_ua', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"User-Agent": "mine/1"}}');
SELECT name, headers FROM retl.destinations WHERE name LIKE 'h\_%' ORDER BY name;
SELECT retl_drop_destination('h_ok');
SELECT retl_drop_destination('h_ua');
-- secrets must exist
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Authorization": "Bearer {{secret:nope}}"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": "{{secret:zz_missing}}", "X-B": "{{secret:hook_token}}{{secret:aa_missing}}"}}');
SELECT retl_create_destination('h', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": "{{secret:HOOK_TOKEN}}"}}');

--
-- timeout_ms, batch_size, max_attempts: whole numbers in range.
--
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": "100"}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": true}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": [100]}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": 1.5}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": 0}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": -1}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": 3600001}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": 1e100}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"batch_size": "10"}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"batch_size": {}}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"batch_size": 2.5}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"batch_size": 0}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"batch_size": 1001}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"max_attempts": false}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"max_attempts": 0.1}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"max_attempts": 0}');
SELECT retl_create_destination('n', 'webhook', 'http://127.0.0.1:9/', '{"max_attempts": 1001}');

-- none of the failures left a row behind
SELECT count(*) AS destinations FROM retl.destinations;

--
-- Drop.
--
SELECT retl_drop_destination('no_such_destination');
SELECT retl_drop_destination(NULL);
SELECT retl_drop_destination('PLAIN');

-- a destination used by syncs cannot be dropped
CREATE TABLE dest_src (id integer PRIMARY KEY);
BEGIN;
SELECT retl_create_sync('dest_sync_b', 'dest_src', 'plain');
SELECT retl_create_sync('dest_sync_a', 'dest_src', 'plain');
SELECT retl_pause_sync('dest_sync_a');
SELECT retl_pause_sync('dest_sync_b');
SELECT retl_drop_destination('plain');
ROLLBACK;
-- once its sync is dropped, it can
BEGIN;
SELECT retl_create_sync('dest_sync', 'dest_src', 'plain');
SELECT retl_pause_sync('dest_sync');
SELECT retl_drop_sync('dest_sync');
SELECT retl_drop_destination('plain');
SELECT count(*) FROM retl.destinations WHERE name = 'plain';
ROLLBACK;
DROP TABLE dest_src;

SELECT retl_drop_destination('plain');
SELECT retl_drop_destination('plain');
-- the name can be used again
SELECT retl_create_destination('plain', 'webhook', 'http://127.0.0.1:9/plain-again');
SELECT name, url FROM retl.destinations WHERE name = 'plain';

--
-- The error codes.
--
SELECT stmt, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
	($$SELECT retl_create_destination('plain', 'webhook', 'http://127.0.0.1:9/')$$),
	($$SELECT retl_create_destination('', 'webhook', 'http://127.0.0.1:9/')$$),
	($$SELECT retl_create_destination('x', 'kafka', 'http://127.0.0.1:9/')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'ftp://127.0.0.1:9/')$$),
	($$SELECT retl_create_destination('x', 'webhook', NULL)$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '[]')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"retries": 3}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"headers": []}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"bad name": "x"}}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": 1}}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"Host": "x"}}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"headers": {"X-A": "{{secret:nope}}"}}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"timeout_ms": "1"}')$$),
	($$SELECT retl_create_destination('x', 'webhook', 'http://127.0.0.1:9/', '{"batch_size": 1001}')$$),
	($$SELECT retl_drop_destination('no_such_destination')$$)
  ) v(stmt);

--
-- Clean up.
--
SELECT retl_drop_destination(name) FROM retl.destinations ORDER BY name;
SELECT retl_drop_secret('hook_token');
SELECT retl_drop_secret('hook_user');
SELECT count(*) AS destinations FROM retl.destinations;
SELECT count(*) AS secrets FROM retl.secrets;

--
-- Delivery engine options: concurrency, rate, linger, batch bytes, retry age.
--
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_concurrency": 0}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_concurrency": 257}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_concurrency": "8"}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"rate_limit": -1}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"rate_limit": "fast"}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"rate_limit": 100001}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"linger_ms": -1}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"linger_ms": 60001}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_batch_bytes": 100}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_retry_age": "soon"}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_retry_age": 0}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_retry_age": "500 milliseconds"}');
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e', '{"max_retry_age": true}');
SELECT count(*) FROM retl.destinations WHERE name = 'eng';
-- defaults
SELECT retl_create_destination('eng_default', 'webhook', 'http://127.0.0.1:9/e');
SELECT max_attempts, max_retry_age, max_concurrency, rate_limit, linger_ms, max_batch_bytes
  FROM retl.destinations WHERE name = 'eng_default';
-- given values
SELECT retl_create_destination('eng', 'webhook', 'http://127.0.0.1:9/e',
  '{"max_concurrency": 32, "rate_limit": 0.5, "linger_ms": 0, "max_batch_bytes": 65536,
    "max_retry_age": "6 hours", "max_attempts": 100}');
SELECT retl_create_destination('eng_seconds', 'webhook', 'http://127.0.0.1:9/e', '{"max_retry_age": 90}');
SELECT name, max_attempts, max_retry_age, max_concurrency, rate_limit, linger_ms, max_batch_bytes
  FROM retl.destinations WHERE name LIKE 'eng%' ORDER BY name COLLATE "C";
SELECT retl_drop_destination('eng');
SELECT retl_drop_destination('eng_default');
SELECT retl_drop_destination('eng_seconds');

--
-- Outbound options: follow_redirects, tls_verify, signing_secret.
--
SELECT retl_set_secret('sign_key', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT retl_create_destination('out', 'webhook', 'http://127.0.0.1:9/o', '{"follow_redirects": "yes"}');
SELECT retl_create_destination('out', 'webhook', 'http://127.0.0.1:9/o', '{"tls_verify": 0}');
SELECT retl_create_destination('out', 'webhook', 'http://127.0.0.1:9/o', '{"signing_secret": 5}');
SELECT retl_create_destination('out', 'webhook', 'http://127.0.0.1:9/o', '{"signing_secret": "nope"}');
SELECT retl_create_destination('out', 'webhook', 'http://127.0.0.1:9/o',
	'{"headers": {"Webhook-Signature": "v1,forged"}}');
SELECT retl_create_destination('out', 'webhook', 'http://127.0.0.1:9/o',
	'{"headers": {"webhook-timestamp": "0"}}');
SELECT count(*) FROM retl.destinations WHERE name = 'out';
-- a URL the check cannot parse
SELECT retl_create_destination('out', 'webhook', 'http://[::1:9/o');
-- defaults, then given values (turning verification off: superuser only)
SELECT retl_create_destination('out_default', 'webhook', 'https://127.0.0.1:9/o');
SELECT retl_create_destination('out', 'webhook', 'https://127.0.0.1:9/o',
	'{"follow_redirects": true, "tls_verify": false, "signing_secret": "sign_key"}');
SELECT name, follow_redirects, tls_verify, signing_secret
  FROM retl.destinations WHERE name LIKE 'out%' ORDER BY name COLLATE "C";
-- a signing secret in use cannot be dropped
SELECT retl_drop_secret('sign_key');
SELECT retl_drop_destination('out');
SELECT retl_drop_destination('out_default');
SELECT retl_drop_secret('sign_key');

--
-- Standard Webhooks signatures: the specification's published example
-- (secret, message id, timestamp, body); the "whsec_" prefix is optional.
--
SELECT retl._webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
	'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
SELECT retl._webhook_signature('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
	'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')
	= 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS matches_the_specification;
-- any change of id, timestamp or body changes it
SELECT retl._webhook_signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
	'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265331, '{"test": 2432232314}')
	<> 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS timestamp_signed;
SELECT retl._webhook_signature('whsec_not base64!', 'id', 1, '{}');
SELECT retl._webhook_signature('whsec_', 'id', 1, '{}');
