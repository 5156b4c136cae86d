--
-- secrets: retl_set_secret, retl_drop_secret, and that no output shows a
-- secret's value.
--
\set SHOW_CONTEXT never

-- SQLSTATE of a statement that should fail ('ok' when it does not)
CREATE FUNCTION pg_temp.sqlstate_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

--
-- Set and replace.
--
SELECT retl_set_secret('api_token', 'first-value');
SELECT name, value = 'first-value' AS is_first, updated_at = created_at AS never_updated
  FROM retl.secrets ORDER BY name;

SELECT retl_set_secret('api_token', 'second-value');
SELECT name, value = 'second-value' AS is_second, updated_at >= created_at AS updated_later
  FROM retl.secrets ORDER BY name;

-- names use letters, digits, "_", "." and "-"; they are case sensitive
SELECT retl_set_secret('Api-Key.v2_0', 'key-value-1');
SELECT retl_set_secret('API_TOKEN', 'other-value-2');
SELECT name FROM retl.secrets ORDER BY name COLLATE "C";

-- a value may hold anything but nothing: spaces, quotes, braces, non-ASCII
SELECT retl_set_secret('odd', E' a "b" {{c}} \\ é ');
SELECT value = E' a "b" {{c}} \\ é ' AS kept FROM retl.secrets WHERE name = 'odd';

--
-- Bad input.  The value never appears in an error.
--
SELECT retl_set_secret('', 'x');
SELECT retl_set_secret(NULL, 'x');
SELECT retl_set_secret('has space', 'secret-in-error?');
SELECT retl_set_secret('a/b', 'x');
SELECT retl_set_secret('{{secret:x}}', 'x');
SELECT retl_set_secret('tab	name', 'x');
SELECT retl_set_secret(E'line\nbreak', 'x');
SELECT retl_set_secret('café', 'x');
SELECT retl_set_secret('new_secret', '');
SELECT retl_set_secret('new_secret', NULL);
SELECT retl_set_secret(NULL, NULL);
-- a refused replacement keeps the old value
SELECT retl_set_secret('api_token', '');
SELECT value = 'second-value' AS unchanged FROM retl.secrets WHERE name = 'api_token';
-- nothing was added by the failures
SELECT count(*) FROM retl.secrets;

SELECT retl_drop_secret('no_such_secret');
SELECT retl_drop_secret(NULL);
SELECT retl_drop_secret('API_Token');

--
-- A secret used by a destination cannot be dropped.
--
SELECT retl_create_destination('uses_token', 'webhook', 'http://127.0.0.1:9/secrets',
	'{"headers": {"Authorization": "Bearer {{secret:api_token}}",
	              "X-Key": "{{secret:Api-Key.v2_0}}:{{secret:api_token}}"}}');
SELECT retl_create_destination('also_uses_token', 'webhook', 'http://127.0.0.1:9/secrets',
	'{"headers": {"X-Token": "{{secret:api_token}}"}}');

SELECT retl_drop_secret('api_token');
SELECT retl_drop_secret('Api-Key.v2_0');
SELECT name FROM retl.secrets ORDER BY name COLLATE "C";

-- a secret can still be replaced while in use
SELECT retl_set_secret('api_token', 'third-value');
SELECT value = 'third-value' AS replaced FROM retl.secrets WHERE name = 'api_token';

--
-- No output shows a value: the destination keeps the reference, the
-- views do not read retl.secrets, the functions return nothing.
--
SELECT name, headers FROM retl.destinations ORDER BY name;
-- (secret_names shows names and times only)
SELECT c.relname AS view, pg_get_viewdef(c.oid) LIKE '%value%' AS reads_values
  FROM pg_class c
 WHERE c.relnamespace = 'retl'::regnamespace AND c.relkind = 'v'
   AND pg_get_viewdef(c.oid) LIKE '%secrets%';
SELECT name, updated_at > created_at AS rotated FROM retl.secret_names ORDER BY name;
SELECT count(*) AS rows_showing_a_value
  FROM (SELECT s::text AS t FROM retl.sync_status s
        UNION ALL SELECT d::text FROM retl.dead_letters d
        UNION ALL SELECT n::text FROM retl.secret_names n
        UNION ALL SELECT d::text FROM retl.destinations d) x,
       retl.secrets sec
 WHERE strpos(x.t, sec.value) > 0;

-- after its destinations are gone the secret can be dropped
SELECT retl_drop_destination('uses_token');
SELECT retl_drop_secret('api_token');
SELECT retl_drop_destination('also_uses_token');
SELECT retl_drop_secret('api_token');
SELECT retl_drop_secret('api_token');
SELECT retl_drop_secret('Api-Key.v2_0');
SELECT retl_drop_secret('API_TOKEN');
SELECT retl_drop_secret('odd');
SELECT count(*) AS secrets_left FROM retl.secrets;

--
-- The error codes.
--
SELECT retl_set_secret('in_use', 'x');
SELECT retl_create_destination('uses_in_use', 'webhook', 'http://127.0.0.1:9/',
	'{"headers": {"X-A": "{{secret:in_use}}"}}');
SELECT stmt, pg_temp.sqlstate_of(stmt) AS sqlstate
  FROM (VALUES
	($$SELECT retl_set_secret('', 'x')$$),
	($$SELECT retl_set_secret(NULL, 'x')$$),
	($$SELECT retl_set_secret('a b', 'x')$$),
	($$SELECT retl_set_secret('ok', '')$$),
	($$SELECT retl_set_secret('ok', NULL)$$),
	($$SELECT retl_drop_secret('no_such_secret')$$),
	($$SELECT retl_drop_secret(NULL)$$),
	($$SELECT retl_drop_secret('in_use')$$)
  ) v(stmt);
SELECT retl_drop_destination('uses_in_use');
SELECT retl_drop_secret('in_use');
SELECT count(*) AS secrets_left FROM retl.secrets;
