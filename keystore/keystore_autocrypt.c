/* keystore_autocrypt: the Autocrypt Level 1 rules — header parsing, peer
 * state updates, the recommendation — kept pure, and the one place that
 * applies them to the database and the keyring. */
#include "keystore_autocrypt.h"

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Thread_local char keystore_autocrypt_error[512];

G_GNUC_PRINTF(1, 2)
static const char *keystore_autocrypt_errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(keystore_autocrypt_error, sizeof(keystore_autocrypt_error), fmt, ap);
	va_end(ap);
	for (char *p = keystore_autocrypt_error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return keystore_autocrypt_error;
}

/* ---- the header ---------------------------------------------------------------- */

void keystore_autocrypt_header_clear(keystore_autocrypt_header *h)
{
	if (h == NULL)
		return;
	g_free(h->addr);
	g_free(h->keydata);
	memset(h, 0, sizeof(*h));
}

static bool keystore_ac_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int keystore_ac_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict base64 with folding whitespace anywhere and optional padding:
 * anything else is an error, not skipped. */
static int keystore_ac_base64(const char *s, size_t len, unsigned char **out_r, size_t *out_len_r)
{
	unsigned char *out = g_malloc(len / 4 * 3 + 3);
	size_t n = 0, digits = 0, pad = 0;
	uint32_t acc = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (keystore_ac_space(c))
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		int v = keystore_ac_b64_value(c);
		if (v < 0 || pad > 0)
			goto fail;
		acc = acc << 6 | (uint32_t)v;
		digits++;
		if (digits % 4 == 0) {
			out[n++] = (unsigned char)(acc >> 16);
			out[n++] = (unsigned char)(acc >> 8);
			out[n++] = (unsigned char)acc;
			acc = 0;
		}
	}
	size_t rest = digits % 4;
	if (digits == 0 || rest == 1 || pad > 2 || (pad > 0 && rest + pad != 4))
		goto fail;
	if (rest == 2) {
		out[n++] = (unsigned char)(acc >> 4);
	} else if (rest == 3) {
		out[n++] = (unsigned char)(acc >> 10);
		out[n++] = (unsigned char)(acc >> 2);
	}
	*out_r = out;
	*out_len_r = n;
	return 0;
fail:
	g_free(out);
	return -1;
}

int keystore_autocrypt_header_parse(const char *value, size_t len,
				    keystore_autocrypt_header *h_r, const char **error_r)
{
	memset(h_r, 0, sizeof(*h_r));
	if (value == NULL) {
		*error_r = "no value";
		return -1;
	}
	if (len > KEYSTORE_AUTOCRYPT_HEADER_MAX) {
		*error_r = "larger than 10 KiB";
		return -1;
	}
	if (memchr(value, '\0', len) != NULL) {
		*error_r = "contains a NUL byte";
		return -1;
	}
	bool have_prefer = false, have_keydata = false;
	size_t pos = 0;
	while (pos < len) {
		const char *semi = memchr(value + pos, ';', len - pos);
		size_t end = semi != NULL ? (size_t)(semi - value) : len;
		size_t a = pos, b = end;
		pos = semi != NULL ? end + 1 : len;
		while (a < b && keystore_ac_space(value[a]))
			a++;
		while (b > a && keystore_ac_space(value[b - 1]))
			b--;
		if (a == b)
			continue;	/* "a=1;;" or a trailing ';' */
		if (have_keydata) {
			*error_r = "an attribute after keydata (keydata must be the last)";
			goto fail;
		}
		const char *eq = memchr(value + a, '=', b - a);
		if (eq == NULL) {
			*error_r = "an attribute without '='";
			goto fail;
		}
		size_t ne = (size_t)(eq - value), vs = ne + 1;
		while (ne > a && keystore_ac_space(value[ne - 1]))
			ne--;
		while (vs < b && keystore_ac_space(value[vs]))
			vs++;
		const char *name = value + a;
		size_t name_len = ne - a;
		if (name_len == 0) {
			*error_r = "an attribute without a name";
			goto fail;
		}
		if (name_len == 4 && memcmp(name, "addr", 4) == 0) {
			if (h_r->addr != NULL) {
				*error_r = "addr given twice";
				goto fail;
			}
			if (vs == b) {
				*error_r = "empty addr";
				goto fail;
			}
			h_r->addr = g_strndup(value + vs, b - vs);
		} else if (name_len == 14 && memcmp(name, "prefer-encrypt", 14) == 0) {
			if (have_prefer) {
				*error_r = "prefer-encrypt given twice";
				goto fail;
			}
			have_prefer = true;
			h_r->prefer_mutual = b - vs == 6 && memcmp(value + vs, "mutual", 6) == 0;
		} else if (name_len == 7 && memcmp(name, "keydata", 7) == 0) {
			have_keydata = true;
			if (keystore_ac_base64(value + vs, b - vs, &h_r->keydata,
					       &h_r->keydata_len) < 0) {
				*error_r = "keydata is not base64";
				goto fail;
			}
		} else if (name[0] != '_') {
			/* A critical attribute Level 1 does not know: the header
			 * is meant for a newer reader. */
			*error_r = "an unknown critical attribute";
			goto fail;
		}
	}
	if (h_r->addr == NULL) {
		*error_r = "no addr attribute";
		goto fail;
	}
	if (!have_keydata) {
		*error_r = "no keydata attribute";
		goto fail;
	}
	return 0;
fail:
	keystore_autocrypt_header_clear(h_r);
	return -1;
}

char *keystore_autocrypt_canonical(const char *addr)
{
	if (addr == NULL)
		return NULL;
	size_t len = strlen(addr);
	if (len == 0 || len > 320 || !g_utf8_validate(addr, (gssize)len, NULL))
		return NULL;
	const char *at = strrchr(addr, '@');
	if (at == NULL || at == addr || at[1] == '\0' || strchr(addr, '@') != at)
		return NULL;
	for (const char *p = addr; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c == 0x7f || strchr("<>()[],;:\\\"", c) != NULL)
			return NULL;
	}
	char *local = g_utf8_strdown(addr, at - addr);
	char *domain = g_hostname_to_ascii(at + 1);
	char *out = NULL;
	if (local != NULL && domain != NULL && domain[0] != '\0') {
		char *lower = g_ascii_strdown(domain, -1);
		out = g_strconcat(local, "@", lower, NULL);
		g_free(lower);
	}
	g_free(local);
	g_free(domain);
	return out;
}

static bool keystore_ac_same_address(const char *a, const char *b)
{
	char *ca = keystore_autocrypt_canonical(a), *cb = keystore_autocrypt_canonical(b);
	bool same = ca != NULL && cb != NULL && strcmp(ca, cb) == 0;
	g_free(ca);
	g_free(cb);
	return same;
}

int keystore_autocrypt_select(const char *const *values, const char *from,
			      keystore_autocrypt_header *h_r, const char **why_r)
{
	memset(h_r, 0, sizeof(*h_r));
	*why_r = "no Autocrypt header";
	unsigned valid = 0;
	for (size_t i = 0; values != NULL && values[i] != NULL; i++) {
		keystore_autocrypt_header h;
		const char *error;
		if (keystore_autocrypt_header_parse(values[i], strlen(values[i]), &h, &error) < 0) {
			if (valid == 0)
				*why_r = error;
			continue;
		}
		if (from == NULL || !keystore_ac_same_address(h.addr, from)) {
			/* Treated as invalid: it does not count towards "more
			 * than one". */
			if (valid == 0)
				*why_r = "its addr differs from the From address";
			keystore_autocrypt_header_clear(&h);
			continue;
		}
		if (++valid == 1) {
			*h_r = h;
		} else {
			keystore_autocrypt_header_clear(&h);
		}
	}
	if (valid > 1) {
		keystore_autocrypt_header_clear(h_r);
		*why_r = "more than one valid Autocrypt header (all ignored)";
		return 0;
	}
	if (valid == 1)
		*why_r = NULL;
	return valid == 1 ? 1 : 0;
}

/* ---- the peer state rules ---------------------------------------------------------- */

int64_t keystore_autocrypt_effective_date(int64_t date, int64_t now)
{
	return date <= 0 || date > now ? now : date;
}

static bool keystore_ac_same_key(const unsigned char *a, size_t alen,
				 const unsigned char *b, size_t blen)
{
	return a != NULL && b != NULL && alen == blen && memcmp(a, b, alen) == 0;
}

keystore_autocrypt_step keystore_autocrypt_update(keystore_autocrypt_peer *peer,
						  int64_t effective_date,
						  const keystore_autocrypt_header *h)
{
	/* 1. Older than the newest Autocrypt header seen: nothing. */
	if (effective_date < peer->autocrypt_timestamp)
		return KEYSTORE_AUTOCRYPT_UNCHANGED;
	/* 2. */
	if (effective_date > peer->last_seen)
		peer->last_seen = effective_date;
	/* 3. */
	if (h == NULL)
		return KEYSTORE_AUTOCRYPT_SEEN;
	/* 4.-6. */
	peer->autocrypt_timestamp = effective_date;
	if (!keystore_ac_same_key(peer->public_key, peer->public_key_len,
				  h->keydata, h->keydata_len)) {
		g_free(peer->public_key);
		peer->public_key = g_memdup2(h->keydata, h->keydata_len);
		peer->public_key_len = h->keydata_len;
		peer->public_key_fpr[0] = '\0';
	}
	peer->prefer_mutual = h->prefer_mutual;
	return KEYSTORE_AUTOCRYPT_TAKEN;
}

bool keystore_autocrypt_update_gossip(keystore_autocrypt_peer *peer, int64_t effective_date,
				      const keystore_autocrypt_header *h)
{
	if (peer->gossip_timestamp > effective_date)
		return false;
	peer->gossip_timestamp = effective_date;
	if (!keystore_ac_same_key(peer->gossip_key, peer->gossip_key_len,
				  h->keydata, h->keydata_len)) {
		g_free(peer->gossip_key);
		peer->gossip_key = g_memdup2(h->keydata, h->keydata_len);
		peer->gossip_key_len = h->keydata_len;
		peer->gossip_key_fpr[0] = '\0';
	}
	return true;
}

/* ---- the recommendation ------------------------------------------------------------ */

const char *keystore_autocrypt_recommendation_name(keystore_autocrypt_recommendation r)
{
	switch (r) {
	case KEYSTORE_AUTOCRYPT_DISCOURAGE:
		return "discourage";
	case KEYSTORE_AUTOCRYPT_AVAILABLE:
		return "available";
	case KEYSTORE_AUTOCRYPT_ENCRYPT:
		return "encrypt";
	case KEYSTORE_AUTOCRYPT_DISABLE:
		break;
	}
	return "disable";
}

keystore_autocrypt_recommendation
keystore_autocrypt_recommend_peer(const keystore_autocrypt_peer *peer, bool key_usable,
				  bool gossip_usable, bool own_mutual, bool reply_to_encrypted)
{
	if (peer == NULL)
		return KEYSTORE_AUTOCRYPT_DISABLE;
	bool have_key = peer->public_key != NULL && key_usable;
	bool have_gossip = peer->gossip_key != NULL && gossip_usable;
	if (!have_key && !have_gossip)
		return KEYSTORE_AUTOCRYPT_DISABLE;
	keystore_autocrypt_recommendation pre;
	if (!have_key)
		pre = KEYSTORE_AUTOCRYPT_DISCOURAGE;
	else if (peer->last_seen - peer->autocrypt_timestamp > KEYSTORE_AUTOCRYPT_STALE_SECONDS)
		pre = KEYSTORE_AUTOCRYPT_DISCOURAGE;
	else
		pre = KEYSTORE_AUTOCRYPT_AVAILABLE;
	if (reply_to_encrypted)
		return KEYSTORE_AUTOCRYPT_ENCRYPT;
	if (pre == KEYSTORE_AUTOCRYPT_AVAILABLE && peer->prefer_mutual && own_mutual)
		return KEYSTORE_AUTOCRYPT_ENCRYPT;
	return pre;
}

keystore_autocrypt_recommendation
keystore_autocrypt_recommend_combine(const keystore_autocrypt_recommendation *recs, size_t n)
{
	if (n == 0)
		return KEYSTORE_AUTOCRYPT_DISABLE;
	bool all_encrypt = true, any_discourage = false;
	for (size_t i = 0; i < n; i++) {
		if (recs[i] == KEYSTORE_AUTOCRYPT_DISABLE)
			return KEYSTORE_AUTOCRYPT_DISABLE;
		all_encrypt &= recs[i] == KEYSTORE_AUTOCRYPT_ENCRYPT;
		any_discourage |= recs[i] == KEYSTORE_AUTOCRYPT_DISCOURAGE;
	}
	if (all_encrypt)
		return KEYSTORE_AUTOCRYPT_ENCRYPT;
	return any_discourage ? KEYSTORE_AUTOCRYPT_DISCOURAGE : KEYSTORE_AUTOCRYPT_AVAILABLE;
}

/* The account as the peer table's key: canonical when it is an address. */
static char *keystore_ac_account(const char *account)
{
	char *c = keystore_autocrypt_canonical(account);
	return c != NULL ? c : g_strdup(account != NULL ? account : "");
}

int keystore_autocrypt_recommend(keystore_db *db, const char *account,
				 const char *const *recipients, size_t n, bool own_mutual,
				 bool reply_to_encrypted, keystore_autocrypt_usable_fn usable,
				 void *ctx, keystore_autocrypt_recommendation *rec_r,
				 char *why, size_t why_size, const char **error_r)
{
	keystore_autocrypt_recommendation *recs = g_new0(keystore_autocrypt_recommendation,
							 n > 0 ? n : 1);
	char *acct = keystore_ac_account(account);
	int ret = 0;
	for (size_t i = 0; i < n && ret == 0; i++) {
		char *addr = keystore_autocrypt_canonical(recipients[i]);
		keystore_autocrypt_peer peer;
		bool found = false;
		if (addr != NULL &&
		    keystore_autocrypt_peer_get(db, acct, addr, &peer, &found, error_r) < 0)
			ret = -1;
		if (ret == 0 && found) {
			bool key_ok = peer.public_key != NULL &&
				(usable == NULL || usable(ctx, recipients[i], peer.public_key_fpr));
			bool gossip_ok = peer.gossip_key != NULL &&
				(usable == NULL || usable(ctx, recipients[i], peer.gossip_key_fpr));
			recs[i] = keystore_autocrypt_recommend_peer(&peer, key_ok, gossip_ok, own_mutual,
								    reply_to_encrypted);
		} else {
			recs[i] = KEYSTORE_AUTOCRYPT_DISABLE;
		}
		if (found)
			keystore_autocrypt_peer_clear(&peer);
		g_free(addr);
	}
	if (ret == 0) {
		*rec_r = keystore_autocrypt_recommend_combine(recs, n);
		if (why != NULL && why_size > 0) {
			why[0] = '\0';
			for (size_t i = 0; i < n; i++) {
				/* The recipient that decided: the first with the
				 * combined answer (any, for "encrypt" and "available"). */
				if (recs[i] == *rec_r) {
					snprintf(why, why_size, "<%s>: %s",
						 recipients[i] != NULL ? recipients[i] : "?",
						 keystore_autocrypt_recommendation_name(recs[i]));
					break;
				}
			}
		}
	}
	g_free(acct);
	g_free(recs);
	return ret;
}

static bool keystore_ac_only_fpr(void *ctx, const char *address, const char *fingerprint)
{
	(void)address;
	return fingerprint != NULL && g_ascii_strcasecmp(fingerprint, ctx) == 0;
}

int keystore_autocrypt_opportunistic(keystore_db *db, const char *account, const char *address,
				     const char *fpr, bool own_mutual, bool *encrypt_r,
				     keystore_autocrypt_recommendation *rec_r,
				     const char **error_r)
{
	keystore_key_state st;
	bool found = false;
	char norm[65];
	*encrypt_r = true;
	if (rec_r != NULL)
		*rec_r = KEYSTORE_AUTOCRYPT_AVAILABLE;
	if (fpr == NULL || keystore_fingerprint_normalise(fpr, norm, sizeof(norm), error_r) < 0)
		return 0;	/* not a key the database can know: no say */
	if (keystore_key_state_get(db, norm, &st, &found, error_r) < 0)
		return -1;
	if (!found || st.source != KEYSTORE_SOURCE_AUTOCRYPT ||
	    st.acceptance == KEYSTORE_ACCEPTANCE_VERIFIED)
		return 0;
	keystore_autocrypt_recommendation rec;
	const char *const rcpts[] = { address };
	if (keystore_autocrypt_recommend(db, account, rcpts, 1, own_mutual, false,
					 keystore_ac_only_fpr, norm, &rec, NULL, 0, error_r) < 0)
		return -1;
	*encrypt_r = rec == KEYSTORE_AUTOCRYPT_AVAILABLE || rec == KEYSTORE_AUTOCRYPT_ENCRYPT;
	if (rec_r != NULL)
		*rec_r = rec;
	return 0;
}

/* ---- a received message ------------------------------------------------------------ */

static bool keystore_ac_key_has(const keystore_keyring_key *k, const char *address)
{
	for (size_t i = 0; k->addresses != NULL && k->addresses[i] != NULL; i++)
		if (keystore_ac_same_address(k->addresses[i], address))
			return true;
	return false;
}

/* Whether the keyring holds a usable key for address; *verified_r (may be
 * NULL) gets the fingerprint of a key the user verified for it, usable or
 * not (expired, say), "" when none. Addresses compare in their canonical
 * form: a verified key for "Bob@" guards "bob@" too. The whole keyring is
 * looked at, which is done only for a key not seen before. */
static int keystore_ac_keyring_state(keystore_keyring *kr, const char *address,
				     bool *usable_r, char *verified_r, const char **error_r)
{
	keystore_keyring_key *keys;
	size_t n;
	*usable_r = false;
	if (verified_r != NULL)
		verified_r[0] = '\0';
	if (keystore_keyring_list(kr, NULL, &keys, &n, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!keystore_ac_key_has(&keys[i], address))
			continue;
		if (verified_r != NULL && verified_r[0] == '\0' &&
		    keys[i].acceptance == KEYSTORE_ACCEPTANCE_VERIFIED)
			g_strlcpy(verified_r, keys[i].fingerprint, 65);
		*usable_r |= keys[i].unusable == NULL;
	}
	keystore_keyring_keys_free(&keys, n);
	return 0;
}

/* Whether fpr is in the keyring (as a primary key). */
static int keystore_ac_in_keyring(keystore_keyring *kr, const char *fpr, bool *in_r,
				  const char **error_r)
{
	keystore_keyring_key *keys;
	size_t n;
	*in_r = false;
	if (keystore_keyring_list(kr, fpr, &keys, &n, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		*in_r |= strcmp(keys[i].fingerprint, fpr) == 0;
	keystore_keyring_keys_free(&keys, n);
	return 0;
}

/* The address a key is imported for: its user ID with the address as
 * written there (gpg compares local parts exactly). */
static const char *keystore_ac_uid_address(const keystore_keyring_key *k, const char *address)
{
	for (size_t i = 0; k->addresses != NULL && k->addresses[i] != NULL; i++)
		if (keystore_ac_same_address(k->addresses[i], address))
			return k->addresses[i];
	return NULL;
}

/* A new key from a valid Autocrypt header of from: into the keyring, to
 * pending, or nowhere. -1 only when the keyring or database failed. */
static int keystore_ac_take_key(keystore_db *db, keystore_keyring *kr, const char *account,
				const char *from, const keystore_keyring_key *k,
				const unsigned char *keydata, size_t keydata_len,
				keystore_autocrypt_result *res, const char **error_r)
{
	keystore_key_state state;
	bool found, in_keyring, usable;
	char verified[65];
	if (keystore_key_state_get(db, k->fingerprint, &state, &found, error_r) < 0)
		return -1;
	if (found && state.acceptance == KEYSTORE_ACCEPTANCE_REJECTED) {
		res->key = KEYSTORE_AUTOCRYPT_KEY_REJECTED;
		return 0;
	}
	if (keystore_ac_in_keyring(kr, k->fingerprint, &in_keyring, error_r) < 0)
		return -1;
	if (in_keyring) {
		res->key = KEYSTORE_AUTOCRYPT_KEY_KNOWN;
		return 0;
	}
	const char *uid_address = keystore_ac_uid_address(k, from);
	if (uid_address == NULL) {
		res->key = KEYSTORE_AUTOCRYPT_KEY_UNUSABLE;
		res->key_why = keystore_autocrypt_errorf("key %s has no user ID for %s",
							 k->fingerprint, from);
		return 0;
	}
	if (keystore_ac_keyring_state(kr, uid_address, &usable, verified, error_r) < 0)
		return -1;
	if (verified[0] != '\0') {
		keystore_pending_key p = {
			.account = (char *)account, .addr = (char *)from,
			.keydata = (unsigned char *)keydata, .keydata_len = keydata_len,
			.source = KEYSTORE_SOURCE_AUTOCRYPT,
		};
		g_strlcpy(p.old_fingerprint, verified, sizeof(p.old_fingerprint));
		g_strlcpy(p.new_fingerprint, k->fingerprint, sizeof(p.new_fingerprint));
		if (keystore_pending_add(db, &p, &res->pending_id, error_r) < 0)
			return -1;
		res->key = KEYSTORE_AUTOCRYPT_KEY_PENDING;
		return 0;
	}
	const keystore_import_options opt = {
		.address = uid_address, .source = KEYSTORE_SOURCE_AUTOCRYPT,
	};
	keystore_keyring_key *keys;
	size_t n;
	const char *why;
	if (keystore_keyring_import(kr, keydata, keydata_len, &opt, &keys, &n, &why) < 0) {
		/* The key was read fine but gpg would not take it: the peer
		 * state keeps it, nothing is sent with it. */
		res->key = KEYSTORE_AUTOCRYPT_KEY_UNUSABLE;
		res->key_why = keystore_autocrypt_errorf("%s", why);
		return 0;
	}
	keystore_keyring_keys_free(&keys, n);
	res->key = KEYSTORE_AUTOCRYPT_KEY_IMPORTED;
	return 0;
}

static bool keystore_ac_listed(const char *const *list, const char *address)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		if (keystore_ac_same_address(list[i], address))
			return true;
	return false;
}

static void keystore_ac_peer_init(keystore_autocrypt_peer *peer, const char *account,
				  const char *addr)
{
	memset(peer, 0, sizeof(*peer));
	peer->account = g_strdup(account);
	peer->addr = g_strdup(addr);
}

static bool keystore_ac_peer_equal(const keystore_autocrypt_peer *a,
				   const keystore_autocrypt_peer *b)
{
	return a->last_seen == b->last_seen && a->autocrypt_timestamp == b->autocrypt_timestamp &&
	       a->prefer_mutual == b->prefer_mutual && a->gossip_timestamp == b->gossip_timestamp &&
	       strcmp(a->public_key_fpr, b->public_key_fpr) == 0 &&
	       strcmp(a->gossip_key_fpr, b->gossip_key_fpr) == 0 &&
	       (a->public_key == NULL) == (b->public_key == NULL) &&
	       (a->gossip_key == NULL) == (b->gossip_key == NULL) &&
	       (a->public_key == NULL ||
		keystore_ac_same_key(a->public_key, a->public_key_len, b->public_key,
				     b->public_key_len)) &&
	       (a->gossip_key == NULL ||
		keystore_ac_same_key(a->gossip_key, a->gossip_key_len, b->gossip_key,
				     b->gossip_key_len));
}

/* One change to a peer row (keystore_autocrypt_peer_update): the header's
 * (or, gossip, the gossip value's) rules applied to the stored state. */
typedef struct {
	const char *account, *addr;
	int64_t effective;
	const keystore_autocrypt_header *h;	/* NULL: a message without a valid header */
	bool gossip;
	const char *fpr;	/* the key in h, once inspected; NULL before */
	/* out */
	bool need_inspect;	/* h brings a key the row does not have: inspect first */
	keystore_autocrypt_step step;	/* the header's */
	bool taken;		/* the gossip's */
	bool new_key;		/* taken, and another key than the row had */
	char key_fpr[65];	/* the row's public key fingerprint afterwards */
} keystore_ac_change;

static bool keystore_ac_apply(keystore_autocrypt_peer *peer, bool found, void *ctx)
{
	keystore_ac_change *c = ctx;
	if (!found)
		keystore_ac_peer_init(peer, c->account, c->addr);
	keystore_autocrypt_peer before;
	keystore_autocrypt_peer_copy(&before, peer);
	bool write = false;
	c->taken = c->new_key = false;
	c->step = KEYSTORE_AUTOCRYPT_UNCHANGED;
	if (c->gossip) {
		bool new_key = !keystore_ac_same_key(peer->gossip_key, peer->gossip_key_len,
						     c->h->keydata, c->h->keydata_len);
		if (new_key && c->fpr == NULL) {
			c->need_inspect = true;
		} else if (keystore_autocrypt_update_gossip(peer, c->effective, c->h)) {
			c->taken = true;
			c->new_key = new_key;
			if (new_key)
				g_strlcpy(peer->gossip_key_fpr, c->fpr, sizeof(peer->gossip_key_fpr));
			write = !keystore_ac_peer_equal(peer, &before);
		}
	} else {
		bool new_key = c->h != NULL &&
			!keystore_ac_same_key(peer->public_key, peer->public_key_len,
					      c->h->keydata, c->h->keydata_len);
		if (new_key && c->effective >= peer->autocrypt_timestamp && c->fpr == NULL) {
			c->need_inspect = true;
		} else {
			c->step = keystore_autocrypt_update(peer, c->effective, c->h);
			if (c->step == KEYSTORE_AUTOCRYPT_TAKEN && new_key) {
				c->new_key = true;
				g_strlcpy(peer->public_key_fpr, c->fpr, sizeof(peer->public_key_fpr));
			}
			g_strlcpy(c->key_fpr, peer->public_key_fpr, sizeof(c->key_fpr));
			write = c->step != KEYSTORE_AUTOCRYPT_UNCHANGED &&
				!keystore_ac_peer_equal(peer, &before);
		}
	}
	keystore_autocrypt_peer_clear(&before);
	return write;
}

typedef enum {
	KEYSTORE_AC_ROW_DONE = 0,	/* c says what happened */
	KEYSTORE_AC_ROW_ERROR,		/* *error_r */
	KEYSTORE_AC_ROW_BAD_KEY,	/* c->h's keydata is no OpenPGP key: nothing written */
	KEYSTORE_AC_ROW_BUSY,		/* the row kept changing under us: nothing written */
} keystore_ac_row;

/* Applies c to the peer row in one transaction (keystore_ac_apply); a key
 * the row does not have yet is inspected by gpg into *k outside the
 * transaction, and the update tried again with its fingerprint. */
static keystore_ac_row keystore_ac_update_row(keystore_db *db, keystore_keyring *kr,
					      keystore_ac_change *c, keystore_keyring_key *k,
					      const char **error_r)
{
	bool written;
	for (int attempt = 0; attempt < 3; attempt++) {
		c->need_inspect = false;
		if (keystore_autocrypt_peer_update(db, c->account, c->addr, keystore_ac_apply, c,
						   &written, error_r) < 0)
			return KEYSTORE_AC_ROW_ERROR;
		if (!c->need_inspect)
			return KEYSTORE_AC_ROW_DONE;
		const char *why;
		keystore_keyring_key_clear(k);
		if (keystore_keyring_inspect(kr, c->h->keydata, c->h->keydata_len, k, &why) < 0)
			return KEYSTORE_AC_ROW_BAD_KEY;
		c->fpr = k->fingerprint;
	}
	return KEYSTORE_AC_ROW_BUSY;
}

/* One Autocrypt-Gossip value of an encrypted message. */
static int keystore_ac_gossip(keystore_db *db, keystore_keyring *kr, const char *account,
			      const keystore_autocrypt_message *m, int64_t effective,
			      const char *value, keystore_autocrypt_result *res,
			      const char **error_r)
{
	keystore_autocrypt_header h;
	const char *why;
	if (keystore_autocrypt_header_parse(value, strlen(value), &h, &why) < 0) {
		res->gossip_ignored++;
		return 0;
	}
	char *addr = keystore_autocrypt_canonical(h.addr);
	int ret = 0;
	if (addr == NULL || strcmp(addr, account) == 0 ||
	    !keystore_ac_listed(m->recipients, h.addr)) {
		res->gossip_ignored++;
		goto out;
	}
	keystore_keyring_key k = { 0 };
	keystore_ac_change c = {
		.account = account, .addr = addr, .effective = effective, .h = &h, .gossip = true,
	};
	keystore_ac_row row = keystore_ac_update_row(db, kr, &c, &k, error_r);
	if (row == KEYSTORE_AC_ROW_ERROR) {
		ret = -1;
	} else if (row != KEYSTORE_AC_ROW_DONE) {
		res->gossip_ignored++;
	} else if (c.taken) {
		res->gossip_taken++;
		const char *uid_address = c.new_key ? keystore_ac_uid_address(&k, h.addr) : NULL;
		bool usable = true, in_keyring = true;
		keystore_key_state state;
		bool state_found = false;
		/* Gossip fills a gap, it never competes with a key the
		 * keyring has for the address. */
		if (uid_address != NULL &&
		    (keystore_ac_keyring_state(kr, uid_address, &usable, NULL, error_r) < 0 ||
		     keystore_ac_in_keyring(kr, k.fingerprint, &in_keyring, error_r) < 0 ||
		     keystore_key_state_get(db, k.fingerprint, &state, &state_found, error_r) < 0))
			ret = -1;
		if (ret == 0 && uid_address != NULL && !usable && !in_keyring &&
		    !(state_found && state.acceptance == KEYSTORE_ACCEPTANCE_REJECTED)) {
			const keystore_import_options opt = {
				.address = uid_address, .source = KEYSTORE_SOURCE_AUTOCRYPT,
			};
			keystore_keyring_key *keys;
			size_t n;
			if (keystore_keyring_import(kr, h.keydata, h.keydata_len, &opt, &keys, &n,
						    &why) == 0) {
				keystore_keyring_keys_free(&keys, n);
				res->gossip_imported++;
			}
		}
	}
	keystore_keyring_key_clear(&k);
out:
	g_free(addr);
	keystore_autocrypt_header_clear(&h);
	return ret;
}

int keystore_autocrypt_process(keystore_db *db, keystore_keyring *kr,
			       const keystore_autocrypt_message *m,
			       keystore_autocrypt_result *result_r, const char **error_r)
{
	keystore_autocrypt_result *res = result_r;
	memset(res, 0, sizeof(*res));
	char *from = keystore_autocrypt_canonical(m->from);
	if (from == NULL) {
		res->header_why = "no single From address";
		return 0;
	}
	char *account = keystore_ac_account(m->account);
	if (strcmp(account, from) == 0) {
		/* The user's own keys are never learned from mail: anyone can
		 * write a message "from" the user. */
		res->header_why = "the From address is the account's own";
		g_free(account);
		g_free(from);
		return 0;
	}
	int64_t now = m->now > 0 ? m->now : (int64_t)time(NULL);
	int64_t effective = keystore_autocrypt_effective_date(m->date, now);
	int ret = 0;

	keystore_autocrypt_header h;
	bool have_header = keystore_autocrypt_select(m->autocrypt, m->from, &h,
						     &res->header_why) == 1;
	/* The peer row is read and written in one transaction, so that two
	 * sessions reading mail from the same correspondent at once never
	 * lose each other's change. */
	keystore_keyring_key k = { 0 };
	keystore_ac_change c = {
		.account = account, .addr = from, .effective = effective,
		.h = have_header ? &h : NULL,
	};
	keystore_ac_row row = keystore_ac_update_row(db, kr, &c, &k, error_r);
	if (row == KEYSTORE_AC_ROW_BAD_KEY) {
		/* keydata that is no OpenPGP key makes the header invalid. */
		res->header_why = "keydata is not one OpenPGP public key";
		keystore_autocrypt_header_clear(&h);
		have_header = false;
		c.h = NULL;
		row = keystore_ac_update_row(db, kr, &c, &k, error_r);
	}
	res->step = c.step;
	if (row == KEYSTORE_AC_ROW_ERROR) {
		ret = -1;
	} else if (row == KEYSTORE_AC_ROW_BUSY) {
		/* Leave it to the others. */
		res->step = KEYSTORE_AUTOCRYPT_UNCHANGED;
		res->header_why = "the peer state changed meanwhile";
	} else if (ret == 0 && res->step == KEYSTORE_AUTOCRYPT_TAKEN) {
		if (c.new_key)
			ret = keystore_ac_take_key(db, kr, account, from, &k, h.keydata,
						   h.keydata_len, res, error_r);
		g_strlcpy(res->fingerprint, c.key_fpr, sizeof(res->fingerprint));
	} else if (res->step == KEYSTORE_AUTOCRYPT_UNCHANGED && have_header) {
		res->header_why = "older than the newest Autocrypt header seen";
	}
	keystore_keyring_key_clear(&k);
	keystore_autocrypt_header_clear(&h);

	/* Gossip outside encryption could come from anyone on the path. */
	for (size_t i = 0; ret == 0 && m->gossip != NULL && m->gossip[i] != NULL; i++) {
		if (!m->encrypted) {
			res->gossip_ignored++;
			continue;
		}
		ret = keystore_ac_gossip(db, kr, account, m, effective, m->gossip[i], res, error_r);
	}
	g_free(account);
	g_free(from);
	return ret;
}
