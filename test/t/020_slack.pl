# The slack connector against a local chat.postMessage emulator
# (test/emulators/slack.py): a message per new row, at Slack's rate; an
# audience's entries; blocks; a channel Slack does not know dead-letters
# with Slack's error; a transient error is retried.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $slack = start_emulator('slack', '--token', 'xoxb-test-token');
my $node = new_retl_node('slack');
sub psql { return $node->safe_psql('postgres', $_[0]); }
sub drained { my ($s) = @_; return $node->poll_query_until('postgres',
	"SELECT pending + in_flight = 0 FROM retl.sync_status WHERE sync = '$s'"); }

my $url = $slack->url('/api');
psql(qq{CREATE EXTENSION retl; CREATE TABLE signups (id int PRIMARY KEY, name text, email text);
	SET log_statement = 'none'; SELECT retl_set_secret('bot', 'xoxb-test-token');
	SELECT retl_create_destination('team', 'slack', '$url', '{"auth": {"type": "bearer", "token": "{{secret:bot}}"}}');});
is(psql(q{SELECT rate_limit FROM retl.destinations WHERE name = 'team'}), '1', "Slack's rate is the default: a message a second");
psql(q{SELECT retl_create_sync('signups', 'signups', 'team', mode => 'append', options => $${
	"channel": "#alerts", "text": "format('New signup: %s <%s>', data->>'name', data->>'email')"}$$);});

my $t0 = time;
psql(q{INSERT INTO signups SELECT g, 'user' || g, 'u' || g || '@x.io' FROM generate_series(1, 5) g});
ok(drained('signups'), 'five messages sent');
my $elapsed = time - $t0;
my @texts = map { $_->{text} } @{ $slack->get->{messages} };
is_deeply(\@texts, [ map { "New signup: user$_ <u$_\@x.io>" } 1 .. 5 ], 'one message per row, in order, with the text');
is($slack->get->{ratelimited}, 0, 'never over the rate Slack allows');
ok($elapsed >= 3.5, sprintf('a message a second (%.1f s for five)', $elapsed));

# blocks
psql(q{CREATE TABLE deals (id int PRIMARY KEY, title text);
	SELECT retl_create_sync('deals', 'deals', 'team', mode => 'append', options => $${"channel": "C0001",
	"text": "'New deal'", "blocks": "jsonb_build_array(jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text', '*' || (data->>'title') || '*')))"}$$);
	INSERT INTO deals VALUES (1, 'Big one');});
ok(drained('deals'), 'a message with blocks sent');
is_deeply($slack->get->{messages}[-1]{blocks},
	[ { type => 'section', text => { type => 'mrkdwn', text => '*Big one*' } } ], 'its blocks as the expression made them');

# Slack's errors: permanent ones dead-letter with the error, transient ones retry.
psql(q{CREATE TABLE pings (id int PRIMARY KEY);
	SELECT retl_create_sync('nowhere', 'pings', 'team', mode => 'append', options => '{"channel": "#nowhere", "text": "''x''"}');
	SELECT retl_create_sync('outside', 'pings', 'team', mode => 'append', options => '{"channel": "#random", "text": "''x''"}');
	INSERT INTO pings VALUES (1);});
ok(drained('nowhere') && drained('outside'), 'refused messages drained');
is(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'nowhere'}), 'Slack did not post the message: channel_not_found',
	'channel_not_found: dead-lettered with the error');
is(psql(q{SELECT last_error FROM retl.dead_letters WHERE sync = 'outside'}), 'Slack did not post the message: not_in_channel',
	'not_in_channel: dead-lettered');
$slack->post('/_fail', { error => 'internal_error', count => 1 });
psql(q{INSERT INTO signups VALUES (6, 'six', 's@x.io')});
ok(drained('signups'), 'a transient error: retried and sent');
is($slack->get->{messages}[-1]{text}, 'New signup: six <s@x.io>', 'the retried message');
is(psql(q{SELECT count(*) FROM retl.dead_letters WHERE sync = 'signups'}), '0', 'not dead-lettered');

# An audience's entries.
psql(q{CREATE TABLE customers (id int PRIMARY KEY, spend int); INSERT INTO customers VALUES (1, 10), (2, 900);
	SELECT retl_create_audience('big', 'SELECT id FROM customers WHERE spend > 500', '{id}', schedule => 'manual');
	SELECT retl_create_sync('big_alerts', 'audience:big', 'team', mode => 'insert',
		options => $${"channel": "#alerts", "text": "format('Customer %s is a big spender now', key->>'id')"}$$);
	SELECT retl_refresh_audience('big');});
ok($node->poll_query_until('postgres', q{SELECT delivered = 1 FROM retl.sync_status WHERE sync = 'big_alerts'}),
	'an audience entry: one message');
is($slack->get->{messages}[-1]{text}, 'Customer 2 is a big spender now', 'for the member who entered');

# Modes a message cannot stand for are refused at creation.
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT retl_create_sync('bad', 'signups', 'team',
	options => '{"channel": "#alerts", "text": "''x''"}')});
like($err, qr/a destination of kind slack does not support mode "upsert"/, 'an upsert sync is refused');
unlike(slurp_file($node->logfile), qr/xoxb-test-token/, 'no token in the server log');

done_testing();
