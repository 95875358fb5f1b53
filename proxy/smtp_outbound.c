/* smtp_outbound: per message, the policy decision (client header > address
 * rule > domain rule > account default), the key lookups, the split into
 * copies so Bcc recipients stay hidden, and each copy's rendering. */
#include "smtp_outbound.h"

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"
#include "keystore_autocrypt.h"
#include "log.h"
#include "outbound.h"

/* How much of the body is looked at to recognise an armored PGP message. */
#define SMTP_OUTBOUND_BODY_PREFIX 4096
#define SMTP_OUTBOUND_READ_CHUNK (64 * 1024)

typedef struct {
	GArray *rcpts;			/* size_t indexes */
	smtp_copy_kind kind;
	bool sign;
	GPtrArray *keys;		/* gpgme_key_t, encrypted only */
} smtp_copy;

struct smtp_outbound {
	const session_env *env;
	crypto_worker *worker;		/* created at the first signature or encryption */
	crypto_outbound_header *header;
	uint64_t body_offset;
	GPtrArray *copies;		/* smtp_copy */
	gpgme_key_t own_key;		/* the sender's, NULL when none */
	char *autocrypt;		/* the Autocrypt value, NULL when none */
	char *recipients;		/* for the decision log */
	/* What the decision log says of a message relayed as decided, when
	 * there is something to say: that Autocrypt advised against
	 * encrypting to a recipient under opportunistic. */
	char note[256];
	char reply[1024];
	metrics_reason why;		/* of the last failure reply */
};

static void smtp_copy_free(gpointer p)
{
	smtp_copy *c = p;
	g_array_unref(c->rcpts);
	if (c->keys != NULL)
		g_ptr_array_unref(c->keys);
	g_free(c);
}

static void smtp_key_unref(gpointer p)
{
	gpgme_key_unref(p);
}

smtp_outbound *smtp_outbound_new(const session_env *env)
{
	smtp_outbound *o = g_new0(smtp_outbound, 1);
	o->env = env;
	o->copies = g_ptr_array_new_with_free_func(smtp_copy_free);
	return o;
}

void smtp_outbound_reset(smtp_outbound *o)
{
	crypto_outbound_header_free(&o->header);
	g_ptr_array_set_size(o->copies, 0);
	if (o->own_key != NULL)
		gpgme_key_unref(o->own_key);
	o->own_key = NULL;
	g_free(o->autocrypt);
	o->autocrypt = NULL;
	g_free(o->recipients);
	o->recipients = NULL;
	o->note[0] = '\0';
	o->body_offset = 0;
	o->why = METRICS_REASON_OTHER;
}

void smtp_outbound_free(smtp_outbound **op)
{
	smtp_outbound *o = *op;
	if (o == NULL)
		return;
	smtp_outbound_reset(o);
	g_ptr_array_unref(o->copies);
	crypto_worker_free(&o->worker);
	g_free(o);
	*op = NULL;
}

char *smtp_outbound_path_address(const char *path, size_t len)
{
	if (len >= 2 && path[0] == '<' && path[len - 1] == '>') {
		path++;
		len -= 2;
	}
	/* A source route "@a,@b:user@domain" names hosts, not the mailbox. */
	if (len > 0 && path[0] == '@') {
		const char *colon = memchr(path, ':', len);
		if (colon == NULL)
			return NULL;
		len -= (size_t)(colon + 1 - path);
		path = colon + 1;
	}
	if (len == 0 || len > 320 || memchr(path, '@', len) == NULL)
		return NULL;
	return g_strndup(path, len);
}

static const char *smtp_outbound_format(smtp_outbound *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *smtp_outbound_format(smtp_outbound *o, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(o->reply, sizeof(o->reply), fmt, args);
	va_end(args);
	return o->reply;
}

/* The policy that applies to address from the rules and the account. -1
 * on a database failure. */
static int smtp_outbound_rule_policy(smtp_outbound *o, const char *address,
				     keystore_policy *p_r, const char **error_r)
{
	keystore_policy p = KEYSTORE_POLICY_NONE;
	/* A gateway has the organisation's rules from its config only. */
	if (o->env->account->gateway != NULL) {
		*p_r = gateway_policy(o->env->account->gateway, address, NULL);
		return 0;
	}
	if (address != NULL &&
	    keystore_policy_lookup(o->env->db, address, &p, NULL, 0, error_r) < 0) {
		o->why = METRICS_REASON_POLICY_STORE;
		return -1;
	}
	*p_r = p != KEYSTORE_POLICY_NONE ? p : o->env->account->policy;
	return 0;
}

const char *smtp_outbound_check_rcpt(smtp_outbound *o, const char *address)
{
	const config_gateway *gw = o->env->account->gateway;
	/* A gateway refuses single recipients only when told to split: else
	 * a message is refused whole at its end (no partial delivery). */
	if (gw != NULL ? !gw->split : o->env->account->policy_header)
		return NULL;
	if (address == NULL)
		return NULL;
	keystore_policy p;
	const char *error;
	if (smtp_outbound_rule_policy(o, address, &p, &error) < 0) {
		log_error(o->env->id, "looking up the policy", "%s", error);
		return smtp_outbound_format(o, "451 4.3.0 Cannot read the encryption policy, "
					    "try again later");
	}
	if (p != KEYSTORE_POLICY_REQUIRE)
		return NULL;
	gpgme_key_t key;
	char why[200];
	keystore_key_result r = keystore_keys_find(o->env->keys, address, false, &key,
						   why, sizeof(why));
	if (r == KEYSTORE_KEY_FOUND) {
		gpgme_key_unref(key);
		return NULL;
	}
	if (r == KEYSTORE_KEY_TEMPFAIL) {
		log_warn(o->env->id, "looking up keys", "<%s>: %s", address, why);
		o->why = METRICS_REASON_KEY_LOOKUP;
		return smtp_outbound_format(o, "451 4.7.1 <%s>: key lookup failed temporarily, "
					    "try again later", address);
	}
	log_info(o->env->id, "checking recipient", "<%s>: encryption required, %s", address, why);
	o->why = METRICS_REASON_NO_KEY;
	return smtp_outbound_format(o, "550 5.7.1 <%s>: encryption is required and there is "
				    "no usable OpenPGP key", address);
}

/* Reads the header block from the spool. -1 with the reply set. */
static int smtp_outbound_read_header(smtp_outbound *o, smtp_spool *in)
{
	const char *error;
	if (smtp_spool_rewind(in, &error) < 0) {
		log_error(o->env->id, "reading spooled message", "%s", error);
		o->why = METRICS_REASON_SPOOL;
		smtp_outbound_format(o, "451 4.3.0 Cannot read the stored message, try again later");
		return -1;
	}
	GByteArray *buf = g_byte_array_new();
	uint8_t *chunk = g_malloc(SMTP_OUTBOUND_READ_CHUNK);
	size_t block_len = 0;
	bool blank = false, found = false, at_end = false;
	int ret = -1;
	while (!found) {
		ssize_t n = smtp_spool_read(in, chunk, SMTP_OUTBOUND_READ_CHUNK, &error);
		if (n < 0) {
			log_error(o->env->id, "reading spooled message", "%s", error);
			o->why = METRICS_REASON_SPOOL;
			smtp_outbound_format(o, "451 4.3.0 Cannot read the stored message, try again later");
			goto out;
		}
		at_end = n == 0;
		g_byte_array_append(buf, chunk, (guint)n);
		found = crypto_header_block_end(buf->data, buf->len, at_end, &block_len, &blank) == 1;
		if (!found && buf->len > CRYPTO_MAX_HEADER_BLOCK) {
			o->why = METRICS_REASON_MESSAGE;
			smtp_outbound_format(o, "552 5.6.0 The header section is larger than %d bytes",
					     CRYPTO_MAX_HEADER_BLOCK);
			goto out;
		}
	}
	/* Fewer than PREFIX bytes of body in the buffer only when the
	 * message ends there; read the rest otherwise. */
	while (!at_end && buf->len < block_len + SMTP_OUTBOUND_BODY_PREFIX) {
		ssize_t n = smtp_spool_read(in, chunk, SMTP_OUTBOUND_READ_CHUNK, &error);
		if (n <= 0)
			break;
		g_byte_array_append(buf, chunk, (guint)n);
	}
	size_t prefix = buf->len - block_len;
	if (prefix > SMTP_OUTBOUND_BODY_PREFIX)
		prefix = SMTP_OUTBOUND_BODY_PREFIX;
	o->header = crypto_outbound_header_parse(buf->data, block_len, blank,
						 buf->data + block_len, prefix);
	o->body_offset = block_len;
	ret = 0;
out:
	g_free(chunk);
	g_byte_array_unref(buf);
	return ret;
}

static smtp_copy *smtp_copy_new(smtp_copy_kind kind, bool sign)
{
	smtp_copy *c = g_new0(smtp_copy, 1);
	c->rcpts = g_array_new(FALSE, FALSE, sizeof(size_t));
	c->kind = kind;
	c->sign = sign;
	return c;
}

/* Appends "<addr>" to a refusal list kept under the reply's size. */
static void smtp_outbound_name(GString *list, unsigned *named, unsigned *more,
			       const char *address)
{
	if (list->len > 300) {
		(*more)++;
		return;
	}
	g_string_append_printf(list, "%s<%s>", *named > 0 ? ", " : "", address);
	(*named)++;
}

/* Under opportunistic, whether Autocrypt lets key serve address (see
 * keystore_autocrypt_opportunistic). When it does not, the note for the
 * decision log says so. A database failure lets the key serve: the
 * rules never ask for less encryption than the keys allow. */
static bool smtp_outbound_autocrypt_allows(smtp_outbound *o, const char *address,
					   gpgme_key_t key)
{
	/* Autocrypt peer state belongs to an account, never to a gateway. */
	if (o->env->account->gateway != NULL || key->subkeys == NULL)
		return true;
	bool encrypt = true;
	keystore_autocrypt_recommendation rec;
	const char *error;
	if (keystore_autocrypt_opportunistic(o->env->db, o->env->account->address, address,
					     key->subkeys->fpr,
					     o->env->account->prefer_encrypt_mutual, &encrypt,
					     &rec, &error) < 0) {
		log_warn(o->env->id, "reading Autocrypt peer state", "%s", error);
		return true;
	}
	if (encrypt)
		return true;
	if (o->note[0] == '\0')
		snprintf(o->note, sizeof(o->note), "Autocrypt recommendation %s for <%s>: "
			 "sent as written", keystore_autocrypt_recommendation_name(rec), address);
	log_info(o->env->id, "deciding", "<%s>: Autocrypt recommendation %s, not encrypting "
		 "to the key it brought", address, keystore_autocrypt_recommendation_name(rec));
	return false;
}

/* The sender's own key: the From address's when it has a secret key
 * here, else the account's. Also prepares the Autocrypt value, which must
 * name the From address. -1 on a temporary failure (reply set). */
static int smtp_outbound_own_key(smtp_outbound *o)
{
	const char *from = crypto_outbound_header_from(o->header);
	const char *account = o->env->account->address;
	char why[200];
	keystore_key_result r = KEYSTORE_KEY_NONE;
	if (o->env->account->gateway != NULL) {
		/* A gateway is not the sender: it signs with the organisation's
		 * key when it has one, adds no Autocrypt header (that must be
		 * the From address's own), and encrypts to no key of its own. */
		if (account != NULL)
			r = keystore_keys_find(o->env->keys, account, true, &o->own_key,
					       why, sizeof(why));
		if (r == KEYSTORE_KEY_TEMPFAIL)
			goto tempfail;
		if (r == KEYSTORE_KEY_NONE && account != NULL)
			log_warn(o->env->id, "looking up the signing key", "<%s>: %s", account, why);
		return 0;
	}
	if (from != NULL)
		r = keystore_keys_find(o->env->keys, from, true, &o->own_key, why, sizeof(why));
	if (r == KEYSTORE_KEY_TEMPFAIL)
		goto tempfail;
	if (r == KEYSTORE_KEY_FOUND) {
		unsigned char *data;
		size_t len;
		if (keystore_keys_export_minimal(o->env->keys, o->own_key, &data, &len,
						 why, sizeof(why)) == 0) {
			o->autocrypt = crypto_autocrypt_value(from,
							      o->env->account->prefer_encrypt_mutual,
							      data, len);
			g_free(data);
		} else {
			log_warn(o->env->id, "preparing the Autocrypt header", "%s", why);
		}
		return 0;
	}
	if (from == NULL || !keystore_address_equal(from, account)) {
		r = keystore_keys_find(o->env->keys, account, true, &o->own_key, why, sizeof(why));
		if (r == KEYSTORE_KEY_TEMPFAIL)
			goto tempfail;
	}
	return 0;
tempfail:
	log_warn(o->env->id, "looking up the own key", "%s", why);
	o->why = METRICS_REASON_KEY_LOOKUP;
	smtp_outbound_format(o, "451 4.7.1 Key lookup failed temporarily, try again later");
	return -1;
}

/* A gateway's group of recipients (those the header names, or one Bcc
 * recipient): each is judged on its own — encrypted where there is a key
 * and the rules allow it, as written where the rules allow that, named in
 * missing where a rule requires encryption and there is no key. Those with
 * keys share one encrypted copy. -1 on a temporary failure (reply set). */
static int smtp_outbound_gateway_group(smtp_outbound *o, GArray *g, char *const *rcpts,
				       keystore_policy header_policy, bool sign,
				       GString *missing, unsigned *named, unsigned *more,
				       smtp_copy **plain, GPtrArray *encrypted)
{
	const session_env *env = o->env;
	smtp_copy *enc = NULL;
	for (guint k = 0; k < g->len; k++) {
		size_t i = g_array_index(g, size_t, k);
		const char *addr = rcpts[i];
		keystore_policy p = header_policy;
		const char *error = NULL;
		if (p == KEYSTORE_POLICY_NONE)
			(void)smtp_outbound_rule_policy(o, addr, &p, &error);
		gpgme_key_t key = NULL;
		keystore_key_result r = KEYSTORE_KEY_NONE;
		char why[200] = "not an address";
		if (p != KEYSTORE_POLICY_NEVER && addr != NULL)
			r = keystore_keys_find(env->keys, addr, false, &key, why, sizeof(why));
		if (r == KEYSTORE_KEY_TEMPFAIL) {
			log_warn(env->id, "looking up keys", "<%s>: %s", addr, why);
			o->why = METRICS_REASON_KEY_LOOKUP;
			smtp_outbound_format(o, "451 4.7.1 Key lookup for <%s> failed "
					     "temporarily, try again later", addr);
			if (enc != NULL)
				smtp_copy_free(enc);
			return -1;
		}
		if (r == KEYSTORE_KEY_FOUND) {
			if (enc == NULL) {
				enc = smtp_copy_new(SMTP_COPY_ENCRYPTED, sign);
				enc->keys = g_ptr_array_new_with_free_func(smtp_key_unref);
			}
			g_array_append_val(enc->rcpts, i);
			g_ptr_array_add(enc->keys, key);
			continue;
		}
		if (p != KEYSTORE_POLICY_NEVER)
			log_info(env->id, "looking up keys", "<%s>: %s", addr != NULL ? addr : "?", why);
		if (p == KEYSTORE_POLICY_REQUIRE) {
			smtp_outbound_name(missing, named, more, addr != NULL ? addr : "?");
			continue;
		}
		if (*plain == NULL)
			*plain = smtp_copy_new(SMTP_COPY_PLAIN, sign);
		g_array_append_val((*plain)->rcpts, i);
	}
	if (enc != NULL)
		g_ptr_array_add(encrypted, enc);
	return 0;
}

int smtp_outbound_decide(smtp_outbound *o, smtp_spool *in, char *const *rcpts,
			 size_t n_rcpts, const char **reply_r)
{
	const session_env *env = o->env;
	const config_account *acct = env->account;
	smtp_outbound_reset(o);
	GString *all = g_string_new(NULL);
	for (size_t i = 0; i < n_rcpts; i++)
		g_string_append_printf(all, "%s%s", i > 0 ? "," : "", rcpts[i] != NULL ? rcpts[i] : "?");
	o->recipients = g_string_free(all, FALSE);
	*reply_r = o->reply;
	if (smtp_outbound_read_header(o, in) < 0) {
		smtp_outbound_log(o, "refused", o->reply + 4);
		return -1;
	}

	keystore_policy header_policy = KEYSTORE_POLICY_NONE;
	int header_sign = -1;
	const char *error;
	/* A gateway that does not honour X-Sealpost-* does not judge them
	 * either (they are dropped all the same): mail from outside is not
	 * refused for a header its sender had no business setting. */
	bool read_requests = acct->gateway == NULL || acct->policy_header;
	if (read_requests &&
	    crypto_outbound_header_requests(o->header, &header_policy, &header_sign, &error) < 0) {
		o->why = METRICS_REASON_MESSAGE;
		smtp_outbound_format(o, "554 5.6.0 %s", error);
		smtp_outbound_log(o, "refused", error);
		return -1;
	}
	if (!acct->policy_header) {
		header_policy = KEYSTORE_POLICY_NONE;
		header_sign = -1;
	}
	bool sign = header_sign >= 0 ? header_sign == 1 : acct->sign;

	if (smtp_outbound_own_key(o) < 0) {
		smtp_outbound_log(o, "tempfail", "own key lookup failed");
		return -1;
	}
	if (sign && o->own_key == NULL && acct->gateway != NULL && acct->sign) {
		/* The organisation's key is configured but not usable: fixed
		 * by its administrator, so the MTA keeps the mail meanwhile. */
		o->why = METRICS_REASON_SIGNING_KEY;
		smtp_outbound_format(o, "451 4.7.0 The gateway's signing key <%s> is not usable, "
				     "try again later", acct->address);
		smtp_outbound_log(o, "tempfail", "the signing key is not usable");
		return -1;
	}
	if (sign && o->own_key == NULL) {
		o->why = METRICS_REASON_SIGNING_KEY;
		smtp_outbound_format(o, "554 5.7.1 Signing is on but there is no usable secret key "
				     "for <%s>", acct->address != NULL ? acct->address : "?");
		smtp_outbound_log(o, "refused", "signing is on and there is no own key");
		return -1;
	}

	if (crypto_outbound_header_encrypted(o->header)) {
		smtp_copy *c = smtp_copy_new(SMTP_COPY_PASSTHROUGH, false);
		for (size_t i = 0; i < n_rcpts; i++)
			g_array_append_val(c->rcpts, i);
		g_ptr_array_add(o->copies, c);
		return 0;
	}

	/* Groups: the recipients the header names share a copy; each of the
	 * others (Bcc) gets one of its own, so nobody sees their key IDs. */
	GPtrArray *groups = g_ptr_array_new_with_free_func((GDestroyNotify)g_array_unref);
	GArray *visible = g_array_new(FALSE, FALSE, sizeof(size_t));
	for (size_t i = 0; i < n_rcpts; i++) {
		if (rcpts[i] != NULL && crypto_outbound_header_names(o->header, rcpts[i])) {
			g_array_append_val(visible, i);
		} else {
			GArray *g = g_array_new(FALSE, FALSE, sizeof(size_t));
			g_array_append_val(g, i);
			g_ptr_array_add(groups, g);
		}
	}
	/* The visible copy goes last: Bcc copies are the ones more likely to
	 * be refused, and a failure then leaves the main copy unsent. */
	if (visible->len > 0)
		g_ptr_array_add(groups, visible);
	else
		g_array_unref(visible);

	GString *missing = g_string_new(NULL);
	unsigned named = 0, more = 0;
	int ret = 0;
	smtp_copy *plain = NULL;
	GPtrArray *encrypted = g_ptr_array_new();
	for (guint gi = 0; gi < groups->len && ret == 0; gi++) {
		GArray *g = g_ptr_array_index(groups, gi);
		bool any_require = false, any_never = false;
		if (acct->gateway != NULL) {
			ret = smtp_outbound_gateway_group(o, g, rcpts, header_policy, sign, missing,
							  &named, &more, &plain, encrypted);
			continue;
		}
		for (guint k = 0; k < g->len; k++) {
			const char *addr = rcpts[g_array_index(g, size_t, k)];
			keystore_policy p = header_policy;
			if (p == KEYSTORE_POLICY_NONE &&
			    smtp_outbound_rule_policy(o, addr, &p, &error) < 0) {
				log_error(env->id, "looking up the policy", "%s", error);
				smtp_outbound_format(o, "451 4.3.0 Cannot read the encryption policy, "
						     "try again later");
				ret = -1;
				break;
			}
			any_require |= p == KEYSTORE_POLICY_REQUIRE;
			any_never |= p == KEYSTORE_POLICY_NEVER;
		}
		if (ret < 0)
			break;
		keystore_policy gp = any_require ? KEYSTORE_POLICY_REQUIRE
			: any_never ? KEYSTORE_POLICY_NEVER : KEYSTORE_POLICY_OPPORTUNISTIC;
		GPtrArray *keys = NULL;
		bool all_keys = gp != KEYSTORE_POLICY_NEVER;
		if (all_keys) {
			keys = g_ptr_array_new_with_free_func(smtp_key_unref);
			for (guint k = 0; k < g->len; k++) {
				const char *addr = rcpts[g_array_index(g, size_t, k)];
				gpgme_key_t key = NULL;
				char why[200] = "not an address";
				keystore_key_result r = addr == NULL ? KEYSTORE_KEY_NONE
					: keystore_keys_find(env->keys, addr, false, &key, why, sizeof(why));
				if (r == KEYSTORE_KEY_TEMPFAIL) {
					log_warn(env->id, "looking up keys", "<%s>: %s", addr, why);
					o->why = METRICS_REASON_KEY_LOOKUP;
					smtp_outbound_format(o, "451 4.7.1 Key lookup for <%s> failed "
							     "temporarily, try again later", addr);
					ret = -1;
					break;
				}
				if (r == KEYSTORE_KEY_FOUND &&
				    (gp != KEYSTORE_POLICY_OPPORTUNISTIC ||
				     smtp_outbound_autocrypt_allows(o, addr, key))) {
					g_ptr_array_add(keys, key);
					continue;
				}
				if (r == KEYSTORE_KEY_FOUND) {
					gpgme_key_unref(key);
					all_keys = false;
					continue;
				}
				all_keys = false;
				log_info(env->id, "looking up keys", "<%s>: %s",
					 addr != NULL ? addr : "?", why);
				if (gp == KEYSTORE_POLICY_REQUIRE)
					smtp_outbound_name(missing, &named, &more, addr != NULL ? addr : "?");
			}
		}
		if (ret < 0) {
			if (keys != NULL)
				g_ptr_array_unref(keys);
			break;
		}
		if (all_keys) {
			smtp_copy *c = smtp_copy_new(SMTP_COPY_ENCRYPTED, sign);
			g_array_append_vals(c->rcpts, g->data, g->len);
			if (o->own_key != NULL && acct->gateway == NULL) {
				gpgme_key_ref(o->own_key);
				g_ptr_array_add(keys, o->own_key);
			}
			c->keys = keys;
			g_ptr_array_add(encrypted, c);
			continue;
		}
		if (keys != NULL)
			g_ptr_array_unref(keys);
		if (plain == NULL)
			plain = smtp_copy_new(SMTP_COPY_PLAIN, sign);
		g_array_append_vals(plain->rcpts, g->data, g->len);
	}
	if (ret == 0 && missing->len > 0) {
		if (more > 0)
			g_string_append_printf(missing, " and %u more", more);
		o->why = METRICS_REASON_NO_KEY;
		smtp_outbound_format(o, "550 5.7.1 Encryption required but no usable OpenPGP key for %s",
				     missing->str);
		ret = -1;
	}
	if (ret == 0) {
		/* As written first (one copy for everyone it goes to), then the
		 * encrypted ones in group order. */
		if (plain != NULL) {
			g_ptr_array_add(o->copies, plain);
			plain = NULL;
		}
		for (guint i = 0; i < encrypted->len; i++)
			g_ptr_array_add(o->copies, g_ptr_array_index(encrypted, i));
		g_ptr_array_set_size(encrypted, 0);
	} else {
		smtp_outbound_log(o, o->reply[0] == '4' ? "tempfail" : "refused", o->reply + 4);
		log_info(env->id, "deciding", "%s", o->reply);
	}
	if (plain != NULL)
		smtp_copy_free(plain);
	for (guint i = 0; i < encrypted->len; i++)
		smtp_copy_free(g_ptr_array_index(encrypted, i));
	g_ptr_array_unref(encrypted);
	g_string_free(missing, TRUE);
	g_ptr_array_unref(groups);
	return ret;
}

size_t smtp_outbound_n_copies(const smtp_outbound *o)
{
	return o->copies->len;
}

const size_t *smtp_outbound_copy_rcpts(const smtp_outbound *o, size_t i, size_t *n_r)
{
	smtp_copy *c = g_ptr_array_index(o->copies, i);
	*n_r = c->rcpts->len;
	return (const size_t *)(const void *)c->rcpts->data;
}

smtp_copy_kind smtp_outbound_copy_kind(const smtp_outbound *o, size_t i)
{
	smtp_copy *c = g_ptr_array_index(o->copies, i);
	return c->kind;
}

const char *smtp_outbound_copy_describe(const smtp_outbound *o, size_t i)
{
	smtp_copy *c = g_ptr_array_index(o->copies, i);
	switch (c->kind) {
	case SMTP_COPY_ENCRYPTED:
		return c->sign ? "signed+encrypted" : "encrypted";
	case SMTP_COPY_PLAIN:
		return c->sign ? "signed" : "as written";
	case SMTP_COPY_PASSTHROUGH:
		break;
	}
	return "passthrough";
}

/* ---- rendering ------------------------------------------------------------------ */

typedef struct {
	smtp_spool *spool;
	uint64_t offset;
	const char *error;
} smtp_body_source;

static ssize_t smtp_body_read(void *ctx, void *buf, size_t size)
{
	smtp_body_source *s = ctx;
	return smtp_spool_read(s->spool, buf, size, &s->error);
}

static int smtp_body_rewind(void *ctx)
{
	smtp_body_source *s = ctx;
	return smtp_spool_seek(s->spool, s->offset, &s->error);
}

typedef struct {
	smtp_spool *spool;
	const char *error;
} smtp_out_sink;

static int smtp_out_write(void *ctx, const void *buf, size_t len)
{
	smtp_out_sink *s = ctx;
	return smtp_spool_write(s->spool, buf, len, &s->error);
}

int smtp_outbound_render(smtp_outbound *o, size_t i, smtp_spool *in, smtp_spool *out,
			 const char **reply_r)
{
	smtp_copy *c = g_ptr_array_index(o->copies, i);
	*reply_r = o->reply;
	smtp_spool_clear(out);
	smtp_body_source src_ctx = { in, o->body_offset, NULL };
	smtp_out_sink sink_ctx = { out, NULL };
	crypto_source src = { smtp_body_read, smtp_body_rewind, &src_ctx };
	crypto_sink sink = { smtp_out_write, &sink_ctx };
	if (smtp_body_rewind(&src_ctx) < 0) {
		log_error(o->env->id, "reading spooled message", "%s", src_ctx.error);
		o->why = METRICS_REASON_SPOOL;
		smtp_outbound_format(o, "451 4.3.0 Cannot read the stored message, try again later");
		return -1;
	}
	crypto_outbound_options opts = {
		.clear_subject = o->env->account->clear_subject,
		.autocrypt = o->autocrypt,
		.signer = c->sign ? o->own_key : NULL,
	};
	const char *error = NULL;
	crypto_failure failure = CRYPTO_FAIL_TEMPORARY;
	int ret;
	if ((c->sign || c->kind == SMTP_COPY_ENCRYPTED) && o->worker == NULL) {
		o->worker = crypto_worker_new(&error);
		if (o->worker == NULL) {
			log_error(o->env->id, "starting OpenPGP", "%s", error);
			o->why = METRICS_REASON_OPENPGP;
			smtp_outbound_format(o, "451 4.7.0 OpenPGP is not available, try again later");
			return -1;
		}
	}
	if (c->kind == SMTP_COPY_ENCRYPTED) {
		gpgme_key_t *keys = g_new0(gpgme_key_t, c->keys->len + 1);
		for (guint k = 0; k < c->keys->len; k++)
			keys[k] = g_ptr_array_index(c->keys, k);
		opts.recipients = keys;
		ret = crypto_outbound_write_encrypted(o->header, o->worker, &opts, &src, &sink,
						      &failure, &error);
		g_free(keys);
	} else if (c->kind == SMTP_COPY_PLAIN && c->sign) {
		ret = crypto_outbound_write_signed(o->header, o->worker, &opts, &src, &sink,
						   &failure, &error);
	} else {
		ret = crypto_outbound_write_plain(o->header, &opts, &src, &sink, &error);
	}
	if (ret < 0) {
		const char *detail = sink_ctx.error != NULL ? sink_ctx.error
			: src_ctx.error != NULL ? src_ctx.error : error;
		log_error(o->env->id, "preparing message", "%s copy: %s",
			  smtp_outbound_copy_describe(o, i), detail);
		o->why = sink_ctx.error != NULL || src_ctx.error != NULL ? METRICS_REASON_SPOOL
			: c->sign || c->kind == SMTP_COPY_ENCRYPTED ? METRICS_REASON_OPENPGP
			: METRICS_REASON_MESSAGE;
		if (failure == CRYPTO_FAIL_PERMANENT)
			smtp_outbound_format(o, "554 5.7.0 %s", error);
		else
			smtp_outbound_format(o, "451 4.7.0 %s; try again later", error);
		/* The session logs the outcome (one decision per message). */
		return -1;
	}
	return 0;
}

void smtp_outbound_log(smtp_outbound *o, const char *decision, const char *reason)
{
	keystore_decision d = {
		.account = o->env->account->name,
		.message_id = o->header != NULL ? crypto_outbound_header_message_id(o->header) : NULL,
		.recipients = o->recipients,
		.decision = decision,
		.reason = reason != NULL ? reason : o->note[0] != '\0' ? o->note : NULL,
	};
	const char *error;
	if (keystore_db_log_decision(o->env->db, &d, &error) < 0)
		log_warn(o->env->id, "logging the decision", "%s", error);
}

metrics_reason smtp_outbound_failure_reason(const smtp_outbound *o)
{
	return o->why;
}

const char *smtp_outbound_message_id(const smtp_outbound *o)
{
	return o->header != NULL ? crypto_outbound_header_message_id(o->header) : NULL;
}
