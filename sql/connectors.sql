--
-- connectors: the http connector's options and every destination's auth,
-- checked at creation: bad ones are refused and nothing is created.
--
-- Every URL points at 127.0.0.1 port 9 (discard: nothing listens there).
--
\set SHOW_CONTEXT never

SELECT retl_set_secret('conn_token', 'token-value');
CREATE TABLE conn_people (id int PRIMARY KEY, email text, name text);

--
-- auth
--
SELECT retl_create_destination('a_bearer', 'http', 'http://127.0.0.1:9',
	'{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('a_basic', 'webhook', 'http://127.0.0.1:9',
	'{"auth": {"type": "basic", "username": "me", "password": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('a_header', 'http', 'http://127.0.0.1:9',
	'{"auth": {"type": "header", "name": "X-Api-Key", "value": "{{secret:conn_token}}"}}');
-- a credential written out, not as a secret
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "abc"}}');
-- a secret that does not exist
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "{{secret:nope}}"}}');
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"type": "digest"}}');
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": "bearer"}');
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}", "extra": "x"}}');
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "password": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"auth": {"type": "header", "name": "Bad Name", "value": "{{secret:conn_token}}"}}');
-- a kind's own option on another kind
SELECT retl_create_destination('bad', 'http', 'http://127.0.0.1:9', '{"signing_secret": "conn_token"}');
SELECT name FROM retl.destinations WHERE name = 'bad';
-- a secret a destination's auth uses cannot be dropped
SELECT retl_drop_secret('conn_token');

--
-- http sync options
--
SELECT retl_create_destination('c_http', 'http', 'http://127.0.0.1:9');
SELECT retl_create_destination('c_batch', 'http', 'http://127.0.0.1:9', '{"batch_size": 10}');
-- good: every part, a delete, a success rule, a remembered id
SELECT retl_create_sync('c_rest', 'conn_people', 'c_http', options => $${
	"request": {"method": "PUT", "path": "format('/users/%s', retl_urlencode(key->>'id'))",
	            "body": "jsonb_build_object('email', data->>'email')",
	            "headers": {"X-Trace": "record_id", "X-Version": "'2'"}},
	"delete": {"method": "DELETE", "path": "format('/users/%s', key->>'id')"},
	"success": "status BETWEEN 200 AND 299 AND (response IS NULL OR NOT response ? 'errors')",
	"remember": "response->>'id'"}$$);
-- good: a batch whose body aggregates
SELECT retl_create_sync('c_bulk', 'conn_people', 'c_batch', options => $${
	"request": {"path": "'/bulk'", "body": "jsonb_build_object('items', jsonb_agg(data))"}}$$);
-- a sync may lower its destination's batch_size, not raise it
SELECT retl_create_sync('c_small', 'conn_people', 'c_batch', options => '{"batch_size": 2}');
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => '{"batch_size": 2}');
-- a typo in an expression is an error now, not a dead letter later
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"body": "daat->>'email'"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"body": "jsonb_build_objekt('a', 1)"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"success": "status = 'ok'"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"success": "data IS NULL"}$$);
-- one expression, not SQL of its own
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"body": "1) FROM pg_roles --"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"body": "1); DROP TABLE conn_people; SELECT (1"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"path": ""}}$$);
-- a batch: the path may not depend on one record; the body must aggregate
SELECT retl_create_sync('bad', 'conn_people', 'c_batch', options => $${"request": {"path": "'/u/' || (key->>'id')", "body": "jsonb_agg(data)"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_batch', options => $${"request": {"body": "data"}}$$);
-- a batch's answer read record by record (n: the record's place in the batch)
SELECT retl_create_sync('c_per_record', 'conn_people', 'c_batch', options => $${
	"request": {"body": "jsonb_build_object('items', jsonb_agg(data ORDER BY record_id))"},
	"success": "response->'results'->((n - 1)::int)->>'status' = 'ok'",
	"remember": "response->'results'->((n - 1)::int)->>'id'"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_batch', options => $${"success": "nn > 0"}$$);
-- the shape of the options
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"method": "BREW"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"verb": "PUT"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": "PUT /users"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"method": "GET", "body": "data"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"headers": {"Content-Type": "'text/plain'"}}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"request": {"headers": {"X-A": 1}}}$$);
-- headers retl sets, or the destination does (its auth's, its headers)
SELECT retl_create_sync('bad_expect', 'conn_people', 'c_http', options => $${"request": {"headers": {"expect": "'100-continue'"}}}$$);
SELECT retl_create_sync('bad_te', 'conn_people', 'c_http', options => $${"delete": {"method": "DELETE", "headers": {"Transfer-Encoding": "'chunked'"}}}$$);
SELECT retl_create_sync('bad_auth', 'conn_people', 'a_bearer', options => $${"request": {"headers": {"authorization": "'Bearer x'"}}}$$);
SELECT retl_create_sync('bad_key', 'conn_people', 'a_header', options => $${"delete": {"method": "DELETE", "headers": {"X-API-KEY": "'k'"}}}$$);
SELECT retl_create_destination('c_team', 'http', 'http://127.0.0.1:9', '{"headers": {"X-Team": "growth"}}');
SELECT retl_create_sync('bad_team', 'conn_people', 'c_team', options => $${"request": {"headers": {"x-team": "'other'"}}}$$);
SELECT name FROM retl.syncs WHERE name LIKE 'bad\_%';
SELECT retl_drop_destination('c_team');
SELECT retl_create_sync('bad', 'conn_people', 'c_http', options => $${"requets": {}}$$);
-- a webhook sync has no request options
SELECT retl_create_destination('c_hook', 'webhook', 'http://127.0.0.1:9');
SELECT retl_create_sync('bad', 'conn_people', 'c_hook', options => $${"request": {}}$$);
SELECT name FROM retl.syncs WHERE name = 'bad';
-- the connector's own options are kept with the sync
SELECT name, options ? 'request' AS has_request FROM retl.syncs WHERE name LIKE 'c\_%' ORDER BY name;

--
-- computed fields: "field": {"sql": "expression over the source's row"}
--
SELECT retl_create_sync('c_computed', 'conn_people', 'c_hook',
	mapping => $${"email": "email", "email_lower": {"sql": "lower(email)"}, "label": {"sql": "format('%s <%s>', name, email)"}}$$);
SELECT retl_create_sync('c_computed_q', 'SELECT id, email FROM conn_people', 'c_hook', key => '{id}', schedule => 'manual',
	mapping => $${"domain": {"sql": "split_part(email, '@', 2)"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_hook', mapping => $${"x": {"sql": "lower(emial)"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_hook', mapping => $${"x": {"sql": "1) FROM pg_authid --"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_hook', mapping => $${"x": {"expr": "1"}}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_hook', mapping => $${"email": "x", "x": {"sql": "1"}}$$);
SELECT retl_create_sync('c_computed_a', 'conn_people', 'c_hook', mode => 'append', mapping => $${"x": {"sql": "lower(email)"}}$$);
SELECT retl_create_sync('bad', 'SELECT id FROM conn_people', 'c_hook', key => '{id}', schedule => 'manual',
	mapping => $${"x": {"sql": "upper(email)"}}$$);
SELECT name FROM retl.syncs WHERE name = 'bad';

--
-- slack: its address known, its options checked
--
SELECT retl_create_destination(name => 'c_slack', kind => 'slack');
SELECT url, rate_limit, max_concurrency, batch_size FROM retl.destinations WHERE name = 'c_slack';
SELECT retl_create_sync('c_slack_events', 'conn_people', 'c_slack', mode => 'append',
	options => $${"channel": "#alerts", "text": "format('new: %s', data->>'name')"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_slack', mode => 'append', options => $${"text": "'x'"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_slack', mode => 'append', options => $${"channel": "#a"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_slack', mode => 'append', options => $${"channel": "#a", "text": "naem"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_slack', mode => 'append', options => $${"channel": "#a", "text": "'x'", "color": "red"}$$);
SELECT retl_create_sync('bad', 'conn_people', 'c_slack', options => $${"channel": "#a", "text": "'x'"}$$);
SELECT retl_create_destination('bad', 'webhook');
SELECT name FROM retl.syncs WHERE name = 'bad';

--
-- hubspot, salesforce, marketo: limits as defaults, options checked
--
SELECT retl_create_destination('c_hubspot', 'hubspot', options => '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
-- OAuth without a token_url: HubSpot's, under the url
SELECT retl_create_destination('c_hubspot_oauth', 'hubspot', options => '{"auth": {"type": "oauth2",
	"grant_type": "refresh_token", "client_id": "app", "client_secret": "{{secret:conn_token}}", "refresh_token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('c_sf', 'salesforce', 'http://127.0.0.1:9', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}"}, "api_version": "v61.0"}');
SELECT retl_create_destination('c_mkto', 'marketo', 'http://127.0.0.1:9', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}"}}');
SELECT name, kind, url, batch_size, rate_limit, max_concurrency, max_batch_bytes FROM retl.destinations
	WHERE name IN ('c_hubspot', 'c_hubspot_oauth', 'c_sf', 'c_mkto') ORDER BY name;
-- salesforce and marketo: no default url, OAuth needed, a REST API version
SELECT retl_create_destination('bad', 'salesforce', options => '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'salesforce', 'http://127.0.0.1:9');
SELECT retl_create_destination('bad', 'salesforce', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "me", "password": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'salesforce', 'http://127.0.0.1:9', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}"}, "api_version": "62.0"}');
SELECT retl_create_destination('bad', 'salesforce', 'http://127.0.0.1:9', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}"}, "api_version": "v45.0"}');
SELECT retl_create_destination('bad', 'salesforce', 'http://127.0.0.1:9', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}", "token_url": "ftp://x"}}');
SELECT retl_create_destination('bad', 'marketo', 'http://127.0.0.1:9');
SELECT retl_create_destination('bad', 'marketo', 'http://127.0.0.1:9', '{"auth": {"type": "oauth2",
	"grant_type": "client_credentials", "client_id": "app", "client_secret": "{{secret:conn_token}}"}, "batch_size": 301}');
SELECT retl_create_destination('bad', 'hubspot', options => '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}, "region": "eu"}');
-- sync options
SELECT retl_create_sync('c_hs_people', 'conn_people', 'c_hubspot', options => '{"object": "contacts", "id_property": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_hubspot', options => '{"object": "contacts"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_hubspot', mapping => '{"email": "mail"}', options => '{"object": "contacts", "id_property": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_hubspot', options => '{"object": "contacts", "id_property": "email", "list_id": "42"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_hubspot', mode => 'append', options => '{"object": "contacts", "id_property": "email"}');
SELECT retl_create_sync('c_sf_people', 'conn_people', 'c_sf', options => '{"object": "Contact", "external_id": "Ext_Id__c", "batch_size": 50}');
SELECT name, options FROM retl.syncs WHERE name = 'c_sf_people';
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', options => '{"object": "Contact"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', options => '{"object": "Con tact", "external_id": "Ext_Id__c"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', options => '{"object": "Contact", "external_id": "Ext_Id__c", "batch_size": 201}');
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', options => '{"object": "Contact", "external_id": "Ext_Id__c", "campaign_id": "701000000000001AAA"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', options => '{"object": "Account", "external_id": "Ext_Id__c", "campaign_id": "701000000000001AAA"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', options => '{"object": "Contact", "external_id": "Ext_Id__c", "campaign_id": "7010"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_sf', mode => 'append', options => '{"object": "Contact", "external_id": "Ext_Id__c"}');
SELECT retl_create_sync('bad', 'SELECT id, email FROM conn_people', 'c_sf', key => '{id,email}', schedule => 'manual',
	options => '{"object": "Contact", "external_id": "Ext_Id__c"}');
SELECT retl_create_sync('c_mkto_people', 'conn_people', 'c_mkto', mapping => '{"email": "email"}');
SELECT retl_create_sync('c_mkto_new', 'conn_people', 'c_mkto', mode => 'insert', schedule => 'manual',
	mapping => '{"id": "externalId", "email": "email"}', options => '{"lookup_field": "externalId"}');
-- the lookup field must be in the records, and "id" is Marketo's own
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto', mapping => '{"email": "email"}', options => '{"lookup_field": "externalId"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto');
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto', mapping => '{"id": "id", "email": "email"}', options => '{"lookup_field": "id"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto', options => '{"lookup_field": "e-mail"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto', options => '{"list_id": "1001"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto', options => '{"list_id": "abc"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mkto', mode => 'append');
SELECT name FROM retl.syncs WHERE name = 'bad';
SELECT name FROM retl.destinations WHERE name = 'bad';

--
-- mailchimp: the url from the API key's data centre, basic auth, limits as
-- defaults, options checked
--
SELECT retl_set_secret('conn_mc_key', '0123456789abcdef0123456789abcdef-us14');
SELECT retl_create_destination('c_mc', 'mailchimp',
	options => '{"auth": {"type": "basic", "username": "retl", "password": "{{secret:conn_mc_key}}"}}');
SELECT retl_create_destination('c_mc_url', 'mailchimp', 'http://127.0.0.1:9/3.0',
	'{"auth": {"type": "basic", "username": "retl", "password": "{{secret:conn_token}}"}}');
SELECT name, kind, url, batch_size, rate_limit, max_concurrency, max_batch_bytes FROM retl.destinations
	WHERE name IN ('c_mc', 'c_mc_url') ORDER BY name;
-- a key without a data centre (conn_token), or no such secret: a url is needed
SELECT retl_create_destination('bad', 'mailchimp',
	options => '{"auth": {"type": "basic", "username": "retl", "password": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'mailchimp',
	options => '{"auth": {"type": "basic", "username": "retl", "password": "{{secret:conn_no_such}}"}}');
-- the API key as basic auth's password, nothing else
SELECT retl_create_destination('bad', 'mailchimp', 'http://127.0.0.1:9/3.0');
SELECT retl_create_destination('bad', 'mailchimp', options => '{"auth": {"type": "bearer", "token": "{{secret:conn_mc_key}}"}}');
SELECT retl_create_destination('bad', 'mailchimp', 'http://127.0.0.1:9/3.0',
	'{"auth": {"type": "basic", "username": "retl", "password": "{{secret:conn_token}}"}, "batch_size": 501}');
-- sync options
SELECT retl_create_sync('c_mc_people', 'conn_people', 'c_mc_url', mapping => '{"email": "email", "name": "FNAME"}',
	options => '{"list_id": "a1b2c3d4e5", "status": "pending"}');
SELECT retl_create_sync('c_mc_new', 'conn_people', 'c_mc_url', mode => 'insert', schedule => 'manual',
	mapping => '{"email": "mail", "name": "fname"}', options => '{"list_id": "a1b2c3d4e5", "email_field": "mail"}');
SELECT name, mode, options FROM retl.syncs WHERE name LIKE 'c\_mc\_%' ORDER BY name;
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1/b2"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "status": "cleaned"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "status": 1}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "email_field": ""}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "email_field": "mail"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email", "name": "first name"}', options => '{"list_id": "a1b2c3d4e5"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "segment_id": "4501"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "segment_id": "tag"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mode => 'insert', schedule => 'manual', mapping => '{"email": "email"}',
	options => '{"list_id": "a1b2c3d4e5", "segment_id": "4501"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mode => 'update', schedule => 'manual', mapping => '{"email": "email"}',
	options => '{"list_id": "a1b2c3d4e5"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mode => 'append', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_mc_url', mapping => '{"email": "email"}', options => '{"list_id": "a1b2c3d4e5", "tags": ["vip"]}');
SELECT name FROM retl.syncs WHERE name = 'bad';
SELECT name FROM retl.destinations WHERE name = 'bad';
-- one sync a transaction: dropping several syncs in one can deadlock with the
-- worker (README, Troubleshooting)
SELECT pg_catalog.format('SELECT retl_drop_sync(%L)', name) FROM retl.syncs
 WHERE name LIKE 'c\_mc\_%' ORDER BY name \gexec
SELECT retl_drop_destination(name) FROM retl.destinations WHERE name IN ('c_mc', 'c_mc_url');
SELECT retl_drop_secret('conn_mc_key');

--
-- braze: no default url (each instance has its REST endpoint), a REST API
-- key as bearer auth, limits as defaults, options checked
--
SELECT retl_create_destination('c_braze', 'braze', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
SELECT name, kind, url, batch_size, rate_limit, max_concurrency, max_batch_bytes FROM retl.destinations WHERE name = 'c_braze';
SELECT retl_create_destination('bad', 'braze', options => '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'braze', 'http://127.0.0.1:9');
SELECT retl_create_destination('bad', 'braze', 'http://127.0.0.1:9', '{"auth": {"type": "header", "name": "Authorization", "value": "Bearer {{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'braze', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}, "batch_size": 76}');
SELECT retl_create_destination('bad', 'braze', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}, "instance": "US-01"}');
-- sync options: the user is named by the records' field "external_id" (or
-- "email"), else by the key; events need a name and their user's field
SELECT retl_create_sync('c_braze_people', 'conn_people', 'c_braze');
SELECT retl_create_sync('c_braze_emails', 'conn_people', 'c_braze', options => '{"identifier": "email", "batch_size": 50}');
SELECT retl_create_sync('c_braze_updates', 'SELECT id, name FROM conn_people', 'c_braze', key => '{id}', mode => 'update', schedule => 'manual');
SELECT retl_create_sync('c_braze_events', 'conn_people', 'c_braze', mode => 'append',
	mapping => '{"id": "external_id", "name": "name"}', options => '{"event_name": "signed_up"}');
SELECT name, mode, options FROM retl.syncs WHERE name LIKE 'c\_braze\_%' ORDER BY name;
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', mode => 'insert', schedule => 'manual');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', options => '{"identifier": "phone"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', options => '{"event_name": "signed_up"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', mode => 'append');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', mode => 'append', options => '{"event_name": "signed_up"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', mode => 'append',
	mapping => '{"id": "external_id", "name": "time"}', options => '{"event_name": "signed_up"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', mapping => '{"id": "id", "email": "external_id"}', options => '{"identifier": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', mapping => '{"name": "braze_id"}');
SELECT retl_create_sync('bad', 'SELECT id, name FROM conn_people', 'c_braze', key => '{id,name}', schedule => 'manual');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', options => '{"attribute": "vip"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_braze', options => '{"list_id": "1"}');
-- audiences: a boolean custom attribute
SELECT retl_create_audience('c_braze_vip', 'SELECT email FROM conn_people', '{email}', schedule => 'manual');
SELECT retl_create_sync('c_braze_vip', 'audience:c_braze_vip', 'c_braze', mode => 'mirror', options => '{"identifier": "email", "attribute": "vip"}');
SELECT retl_create_sync('bad', 'audience:c_braze_vip', 'c_braze', mode => 'mirror', options => '{"identifier": "email"}');
SELECT retl_create_sync('bad', 'audience:c_braze_vip', 'c_braze', mode => 'mirror', options => '{"identifier": "email", "attribute": "$vip"}');
SELECT retl_create_sync('bad', 'audience:c_braze_vip', 'c_braze', mode => 'mirror', options => '{"identifier": "email", "attribute": "external_id"}');
SELECT name FROM retl.syncs WHERE name = 'bad';
SELECT name FROM retl.destinations WHERE name = 'bad';
SELECT retl_drop_sync('c_braze_vip');
SELECT retl_drop_audience('c_braze_vip');

--
-- iterable: the Api-Key header, Iterable's url and limits as defaults,
-- options checked
--
SELECT retl_create_destination('c_iterable', 'iterable', options => '{"auth": {"type": "header", "name": "Api-Key", "value": "{{secret:conn_token}}"}}');
-- an EU project's url; requests up to Iterable's 4 MB
SELECT retl_create_destination('c_iterable_eu', 'iterable', 'https://api.eu.iterable.com',
	'{"auth": {"type": "header", "name": "api-key", "value": "{{secret:conn_token}}"}, "max_batch_bytes": 4000000}');
SELECT name, kind, url, batch_size, rate_limit, max_concurrency, max_batch_bytes FROM retl.destinations
	WHERE name IN ('c_iterable', 'c_iterable_eu') ORDER BY name;
-- auth other than the Api-Key header, none, beyond Iterable's limits
SELECT retl_create_destination('bad', 'iterable', options => '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'iterable', options => '{"auth": {"type": "header", "name": "X-Api-Key", "value": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'iterable');
SELECT retl_create_destination('bad', 'iterable', options => '{"auth": {"type": "header", "name": "Api-Key", "value": "{{secret:conn_token}}"}, "batch_size": 1001}');
SELECT retl_create_destination('bad', 'iterable', options => '{"auth": {"type": "header", "name": "Api-Key", "value": "{{secret:conn_token}}"}, "max_batch_bytes": 4194304}');
-- sync options
SELECT retl_create_sync('c_it_people', 'conn_people', 'c_iterable', mapping => '{"email": "email", "name": "firstName"}');
SELECT retl_create_sync('c_it_signups', 'conn_people', 'c_iterable', mode => 'append', options => '{"event_name": "signup"}');
SELECT retl_create_sync('c_it_ids', 'conn_people', 'c_iterable', mapping => '{"id": "userId", "email": "email"}',
	options => '{"identifier": "userId", "batch_size": 100}');
SELECT name, mode, options FROM retl.syncs WHERE name LIKE 'c\_it\_%' ORDER BY name;
-- modes bulkUpdate cannot honour; event_name for append syncs only
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', mode => 'insert');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', mode => 'update');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', mode => 'append');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"event_name": "signup"}');
-- the identifier: email or userId, a field the records carry
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"identifier": "phone"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"identifier": "userId"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', mapping => '{"name": "firstName"}');
-- a list is for an audience, by its id
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"list_id": "1234"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"list_id": "abc"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', mode => 'append', options => '{"event_name": "signup", "list_id": "1234"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"campaign_id": "5"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_iterable', options => '{"batch_size": 1001}');
SELECT name FROM retl.syncs WHERE name = 'bad';
SELECT name FROM retl.destinations WHERE name = 'bad';

--
-- segment: its address and limits as defaults, its write key as basic
-- auth with an empty password, its sync options checked
--
SELECT retl_create_destination('c_segment', 'segment', options =>
	'{"auth": {"type": "basic", "username": "{{secret:conn_token}}", "password": ""}}');
SELECT retl_create_destination('c_segment_local', 'segment', 'http://127.0.0.1:9',
	'{"auth": {"type": "basic", "username": "{{secret:conn_token}}", "password": ""}, "batch_size": 100}');
SELECT name, url, batch_size, rate_limit, max_concurrency, max_batch_bytes FROM retl.destinations
	WHERE name IN ('c_segment', 'c_segment_local') ORDER BY name;
-- auth: the write key only, as the basic user name, an empty password
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9');
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "me", "password": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "{{secret:conn_token}}", "password": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "{{secret:conn_token}}"}}');
-- an empty password needs a username that names a secret, whatever the kind
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "wk_live_123", "password": ""}}');
SELECT retl_create_destination('bad', 'webhook', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "me", "password": ""}}');
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "{{secret:conn_token}}", "password": ""}, "batch_size": 2501}');
SELECT retl_create_destination('bad', 'segment', 'http://127.0.0.1:9', '{"auth": {"type": "basic", "username": "{{secret:conn_token}}", "password": ""}, "region": "eu"}');
-- sync options: identify and group upsert, track appends
SELECT retl_create_sync('c_seg_identify', 'conn_people', 'c_segment', options => '{"type": "identify"}');
SELECT retl_create_sync('c_seg_track', 'conn_people', 'c_segment', mode => 'append',
	options => '{"type": "track", "event": "Person Added", "batch_size": 100}');
SELECT retl_create_sync('c_seg_track_by', 'conn_people', 'c_segment', mode => 'append',
	mapping => '{"id": "id", "email": "user"}', options => '{"type": "track", "event": "Signed Up", "user_id_field": "user"}');
SELECT retl_create_sync('c_seg_group', 'SELECT id AS company, name, id AS owner FROM conn_people', 'c_segment',
	key => '{company}', schedule => 'manual', options => '{"type": "group", "user_id_field": "owner"}');
SELECT name, mode, options FROM retl.syncs WHERE name LIKE 'c\_seg\_%' ORDER BY name;
-- Segment's Tracking API deletes nothing, and takes no other mode
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'mirror', options => '{"type": "identify"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'insert', options => '{"type": "identify"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'update', options => '{"type": "identify"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "page"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": 1}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "track", "event": "E"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'append', options => '{"type": "identify"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'append', options => '{"type": "group", "user_id_field": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'append', options => '{"type": "track"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'append', options => '{"type": "track", "event": ""}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "identify", "event": "E"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "identify", "user_id_field": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "group"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "group", "user_id_field": ""}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "group", "user_id_field": "owner"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', mode => 'append', options => '{"type": "track", "event": "E", "user_id_field": "mail"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "identify", "batch_size": 2501}');
SELECT retl_create_sync('bad', 'conn_people', 'c_segment', options => '{"type": "identify", "anonymous_id_field": "email"}');
-- the userId (identify, track without user_id_field) or groupId is a key of one column
SELECT retl_create_sync('bad', 'SELECT id, email FROM conn_people', 'c_segment', key => '{id,email}', schedule => 'manual',
	options => '{"type": "identify"}');
SELECT retl_create_sync('bad', 'SELECT id, email FROM conn_people', 'c_segment', key => '{id,email}', schedule => 'manual',
	mode => 'append', options => '{"type": "track", "event": "E"}');
SELECT retl_create_sync('bad', 'SELECT id, email FROM conn_people', 'c_segment', key => '{id,email}', schedule => 'manual',
	options => '{"type": "group", "user_id_field": "email"}');
SELECT name FROM retl.syncs WHERE name = 'bad';
SELECT name FROM retl.destinations WHERE name = 'bad';

--
-- klaviyo: its address known, the key in Klaviyo's header, a revision
--
SELECT retl_create_destination('c_klaviyo', 'klaviyo', options => '{"auth": {"type": "header",
	"name": "Authorization", "value": "Klaviyo-API-Key {{secret:conn_token}}"}, "revision": "2024-10-15"}');
SELECT url, batch_size, rate_limit, max_concurrency FROM retl.destinations WHERE name = 'c_klaviyo';
SELECT retl_create_destination('bad', 'klaviyo', options => '{"auth": {"type": "header", "name": "X-Api-Key",
	"value": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'klaviyo', options => '{"auth": {"type": "header", "name": "Authorization",
	"value": "Klaviyo-API-Key {{secret:conn_token}}"}, "revision": "October"}');
SELECT retl_create_sync('c_kl_people', 'conn_people', 'c_klaviyo', mapping => '{"email": "email", "name": "first_name"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_klaviyo', mapping => '{"name": "first_name"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_klaviyo', options => '{"list_id": "Y6nRLr"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_klaviyo', options => '{"list_id": "not a list"}');
SELECT retl_create_sync('bad', 'SELECT id, email FROM conn_people', 'c_klaviyo', key => '{id}', mode => 'mirror', schedule => 'manual');
SELECT retl_create_sync('bad', 'conn_people', 'c_klaviyo', mode => 'append');
SELECT name FROM retl.syncs WHERE name = 'bad';

--
-- customerio: basic auth with the site id, its url known, its options checked
--
SELECT retl_create_destination('c_cio', 'customerio', options => '{"auth": {"type": "basic", "username": "site-1", "password": "{{secret:conn_token}}"}}');
-- the EU region is a url; the site id may be a secret too
SELECT retl_create_destination('c_cio_eu', 'customerio', 'http://127.0.0.1:9', '{"auth": {"type": "basic",
	"username": "{{secret:conn_token}}", "password": "{{secret:conn_token}}"}, "batch_size": 200}');
SELECT name, kind, url, batch_size, rate_limit, max_concurrency, max_batch_bytes FROM retl.destinations
	WHERE name IN ('c_cio', 'c_cio_eu') ORDER BY name;
-- basic auth only, the key a secret, the API's limits
SELECT retl_create_destination('bad', 'customerio');
SELECT retl_create_destination('bad', 'customerio', options => '{"auth": {"type": "bearer", "token": "{{secret:conn_token}}"}}');
SELECT retl_create_destination('bad', 'customerio', options => '{"auth": {"type": "basic", "username": "site-1", "password": "key"}}');
SELECT retl_create_destination('bad', 'customerio', options => '{"auth": {"type": "basic", "username": "site-1", "password": "{{secret:conn_token}}"}, "batch_size": 1001}');
SELECT retl_create_destination('bad', 'customerio', options => '{"auth": {"type": "basic", "username": "site-1", "password": "{{secret:conn_token}}"}, "max_batch_bytes": 600000}');
SELECT retl_create_destination('bad', 'customerio', options => '{"auth": {"type": "basic", "username": "site-1", "password": "{{secret:conn_token}}"}, "region": "eu"}');
-- sync options
SELECT retl_create_sync('c_cio_people', 'conn_people', 'c_cio');
SELECT retl_create_sync('c_cio_by_email', 'conn_people', 'c_cio', mode => 'update', schedule => 'manual',
	mapping => '{"email": "email", "name": "name"}', options => '{"identifier": "email"}');
SELECT retl_create_sync('c_cio_events', 'conn_people', 'c_cio', mode => 'append', options => '{"event_name": "signed_up"}');
SELECT name, mode, options FROM retl.syncs WHERE name LIKE 'c\_cio\_%' ORDER BY name;
-- insert-only is not something identify can do
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', mode => 'insert', schedule => 'manual');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', options => '{"identifier": "phone"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', options => '{"identifier": "email"}', mapping => '{"id": "id"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', mapping => '{"email": "email"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', mode => 'append');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', mode => 'append', options => '{"event_name": ""}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', options => '{"event_name": "signed_up"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', options => '{"segment_id": "12"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', options => '{"segment_id": "twelve"}');
SELECT retl_create_sync('bad', 'conn_people', 'c_cio', options => '{"list_id": "12"}');
-- audiences go to a manual segment, removed by id
SELECT retl_create_audience('c_cio_vip', 'SELECT id FROM conn_people', '{id}', schedule => 'manual');
SELECT retl_create_sync('c_cio_vip_seg', 'audience:c_cio_vip', 'c_cio', mode => 'mirror', options => '{"segment_id": "12"}');
SELECT retl_create_sync('bad', 'audience:c_cio_vip', 'c_cio', mode => 'mirror');
SELECT retl_create_sync('bad', 'audience:c_cio_vip', 'c_cio', mode => 'mirror', options => '{"segment_id": "12", "identifier": "email"}');
SELECT retl_create_sync('bad', 'audience:c_cio_vip', 'c_cio', mode => 'append', options => '{"segment_id": "12", "event_name": "x"}');
SELECT name FROM retl.syncs WHERE name = 'bad';
SELECT name FROM retl.destinations WHERE name = 'bad';
SELECT retl_drop_sync('c_cio_vip_seg');
SELECT retl_drop_audience('c_cio_vip');

-- retl_urlencode
SELECT retl_urlencode('a b/c?d=é&e'), retl_urlencode(''), retl_urlencode(NULL);

SELECT pg_catalog.format('SELECT retl_drop_sync(%L)', name) FROM retl.syncs
 WHERE name LIKE 'c\_%' ORDER BY name \gexec
SELECT retl_drop_destination(name) FROM retl.destinations WHERE name LIKE 'c\_%' OR name LIKE 'a\_%';
SELECT retl_drop_secret('conn_token');
DROP TABLE conn_people;
