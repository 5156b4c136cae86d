/*
 * hashing.c: personal data sent only as SHA-256 of its normalized value.
 *
 * Ad platforms match audiences on hashes of emails, phone numbers, names
 * and addresses, each normalized their way first, so that the same person
 * hashes the same on both sides.  A connector names the normalization a
 * field needs (RetlNorm) and calls retl_hash_field; the worker normalizes
 * and hashes while it builds the request, so the plaintext never leaves
 * the database.  A value that cannot be normalized (an email without "@", a
 * phone without digits) gives NULL: the connector leaves the field out or
 * refuses the record, saying why.
 *
 * Sources: Meta's "Hashing and Normalizing Data" (custom audiences: email
 * trimmed and lowercased; phone digits only with the country code, no
 * leading zeros; names lowercase letters; city lowercase letters; state
 * two letters; zip lowercase without spaces, a US zip its first five
 * digits; country two letters; gender f or m; birth year, month, day as
 * digits) and Google Ads' Customer Match guide (email trimmed and
 * lowercased; phone E.164, "+" and digits; names trimmed and lowercased).
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

#include "connectors/hashing.h"

/* lowercase, by the database's collation-free rules (what the vendors mean) */
static char *
lowercase(const char *s)
{
	return str_tolower(s, strlen(s), DEFAULT_COLLATION_OID);
}

/* s without leading and trailing white space */
static char *
trim(const char *s)
{
	const char *end;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		end--;
	return pnstrdup(s, end - s);
}

/* the characters of s that keep() keeps (ASCII tests; other bytes per keep_other) */
static char *
only(const char *s, bool (*keep) (unsigned char c), bool keep_other)
{
	char	   *out = palloc(strlen(s) + 1);
	int			n = 0;

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c >= 0x80 ? keep_other : keep(c))
			out[n++] = *s;
	}
	out[n] = '\0';
	return out;
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_letter(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_alnum(unsigned char c)
{
	return is_letter(c) || is_digit(c);
}

/* The normalized value, or NULL when it cannot be normalized. */
char *
retl_normalize(RetlNorm how, const char *value)
{
	char	   *v;

	if (value == NULL)
		return NULL;
	v = trim(value);
	switch (how)
	{
		case RETL_NORM_EMAIL:
			v = lowercase(v);
			if (strchr(v, '@') == NULL || strchr(v, ' ') != NULL || v[0] == '@')
				return NULL;
			break;
		case RETL_NORM_PHONE_DIGITS:
			/* digits only, no leading zeros (the country code must be there) */
			v = only(v, is_digit, false);
			while (*v == '0')
				v++;
			if (strlen(v) < 7)
				return NULL;
			break;
		case RETL_NORM_PHONE_E164:
			/* "+" and the digits: the value must carry its country code */
			if (v[0] != '+')
				return NULL;
			v = only(v, is_digit, false);
			if (strlen(v) < 7 || strlen(v) > 15 || v[0] == '0')
				return NULL;
			v = psprintf("+%s", v);
			break;
		case RETL_NORM_NAME:
			/* lowercase letters: no punctuation, spaces or digits; UTF-8 kept */
			v = only(lowercase(v), is_letter, true);
			break;
		case RETL_NORM_CITY:
			v = only(lowercase(v), is_letter, true);
			break;
		case RETL_NORM_STATE:
		case RETL_NORM_COUNTRY:
			v = only(lowercase(v), is_letter, false);
			if (strlen(v) != 2)
				return NULL;
			break;
		case RETL_NORM_ZIP:
			v = only(lowercase(v), is_alnum, true);
			/* a US zip+4 ("94025-1234"): its first five digits */
			if (strlen(v) == 9 && strspn(v, "0123456789") == 9)
				v[5] = '\0';
			break;
		case RETL_NORM_GENDER:
			v = lowercase(v);
			if (v[0] != 'f' && v[0] != 'm')
				return NULL;
			v[1] = '\0';
			break;
		case RETL_NORM_DIGITS:
			v = only(v, is_digit, false);
			break;
		case RETL_NORM_TRIM_LOWER:
			v = lowercase(v);
			break;
	}
	return v[0] != '\0' ? v : NULL;
}

/* The lowercase hexadecimal SHA-256 of text. */
char *
retl_sha256_hex(const char *text)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) text, strlen(text)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 hash: %s", pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	return hex;
}

/* SHA-256 (hex) of the normalized value, or NULL when it cannot be normalized. */
char *
retl_hash_field(RetlNorm how, const char *value)
{
	char	   *normal = retl_normalize(how, value);

	return normal ? retl_sha256_hex(normal) : NULL;
}
