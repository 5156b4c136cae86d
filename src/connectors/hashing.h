/*
 * hashing.h: personal data normalized and hashed the ad platforms' way
 * (see hashing.c).
 */
#ifndef RETL_HASHING_H
#define RETL_HASHING_H

typedef enum RetlNorm
{
	RETL_NORM_EMAIL,			/* trimmed, lowercased, with an "@" */
	RETL_NORM_PHONE_DIGITS,		/* digits with the country code, no leading 0 */
	RETL_NORM_PHONE_E164,		/* "+", country code and number */
	RETL_NORM_NAME,				/* lowercase letters only */
	RETL_NORM_CITY,				/* lowercase letters only */
	RETL_NORM_STATE,			/* two lowercase letters */
	RETL_NORM_ZIP,				/* lowercase, no spaces; US: five digits */
	RETL_NORM_COUNTRY,			/* two lowercase letters (ISO 3166-1) */
	RETL_NORM_GENDER,			/* "f" or "m" */
	RETL_NORM_DIGITS,			/* digits only (birth year, month, day) */
	RETL_NORM_TRIM_LOWER		/* trimmed and lowercased */
} RetlNorm;

extern char *retl_normalize(RetlNorm how, const char *value);
extern char *retl_sha256_hex(const char *text);
extern char *retl_hash_field(RetlNorm how, const char *value);

#endif
