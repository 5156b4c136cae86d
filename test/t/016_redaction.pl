# Secrets never reach a dead letter's response_excerpt, however the
# destination echoes them: as sent, JSON-escaped (Python's \uXXXX, PHP's
# \/), form-encoded, base64, a Basic credential decoded, and across the
# 1,024-byte cut of the excerpt.  The sync's owner reads its dead letters,
# and need not be allowed to know the destination's secrets.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use RetlTest;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Encode ();
use MIME::Base64;

my $r = start_receiver();
my $node = new_retl_node('redaction');
sub psql { return $node->safe_psql('postgres', $_[0]); }

# characters each encoding changes: quote, backslash, slash, space, plus, non-ASCII
my $secret = 's3"cr\\e/t ét+x-' . ('k' x 20);
my $creds_text = 'user:hunter2-pass-word';
my $creds = encode_base64($creds_text, '');

psql(q{CREATE EXTENSION retl; CREATE TABLE t (id int PRIMARY KEY);});
psql("SET log_statement = 'none'; SELECT retl_set_secret('tok', \$q\$$secret\$q\$);"
	  . " SELECT retl_set_secret('creds', '$creds');");
psql(q{SELECT retl_create_destination('bearer', 'webhook', '} . $r->url('/bearer') . q{',
		'{"headers": {"Authorization": "Bearer {{secret:tok}}"}}');
	SELECT retl_create_destination('basic', 'webhook', '} . $r->url('/basic') . q{',
		'{"headers": {"Authorization": "Basic {{secret:creds}}"}}');
	SELECT retl_create_sync('bearer', 't', 'bearer');
	SELECT retl_create_sync('basic', 't', 'basic');});

# The forms the secrets take in the answers (bytes), to be found in no
# excerpt.
my $json = JSON::PP->new->ascii;
(my $escaped = $json->encode(Encode::decode('UTF-8', $secret))) =~ s/^"|"$//g;
(my $slashed = $escaped) =~ s{/}{\\/}g;
(my $form = $secret) =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
(my $form_plus = $form) =~ s/%20/+/g;
my @forms = ($secret, $escaped, $slashed, $form, $form_plus, encode_base64("Bearer $secret", ''),
	$creds, $creds_text, encode_base64("Basic $creds", ''));

my $id = 0;
sub excerpt_of
{
	my ($sync, $echo, $pad) = @_;
	$id++;
	$r->control(map { { path => "/$_", status => 400, echo => $echo, pad => $pad, count => -1 } }
		  qw(bearer basic));
	psql(qq{INSERT INTO t VALUES ($id)});
	$node->poll_query_until('postgres',
		qq{SELECT count(*) = 2 FROM retl.dead_letters WHERE key = '{"id": $id}'})
	  or die "no dead letters for $id";
	my $e = psql(qq{SELECT response_excerpt FROM retl.dead_letters WHERE sync = '$sync' AND key = '{"id": $id}'});
	utf8::encode($e) if utf8::is_utf8($e);
	return $e;
}

sub leaks
{
	my ($text) = @_;
	for my $f (@forms)
	{
		for my $i (0 .. length($f) - 6)
		{
			my $piece = substr($f, $i, 6);
			return "'$piece' of '$f'" if index($text, $piece) >= 0;
		}
	}
	return '';
}

for my $echo (qw(raw json json_slash url base64))
{
	for my $pad (0, 990, 1005, 1015)
	{
		my $e = excerpt_of('bearer', $echo, $pad);
		is(leaks($e), '', "$echo echo after $pad bytes: no part of the secret in the excerpt");
		ok(length($e) <= 1024, "$echo echo after $pad bytes: the excerpt is at most 1 kB");
		like($e, qr/\[redacted\]/, "$echo echo after $pad bytes: the marker shows where it was")
		  if $pad == 0;
	}
}
for my $echo (qw(raw basic_decoded))
{
	my $e = excerpt_of('basic', $echo, 0);
	is(leaks($e), '', "Basic credential, $echo echo: redacted");
	like($e, qr/\[redacted\]/, "Basic credential, $echo echo: the marker");
}
unlike(psql(q{SELECT string_agg(coalesce(last_error, ''), ' ') FROM retl.dead_letters}), qr/hunter2|k{20}/,
	'no secret in the dead letters\' errors');
is(leaks(psql(q{SELECT string_agg(coalesce(last_error, ''), ' ') FROM retl.sync_status})), '',
	'nor in the syncs\' last_error');

# The answer around the secret is kept.
my $e = excerpt_of('bearer', 'json', 0);
like($e, qr/^\{"headers": \{"authorization": "\[redacted\]"\}\}$/, 'the rest of the answer is kept as it was');

done_testing();
