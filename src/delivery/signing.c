/*
 * signing.c: Standard Webhooks signatures (https://www.standardwebhooks.com).
 *
 * A destination with the option signing_secret names a retl secret whose
 * value is a Standard Webhooks symmetric secret: "whsec_" followed by the
 * base64 of the key (the prefix may be left out).  Each request then
 * carries
 *
 *   webhook-id:        the request's idempotency key (same on retries)
 *   webhook-timestamp: the attempt's time, in seconds since the epoch
 *   webhook-signature: v1,<base64 of HMAC-SHA256(key, "id.timestamp.body")>
 *
 * so that receivers can check it with any Standard Webhooks library.
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "delivery/signing.h"

PG_FUNCTION_INFO_V1(retl_webhook_signature);

/*
 * The key of a Standard Webhooks secret, palloc'd; NULL when it is not one
 * (the caller reports it without showing the value).
 */
uint8 *
retl_signing_key(const char *secret, int *keylen)
{
	const char *b64 = secret;
	int			len;
	uint8	   *key;

	if (strncmp(b64, "whsec_", 6) == 0)
		b64 += 6;
	len = strlen(b64);
	if (len == 0)
		return NULL;
	key = palloc(pg_b64_dec_len(len) + 1);
	*keylen = pg_b64_decode(b64, len, (char *) key, pg_b64_dec_len(len));
	if (*keylen <= 0)
	{
		pfree(key);
		return NULL;
	}
	return key;
}

/* "v1,<signature>" of one message, palloc'd. */
char *
retl_sign_webhook(const uint8 *key, int keylen, const char *id, int64 timestamp,
				  const char *body, size_t bodylen)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	char	   *prefix = psprintf("%s." INT64_FORMAT ".", id, timestamp);
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	int			enclen = pg_b64_enc_len(PG_SHA256_DIGEST_LENGTH);
	char	   *result = palloc(enclen + 4);
	int			n;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) prefix, strlen(prefix)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, bodylen) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a webhook signature: %s", why)));
	}
	pg_hmac_free(ctx);
	memcpy(result, "v1,", 3);
	n = pg_b64_encode((const char *) mac, sizeof(mac), result + 3, enclen);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode a webhook signature")));
	result[3 + n] = '\0';
	return result;
}

/*
 * retl._webhook_signature(secret, id, timestamp, body): the signature a
 * request would carry (to check against the specification's examples).
 */
Datum
retl_webhook_signature(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		timestamp = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	int			keylen;
	uint8	   *key = retl_signing_key(secret, &keylen);

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("not a Standard Webhooks secret"),
				 errhint("A signing secret is \"whsec_\" followed by the base64 of the key.")));
	PG_RETURN_TEXT_P(cstring_to_text(retl_sign_webhook(key, keylen, id, timestamp,
													   VARDATA_ANY(body),
													   VARSIZE_ANY_EXHDR(body))));
}
