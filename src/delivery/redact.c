/*
 * redact.c: keeping secrets out of what retl stores of an answer.
 *
 * A destination may echo what it was sent (an Authorization header in an
 * error body), and what retl keeps of an answer (a dead letter's
 * response_excerpt, a sync's last_error) is readable by the sync's owner,
 * who need not be allowed to know the destination's secrets.  So every
 * secret a request used is removed from that text before it is cut to its
 * excerpt, in every form a server may echo it in:
 *
 * - as sent, and as derived forms of it (a whole header value holding it,
 *   its base64, and, for a secret that is base64 of text such as
 *   "user:password", that text);
 * - each of those as it reads once the text's JSON string escapes are
 *   undone (\", \\, \/, \uXXXX, surrogate pairs), once its URL encoding is
 *   undone (%XX, +), or both.
 *
 * Matching is done on those decoded views, each byte of which remembers
 * the span of the original text it came from, and the spans matched are
 * replaced.  The answer is read with room past the excerpt for the
 * longest encoded secret (retl_redact_room), so a secret across the cut is
 * found whole; an excerpt that still ends with the start of a secret (an
 * answer cut short) loses that end.
 */
#include "postgres.h"

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "delivery/redact.h"

#define MARKER "[redacted]"

/* shortest secret a decoded form of which is worth looking for */
#define MIN_DERIVED 6

/* shortest start of a secret an excerpt may not end with */
#define MIN_TAIL 3

/* the most bytes one byte of a secret may take once encoded (\u00XX) */
#define MAX_EXPANSION 6

/* A decoded view of a text: its bytes, and the span of the original each comes from. */
typedef struct View
{
	char	   *data;
	int			len;
	int		   *start;
	int		   *end;
} View;

typedef struct Form
{
	const char *data;
	int			len;
} Form;

static View
new_view(int size)
{
	View		v;

	v.data = palloc(size + 1);
	v.start = palloc(sizeof(int) * (size + 1));
	v.end = palloc(sizeof(int) * (size + 1));
	v.len = 0;
	return v;
}

static void
put(View *v, char c, int start, int end)
{
	v->data[v->len] = c;
	v->start[v->len] = start;
	v->end[v->len] = end;
	v->len++;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
hex4(const char *p, int avail)
{
	int			v = 0;

	if (avail < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		int			h = hexval(p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* The view of src with JSON string escapes undone. */
static View
json_unescaped(const View *src)
{
	View		v = new_view(src->len + 4);
	int			i = 0;

	while (i < src->len)
	{
		const char *p = src->data + i;
		int			avail = src->len - i;
		int			used = 1;
		char		c = *p;

		if (c == '\\' && avail >= 2)
		{
			int			cp = -1;

			used = 2;
			switch (p[1])
			{
				case '"':
				case '\\':
				case '/':
					c = p[1];
					break;
				case 'b':
					c = '\b';
					break;
				case 'f':
					c = '\f';
					break;
				case 'n':
					c = '\n';
					break;
				case 'r':
					c = '\r';
					break;
				case 't':
					c = '\t';
					break;
				case 'u':
					cp = hex4(p + 2, avail - 2);
					used = cp < 0 ? 1 : 6;
					/* a surrogate pair is one character */
					if (cp >= 0xD800 && cp <= 0xDBFF && avail >= 12 && p[6] == '\\' && p[7] == 'u')
					{
						int			lo = hex4(p + 8, avail - 8);

						if (lo >= 0xDC00 && lo <= 0xDFFF)
						{
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
							used = 12;
						}
					}
					break;
				default:
					used = 1;
					break;
			}
			if (cp >= 0)
			{
				unsigned char utf8[4];
				int			n;

				unicode_to_utf8((pg_wchar) cp, utf8);
				n = pg_utf_mblen(utf8);
				for (int k = 0; k < n; k++)
					put(&v, (char) utf8[k], src->start[i], src->end[i + used - 1]);
				i += used;
				continue;
			}
			if (used == 1)
				c = *p;
		}
		put(&v, c, src->start[i], src->end[i + used - 1]);
		i += used;
	}
	return v;
}

/* The view of src with URL encoding (%XX, + for a space) undone. */
static View
url_decoded(const View *src)
{
	View		v = new_view(src->len);
	int			i = 0;

	while (i < src->len)
	{
		const char *p = src->data + i;

		if (*p == '%' && i + 2 < src->len && hexval(p[1]) >= 0 && hexval(p[2]) >= 0)
		{
			put(&v, (char) (hexval(p[1]) * 16 + hexval(p[2])), src->start[i], src->end[i + 2]);
			i += 3;
			continue;
		}
		put(&v, *p == '+' ? ' ' : *p, src->start[i], src->end[i]);
		i++;
	}
	return v;
}

/* Mark, in the original text, every span a form occupies in view v. */
static void
mark_forms(const View *v, List *forms, bool *marked)
{
	ListCell   *lc;

	foreach(lc, forms)
	{
		Form	   *f = lfirst(lc);

		for (int i = 0; i + f->len <= v->len; i++)
		{
			if (v->data[i] != f->data[0] || memcmp(v->data + i, f->data, f->len) != 0)
				continue;
			for (int k = v->start[i]; k < v->end[i + f->len - 1]; k++)
				marked[k] = true;
		}
	}
}

static void
add_form(List **forms, const char *data, int len)
{
	Form	   *f;

	if (len <= 0)
		return;
	f = palloc(sizeof(Form));
	f->data = data;
	f->len = len;
	*forms = lappend(*forms, f);
}

/* Is this the text of something a person would have encoded (user:password)? */
static bool
printable_text(const char *data, int len)
{
	for (int i = 0; i < len; i++)
		if ((unsigned char) data[i] < 0x20 || data[i] == 0x7f)
			return false;
	return pg_verify_mbstr(PG_UTF8, data, len, true);
}

/* Every form of every secret worth looking for. */
static List *
secret_forms(List *secrets)
{
	List	   *forms = NIL;
	ListCell   *lc;

	foreach(lc, secrets)
	{
		const char *s = lfirst(lc);
		int			len = strlen(s);
		int			enclen;
		char	   *enc;
		int			declen;
		char	   *dec;

		if (len == 0)
			continue;
		add_form(&forms, s, len);
		enc = palloc(pg_b64_enc_len(len) + 1);
		enclen = pg_b64_encode(s, len, enc, pg_b64_enc_len(len));
		add_form(&forms, enc, enclen);
		if (len < MIN_DERIVED)
			continue;
		dec = palloc(pg_b64_dec_len(len) + 1);
		declen = pg_b64_decode(s, len, dec, pg_b64_dec_len(len));
		if (declen >= MIN_DERIVED && printable_text(dec, declen))
			add_form(&forms, dec, declen);
	}
	return forms;
}

/* The longest secret, for the room an answer is read with. */
static int
longest(List *secrets)
{
	ListCell   *lc;
	int			max = 0;

	foreach(lc, secrets)
		max = Max(max, (int) strlen((const char *) lfirst(lc)));
	return max;
}

/*
 * How many bytes of an answer to keep for an excerpt of excerpt bytes: the
 * excerpt, and room for the longest secret once encoded (in any form).
 */
int
retl_redact_room(List *secrets, int excerpt)
{
	return excerpt + MAX_EXPANSION * pg_b64_enc_len(longest(secrets)) + 16;
}

/*
 * A copy of text (len bytes) with every form of every secret replaced by
 * "[redacted]", then cut to at most keep bytes (keep < 0: not cut).
 */
char *
retl_redact(List *secrets, const char *text, int len, int keep)
{
	List	   *forms;
	View		raw;
	View		json;
	View		url;
	View		json_url;
	bool	   *marked;
	StringInfoData out;
	ListCell   *lc;

	if (text == NULL)
		text = "";
	if (secrets == NIL)
	{
		int			n = keep >= 0 ? Min(len, keep) : len;

		return pnstrdup(text, n);
	}

	forms = secret_forms(secrets);
	raw = new_view(len);
	for (int i = 0; i < len; i++)
		put(&raw, text[i], i, i + 1);
	json = json_unescaped(&raw);
	url = url_decoded(&raw);
	json_url = url_decoded(&json);

	marked = palloc0(sizeof(bool) * (len + 1));
	mark_forms(&raw, forms, marked);
	mark_forms(&json, forms, marked);
	mark_forms(&url, forms, marked);
	mark_forms(&json_url, forms, marked);

	initStringInfo(&out);
	for (int i = 0; i < len && (keep < 0 || out.len < keep); i++)
	{
		if (!marked[i])
			appendStringInfoChar(&out, text[i]);
		else if (i == 0 || !marked[i - 1])
			appendStringInfoString(&out, MARKER);
	}
	if (keep >= 0 && out.len > keep)
		out.data[out.len = keep] = '\0';

	/* an excerpt ending with the start of a secret loses that end */
	foreach(lc, forms)
	{
		Form	   *f = lfirst(lc);

		for (int n = Min(f->len - 1, out.len); n >= MIN_TAIL; n--)
		{
			if (memcmp(out.data + out.len - n, f->data, n) == 0)
			{
				out.data[out.len -= n] = '\0';
				appendStringInfoString(&out, MARKER);
				break;
			}
		}
	}
	return out.data;
}

/* A scalar of a JSON document redacted; a number holding a secret a string. */
static void
redact_scalar(List *secrets, JsonbValue *v)
{
	char	   *text;
	char	   *redacted;

	if (v->type == jbvString)
		text = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
		text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	else
		return;
	redacted = retl_redact(secrets, text, strlen(text), -1);
	if (strcmp(redacted, text) == 0)
		return;
	v->type = jbvString;
	v->val.string.val = redacted;
	v->val.string.len = strlen(redacted);
}

/*
 * A JSON document with every secret removed from its strings (its keys
 * too) as retl_redact removes them from text, and a number whose text
 * holds one made the string "[redacted]": what is left stays JSON, its
 * other numbers exact.  (Walked only when its text held a secret: the
 * caller knows.)
 */
Jsonb *
retl_redact_jsonb(List *secrets, Jsonb *in)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;

	if (secrets == NIL)
		return in;
	it = JsonbIteratorInit(&in->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM)
		{
			redact_scalar(secrets, &v);
			res = pushJsonbValue(&state, tok, &v);
		}
		else
			/* (a raw scalar's array keeps its flag) */
			res = pushJsonbValue(&state, tok,
								 tok == WJB_BEGIN_ARRAY && v.val.array.rawScalar ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}
