/*
 * signing.h: Standard Webhooks signatures (see signing.c).
 */
#ifndef RETL_SIGNING_H
#define RETL_SIGNING_H

extern uint8 *retl_signing_key(const char *secret, int *keylen);
extern char *retl_sign_webhook(const uint8 *key, int keylen, const char *id, int64 timestamp,
							   const char *body, size_t bodylen);

#endif
