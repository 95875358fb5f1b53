/* Unit tests of Autocrypt Level 1: the header parser, the peer state rules
 * and the recommendation with the spec's examples, and applying messages to
 * a real database and a throwaway GNUPGHOME — with the attacks the rules
 * must resist (addr not the From address, two headers, gossip outside
 * encryption, an old date, unknown critical attributes, broken keydata, a
 * verified key replaced). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <gpgme.h>

#include "keystore.h"
#include "keystore_autocrypt.h"
#include "keystore_db.h"
#include "keystore_keyring.h"
#include "testkeys.h"

#define DAY (24 * 60 * 60)

/* The header of the spec's example-simple-autocrypt.eml (RSA 3072, Alice),
 * folded as in the message. */
static const char spec_alice[] =
	"addr=alice@autocrypt.example; prefer-encrypt=mutual; keydata=\r\n"
	" mQGNBFn+zzUBDADBo2D+WUbm3lN1lXtQTxLhxVADIIMLK1dFUgu5w1KAMrW0x9x27cRNxzVrTfiv\r\n"
	" 2FiwThUHZmJBFai8HtsMvn/svrCPeGPvkjTDMCWZaEEc5/g51Uyszjf6fUsGXsC9tUcva6pGHaTe\r\n"
	" 8Iwpz5stKjRKI3U/mPdQpXmaurwzEdvlNWNi9Ao2rwWV+BK3J/98gBRFT8W6gv+T/YGXVrqXMoMM\r\n"
	" KLTFze2uyO0ExJkhI64upJzD0HUbGjElYdeSWz7lYhQ2y5cmnWPfrnOxiOCVyKrgBulksda5SIjE\r\n"
	" qCJCVYprX/Wvh5feRXYftWVQUMeo6moNOhTM9X+zQJPWWuWivOJpamIuUCziEycX8RtRo0yAOPwc\r\n"
	" /vIppoxAMusQCVn15YwVECngzXUi3EB72wXJ4411VfzPCSlgVNZV7Yqx1lW4PMRcFB2oblO25rk3\r\n"
	" GDlmqEVcG1Hh4FtEBkmwVjiv4duN0E33r2Yf8OsFAkKnRCRllYn8409DaJGou41hEV+LAsUAEQEA\r\n"
	" AbQyYTFlYmQ2OGQtOGM3Ny00NWI4LWIwMzMtOGNhYzNmN2QyMDZkQGF1dG9jcnlwdC5vcmeJAc4E\r\n"
	" EwEIADgWIQTmBGjORNd8P86f0HJx28Vlf95lpwUCWf7PNQIbAwULCQgHAgYVCAkKCwIEFgIDAQIe\r\n"
	" AQIXgAAKCRBx28Vlf95lp3C/C/9tthB5Q6oyyjERPZmRY3V8n60wd0h35uLqQfcb51UYKZ3j+61n\r\n"
	" ckz2iB9LrRxY9Q31WozMqza+Jze4/g/VYHLlS7Zg0M3pLKzbSEyDvZVT523BVFsCQwjkq679JGZ/\r\n"
	" xPzJOPab1udXFsKPEfNvzKgK+x0a4Q8b03SemL5mmGPBrnuCza/nFhevUrQbbtuUzhBnMFBsPKvz\r\n"
	" WUTKHEgIDLqz+8auPOQZSbF2D/1BEvtbobdgQi+YJLaj77/pURR1kp7su51IffTs0qgMMJh8jwQY\r\n"
	" lMQMhozy43eqT1y9QE+DH9RBAYpcRCmTcBE5Z8apnWpH/axfCDjboWwD62gN0dawc7WEQ+rdgu8W\r\n"
	" Tocoo4A6iyCk6Xs59mOGE0gsCdZvzKruJOYqvERzeDibDc3hXDjOE82okBjQhsOVCK3a7uyAIZnc\r\n"
	" z9Kovi0CkQ9d3EuG8297HSf1/PupsiFgHBsJzmZ549+ZHLXlZ5ss4aj9Hpe7bCk8oUUL+A61+nNY\r\n"
	" VsVDSO25AY0EWf7PNQEMANI3/DkEjghl0SgsbzqHaUAohh+GSMXUD7dQn28ZGxR/2Y5wu7O5MdkP\r\n"
	" MKIrsyQowSeGn18rnM1PxnRGOrX+QnVZTdk73VeMID6nM1TTfv5gmkjcb6NphGPeOTZyJIbjgQxE\r\n"
	" z2LUbhFLseRS/6COF5q6Tj+TJFSPbDs5kVm8LqAra2vdvdpxV69WP2FfzwHIKTzxEwnDKc3rp7yE\r\n"
	" I52qz8xMTCO+IkBIc9rwdj7TqJxMOTZQdfpY/ltiGwg3lCGYaHuejJzDQlU/X6OCEq/WT7/UVqNw\r\n"
	" ZkrsT4uG9BFGW+WOXuOpgA4v0YQ62XQAotVNXUY10XFrSb6DTr6vYjd0Lk/z7icAX5uzjlfJN3TV\r\n"
	" qJxS0pDWtfYD52B936+mizGR+97uyqEBVNQKww1pvKdZDruiR43O0k63TMO/4cAhXfw7q91/RMGg\r\n"
	" TJX2UC/BGMiePziboP+GHX87hRmAvFCRjQc0KFyxJGbNKID3Kn/RhUrePCAVWI34lSQ0Do5qLlRn\r\n"
	" 9QARAQABiQG2BBgBCAAgFiEE5gRozkTXfD/On9BycdvFZX/eZacFAln+zzUCGwwACgkQcdvFZX/e\r\n"
	" ZaeaIwv/WR2LYKlPXe/1sMKfh+iSYeJjvqx15i4OaLumont+btZmpyYDU8sOaMB12oBgQ3sNYaQp\r\n"
	" fkTk/QNw3lbuiROPJeANQzC7Ckj3SDBFoMXyqxmnzhH0P1qvT90VOB061P1aHg7usuU4+MuvLKrg\r\n"
	" vaLtzK4xuiHIzpkTCvtcyNmiS5Qi2guPV32UQ6HccSIEaZO5w+z6a/V0JZ19lVwOnOatUp4DsDHo\r\n"
	" 4KfcUKpNUKoUGgkOhLP7DmsqdlnQoKCw4PxnSsg7H5imHKF1Xo/8nh0G5Wl5kpJendiI1ZGy/yES\r\n"
	" jN9i1kKSqL4X+R4PkT9foAootoK3TrLbcyHuxFj5umcUuqqGfsvjhgC/ZIyvvoRf4X0Bnn1h9hpo\r\n"
	" 6ZvBoPDM5lJxtUL64Zx5HXLd6CQXGfZfZVeM+ODqQyITGQT+p7uMDiZF42DKiTyJjJHABgiV+J16\r\n"
	" IM4woaGfCwAU+0Vg+JDuf7Ec8iKx5UNDI18PJTTzGVp65Gvz2Mq/CHT/peFNHNqW";
#define SPEC_ALICE_FPR "E60468CE44D77C3FCE9FD07271DBC5657FDE65A7"

/* ---- the header ------------------------------------------------------------ */

static int parse(const char *value, keystore_autocrypt_header *h, const char **error)
{
	return keystore_autocrypt_header_parse(value, strlen(value), h, error);
}

static void test_parse_spec_example(void **state)
{
	(void)state;
	keystore_autocrypt_header h;
	const char *error = NULL;
	assert_int_equal(parse(spec_alice, &h, &error), 0);
	assert_string_equal(h.addr, "alice@autocrypt.example");
	assert_true(h.prefer_mutual);
	/* An old-format public key packet, version 4, RSA. */
	assert_true(h.keydata_len > 1000);
	assert_int_equal(h.keydata[0], 0x99);
	assert_int_equal(h.keydata[3], 0x04);
	keystore_autocrypt_header_clear(&h);
	assert_null(h.addr);
}

static void test_parse_attributes(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		int ret;
		bool mutual;
	} cases[] = {
		{ "addr=a@b.example; keydata=QUJD", 0, false },
		{ "addr=a@b.example;keydata=QUJD;", 0, false },
		{ " addr = a@b.example ;\r\n\tprefer-encrypt=mutual; keydata= QU\r\n JD", 0, true },
		/* Any other preference is nopreference. */
		{ "addr=a@b.example; prefer-encrypt=always; keydata=QUJD", 0, false },
		{ "addr=a@b.example; prefer-encrypt=nopreference; keydata=QUJD", 0, false },
		/* Non-critical attributes are skipped. */
		{ "addr=a@b.example; _version=2; _x=; keydata=QUJD", 0, false },
		{ "addr=a@b.example; keydata=QUI=", 0, false },
		{ "addr=a@b.example; keydata=QQ==", 0, false },
		{ "addr=a@b.example; keydata=QQ", 0, false },
		/* An unknown critical attribute: meant for a newer reader. */
		{ "addr=a@b.example; version=2; keydata=QUJD", -1, false },
		{ "addr=a@b.example; Keydata=QUJD", -1, false },
		{ "ADDR=a@b.example; keydata=QUJD", -1, false },
		{ "keydata=QUJD", -1, false },
		{ "addr=a@b.example", -1, false },
		{ "addr=; keydata=QUJD", -1, false },
		{ "addr=a@b.example; addr=c@d.example; keydata=QUJD", -1, false },
		{ "addr=a@b.example; prefer-encrypt=mutual; prefer-encrypt=mutual; keydata=QUJD",
		  -1, false },
		{ "addr=a@b.example; keydata=QUJD; _late=1", -1, false },
		{ "addr=a@b.example; keydata=QUJD; addr=c@d.example", -1, false },
		{ "addr=a@b.example; noequals; keydata=QUJD", -1, false },
		{ "addr=a@b.example; =x; keydata=QUJD", -1, false },
		{ "addr=a@b.example; keydata=", -1, false },
		{ "addr=a@b.example; keydata=Q", -1, false },
		{ "addr=a@b.example; keydata=QU*D", -1, false },
		{ "addr=a@b.example; keydata=QU=D", -1, false },
		{ "addr=a@b.example; keydata=QUJD=", -1, false },
		{ "addr=a@b.example; keydata=Q===", -1, false },
		{ "", -1, false },
		{ ";;;", -1, false },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		keystore_autocrypt_header h;
		const char *error = NULL;
		int ret = parse(cases[i].value, &h, &error);
		if (ret != cases[i].ret)
			fail_msg("'%s': %d (%s)", cases[i].value, ret, error != NULL ? error : "");
		if (ret == 0) {
			assert_string_equal(h.addr, "a@b.example");
			assert_int_equal(h.prefer_mutual, cases[i].mutual);
			assert_true(h.keydata_len >= 1 && h.keydata_len <= 3);
			assert_int_equal(h.keydata[0], 'A');
		} else {
			assert_non_null(error);
			assert_null(h.addr);
			assert_null(h.keydata);
		}
		keystore_autocrypt_header_clear(&h);
	}
	/* A NUL inside the value, and a value over 10 KiB. */
	keystore_autocrypt_header h;
	const char *error = NULL;
	assert_int_equal(keystore_autocrypt_header_parse("addr=a@b\0; keydata=QUJD", 23, &h,
							 &error), -1);
	GString *big = g_string_new("addr=a@b.example; keydata=");
	while (big->len <= KEYSTORE_AUTOCRYPT_HEADER_MAX)
		g_string_append(big, "QUJD");
	assert_int_equal(parse(big->str, &h, &error), -1);
	assert_string_equal(error, "larger than 10 KiB");
	g_string_free(big, TRUE);
}

/* Every prefix of the spec's header, one byte more at a time: never read
 * past the length given, and anything taken is a prefix of the real key. */
static void test_parse_prefixes(void **state)
{
	(void)state;
	keystore_autocrypt_header full;
	const char *error;
	assert_int_equal(parse(spec_alice, &full, &error), 0);
	size_t len = strlen(spec_alice);
	unsigned taken = 0;
	for (size_t n = 0; n <= len; n++) {
		/* A copy of exactly n bytes, so that ASan sees any overread. */
		char *copy = g_malloc(n > 0 ? n : 1);
		memcpy(copy, spec_alice, n);
		keystore_autocrypt_header h;
		if (keystore_autocrypt_header_parse(copy, n, &h, &error) == 0) {
			taken++;
			assert_true(h.keydata_len <= full.keydata_len);
			assert_memory_equal(h.keydata, full.keydata,
					    h.keydata_len > 0 ? h.keydata_len - 1 : 0);
			keystore_autocrypt_header_clear(&h);
		}
		g_free(copy);
	}
	assert_true(taken > 0);
	keystore_autocrypt_header_clear(&full);
}

static void test_canonical(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "alice@autocrypt.example", "alice@autocrypt.example" },
		{ "Alice@AutoCrypt.Example", "alice@autocrypt.example" },
		{ "J\xC3\x96RG@b\xC3\xBC" "cher.example", "j\xC3\xB6rg@xn--bcher-kva.example" },
		{ "a@b@c.example", NULL },
		{ "nobody", NULL },
		{ "@b.example", NULL },
		{ "a@", NULL },
		{ "a b@c.example", NULL },
		{ "<a@c.example>", NULL },
		{ "a@c.example\r", NULL },
		{ "\xff@c.example", NULL },
		{ "", NULL },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *c = keystore_autocrypt_canonical(cases[i].in);
		if (cases[i].out == NULL) {
			if (c != NULL)
				fail_msg("'%s' taken as '%s'", cases[i].in, c);
		} else {
			assert_non_null(c);
			assert_string_equal(c, cases[i].out);
		}
		g_free(c);
	}
	assert_null(keystore_autocrypt_canonical(NULL));
}

static void test_select(void **state)
{
	(void)state;
	const char *ok = "addr=bob@example.test; keydata=QUJD";
	const char *ok2 = "addr=bob@example.test; prefer-encrypt=mutual; keydata=REVG";
	const char *other = "addr=mallory@example.test; keydata=QUJD";
	const char *critical = "addr=bob@example.test; level=2; keydata=QUJD";
	keystore_autocrypt_header h;
	const char *why;

	const char *one[] = { ok, NULL };
	assert_int_equal(keystore_autocrypt_select(one, "Bob@Example.TEST", &h, &why), 1);
	assert_null(why);
	assert_string_equal(h.addr, "bob@example.test");
	keystore_autocrypt_header_clear(&h);

	/* addr must be the From address. */
	const char *forged[] = { other, NULL };
	assert_int_equal(keystore_autocrypt_select(forged, "bob@example.test", &h, &why), 0);
	assert_non_null(strstr(why, "From"));
	assert_null(h.addr);

	/* Two valid headers: all ignored. */
	const char *two[] = { ok, ok2, NULL };
	assert_int_equal(keystore_autocrypt_select(two, "bob@example.test", &h, &why), 0);
	assert_non_null(strstr(why, "more than one"));
	assert_null(h.addr);

	/* Invalid ones do not count: a future version's header next to a
	 * Level 1 one, or a header for someone else. */
	const char *mixed[] = { critical, ok2, other, NULL };
	assert_int_equal(keystore_autocrypt_select(mixed, "bob@example.test", &h, &why), 1);
	assert_true(h.prefer_mutual);
	keystore_autocrypt_header_clear(&h);

	const char *only_critical[] = { critical, NULL };
	assert_int_equal(keystore_autocrypt_select(only_critical, "bob@example.test", &h, &why), 0);
	assert_non_null(strstr(why, "critical"));

	assert_int_equal(keystore_autocrypt_select(NULL, "bob@example.test", &h, &why), 0);
	assert_string_equal(why, "no Autocrypt header");
	assert_int_equal(keystore_autocrypt_select(one, NULL, &h, &why), 0);
}

/* ---- the peer state rules --------------------------------------------------- */

static keystore_autocrypt_header header(const char *keydata, bool mutual)
{
	keystore_autocrypt_header h = {
		.addr = g_strdup("bob@example.test"),
		.prefer_mutual = mutual,
		.keydata = (unsigned char *)g_strdup(keydata),
		.keydata_len = strlen(keydata),
	};
	return h;
}

static void test_update_rules(void **state)
{
	(void)state;
	keystore_autocrypt_peer p = { 0 };
	keystore_autocrypt_header k1 = header("key-one", true);
	keystore_autocrypt_header k2 = header("key-two", false);

	/* The effective date: the Date, unless missing or in the future. */
	assert_int_equal(keystore_autocrypt_effective_date(100, 200), 100);
	assert_int_equal(keystore_autocrypt_effective_date(300, 200), 200);
	assert_int_equal(keystore_autocrypt_effective_date(0, 200), 200);
	assert_int_equal(keystore_autocrypt_effective_date(-5, 200), 200);

	/* A first header: everything taken. */
	assert_int_equal(keystore_autocrypt_update(&p, 1000, &k1), KEYSTORE_AUTOCRYPT_TAKEN);
	assert_int_equal(p.last_seen, 1000);
	assert_int_equal(p.autocrypt_timestamp, 1000);
	assert_int_equal(p.public_key_len, 7);
	assert_memory_equal(p.public_key, "key-one", 7);
	assert_true(p.prefer_mutual);
	g_strlcpy(p.public_key_fpr, "FPR1", sizeof(p.public_key_fpr));

	/* An older message with another key changes nothing at all. */
	assert_int_equal(keystore_autocrypt_update(&p, 999, &k2), KEYSTORE_AUTOCRYPT_UNCHANGED);
	assert_memory_equal(p.public_key, "key-one", 7);
	assert_int_equal(p.last_seen, 1000);
	assert_true(p.prefer_mutual);
	/* Nor does an older one without a header. */
	assert_int_equal(keystore_autocrypt_update(&p, 500, NULL), KEYSTORE_AUTOCRYPT_UNCHANGED);
	assert_int_equal(p.last_seen, 1000);

	/* A newer message without a header: last_seen only. */
	assert_int_equal(keystore_autocrypt_update(&p, 2000, NULL), KEYSTORE_AUTOCRYPT_SEEN);
	assert_int_equal(p.last_seen, 2000);
	assert_int_equal(p.autocrypt_timestamp, 1000);
	assert_memory_equal(p.public_key, "key-one", 7);

	/* Between autocrypt_timestamp and last_seen: taken, last_seen stays. */
	assert_int_equal(keystore_autocrypt_update(&p, 1500, &k1), KEYSTORE_AUTOCRYPT_TAKEN);
	assert_int_equal(p.last_seen, 2000);
	assert_int_equal(p.autocrypt_timestamp, 1500);
	/* The same key keeps its known fingerprint. */
	assert_string_equal(p.public_key_fpr, "FPR1");

	/* A newer header with a new key and no preference. */
	assert_int_equal(keystore_autocrypt_update(&p, 3000, &k2), KEYSTORE_AUTOCRYPT_TAKEN);
	assert_memory_equal(p.public_key, "key-two", 7);
	assert_false(p.prefer_mutual);
	assert_string_equal(p.public_key_fpr, "");
	assert_int_equal(p.last_seen, 3000);

	/* Gossip: newer or equal taken, older not. */
	assert_true(keystore_autocrypt_update_gossip(&p, 100, &k1));
	assert_int_equal(p.gossip_timestamp, 100);
	assert_memory_equal(p.gossip_key, "key-one", 7);
	assert_false(keystore_autocrypt_update_gossip(&p, 99, &k2));
	assert_memory_equal(p.gossip_key, "key-one", 7);
	assert_true(keystore_autocrypt_update_gossip(&p, 200, &k2));
	assert_memory_equal(p.gossip_key, "key-two", 7);
	/* Gossip never touches the Autocrypt fields. */
	assert_int_equal(p.autocrypt_timestamp, 3000);

	keystore_autocrypt_header_clear(&k1);
	keystore_autocrypt_header_clear(&k2);
	keystore_autocrypt_peer_clear(&p);
}

static void test_recommendation(void **state)
{
	(void)state;
	unsigned char key[] = "k";
	keystore_autocrypt_peer p = {
		.last_seen = 100 * DAY, .autocrypt_timestamp = 100 * DAY,
		.public_key = key, .public_key_len = 1,
	};
	/* No peer, or no usable key: disable. */
	assert_int_equal(keystore_autocrypt_recommend_peer(NULL, true, true, true, true),
			 KEYSTORE_AUTOCRYPT_DISABLE);
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, false, false, true, false),
			 KEYSTORE_AUTOCRYPT_DISABLE);
	/* A fresh key: available; encrypt when both prefer mutual. */
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, true, false, true, false),
			 KEYSTORE_AUTOCRYPT_AVAILABLE);
	p.prefer_mutual = true;
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, true, false, false, false),
			 KEYSTORE_AUTOCRYPT_AVAILABLE);
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, true, false, true, false),
			 KEYSTORE_AUTOCRYPT_ENCRYPT);
	/* 35 days are still fresh; more are stale: discourage, even with
	 * mutual, unless the message answers an encrypted one. */
	p.last_seen = p.autocrypt_timestamp + 35 * DAY;
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, true, false, true, false),
			 KEYSTORE_AUTOCRYPT_ENCRYPT);
	p.last_seen++;
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, true, false, true, false),
			 KEYSTORE_AUTOCRYPT_DISCOURAGE);
	assert_int_equal(keystore_autocrypt_recommend_peer(&p, true, false, true, true),
			 KEYSTORE_AUTOCRYPT_ENCRYPT);
	/* Only a gossip key: discourage. */
	keystore_autocrypt_peer g = { .gossip_key = key, .gossip_key_len = 1,
				      .prefer_mutual = true };
	assert_int_equal(keystore_autocrypt_recommend_peer(&g, false, true, true, false),
			 KEYSTORE_AUTOCRYPT_DISCOURAGE);
	assert_int_equal(keystore_autocrypt_recommend_peer(&g, false, false, true, false),
			 KEYSTORE_AUTOCRYPT_DISABLE);
	assert_int_equal(keystore_autocrypt_recommend_peer(&g, false, true, true, true),
			 KEYSTORE_AUTOCRYPT_ENCRYPT);

	/* Several recipients. */
	const keystore_autocrypt_recommendation ee[] = {
		KEYSTORE_AUTOCRYPT_ENCRYPT, KEYSTORE_AUTOCRYPT_ENCRYPT };
	const keystore_autocrypt_recommendation ea[] = {
		KEYSTORE_AUTOCRYPT_ENCRYPT, KEYSTORE_AUTOCRYPT_AVAILABLE };
	const keystore_autocrypt_recommendation ead[] = {
		KEYSTORE_AUTOCRYPT_ENCRYPT, KEYSTORE_AUTOCRYPT_AVAILABLE,
		KEYSTORE_AUTOCRYPT_DISCOURAGE };
	const keystore_autocrypt_recommendation edx[] = {
		KEYSTORE_AUTOCRYPT_ENCRYPT, KEYSTORE_AUTOCRYPT_DISCOURAGE,
		KEYSTORE_AUTOCRYPT_DISABLE };
	assert_int_equal(keystore_autocrypt_recommend_combine(ee, 2), KEYSTORE_AUTOCRYPT_ENCRYPT);
	assert_int_equal(keystore_autocrypt_recommend_combine(ea, 2), KEYSTORE_AUTOCRYPT_AVAILABLE);
	assert_int_equal(keystore_autocrypt_recommend_combine(ead, 3),
			 KEYSTORE_AUTOCRYPT_DISCOURAGE);
	assert_int_equal(keystore_autocrypt_recommend_combine(edx, 3), KEYSTORE_AUTOCRYPT_DISABLE);
	assert_int_equal(keystore_autocrypt_recommend_combine(ee, 0), KEYSTORE_AUTOCRYPT_DISABLE);
	assert_string_equal(keystore_autocrypt_recommendation_name(KEYSTORE_AUTOCRYPT_DISCOURAGE),
			    "discourage");
}

/* ---- messages against a database and a keyring -------------------------------- */

typedef struct {
	char *dir, *home, *peer_home;
	keystore_db *db;
	keystore_keyring *kr;
	gpgme_ctx_t peer_ctx;		/* makes the peers' keys, elsewhere */
} fixture;

static void kill_agent(const char *home)
{
	char *argv[] = { "gpgconf", "--homedir", (char *)home, "--kill", "all", NULL };
	g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
		     G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, NULL, NULL);
}

static int setup_fixture(void **state)
{
	fixture *f = g_new0(fixture, 1);
	f->dir = g_dir_make_tmp("sp-ac-XXXXXX", NULL);
	assert_non_null(f->dir);
	f->home = g_build_filename(f->dir, "gnupg", NULL);
	f->peer_home = g_build_filename(f->dir, "peers", NULL);
	const char *error = NULL;
	if (keystore_init(f->home, &error) < 0 || keystore_init(f->peer_home, &error) < 0)
		fail_msg("keystore_init: %s", error);
	/* keystore_init points GPGME's default at the last home: the
	 * keyring's contexts name theirs. */
	f->db = keystore_db_open(f->dir, &error);
	if (f->db == NULL)
		fail_msg("db: %s", error);
	f->kr = keystore_keyring_open(f->home, f->db, &error);
	assert_non_null(f->kr);
	assert_int_equal(gpgme_new(&f->peer_ctx), 0);
	assert_int_equal(gpgme_ctx_set_engine_info(f->peer_ctx, GPGME_PROTOCOL_OpenPGP, NULL,
						   f->peer_home), 0);
	*state = f;
	return 0;
}

static int teardown_fixture(void **state)
{
	fixture *f = *state;
	gpgme_release(f->peer_ctx);
	keystore_keyring_close(&f->kr);
	keystore_db_close(&f->db);
	kill_agent(f->home);
	kill_agent(f->peer_home);
	char *rm[] = { "rm", "-rf", f->dir, NULL };
	g_spawn_sync(NULL, rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
	g_free(f->home);
	g_free(f->peer_home);
	g_free(f->dir);
	g_free(f);
	return 0;
}

/* A peer's key made in the peers' home: its fingerprint, and its minimal
 * binary form base64-encoded as an Autocrypt keydata value. */
static char *make_peer_key(fixture *f, const char *uid, char **keydata_b64_r)
{
	char *fpr = testkeys_make(f->peer_ctx, uid);
	gpgme_data_t out;
	assert_int_equal(gpgme_data_new(&out), 0);
	gpgme_set_armor(f->peer_ctx, 0);
	assert_int_equal(gpgme_op_export(f->peer_ctx, fpr, GPGME_EXPORT_MODE_MINIMAL, out), 0);
	size_t len = 0;
	char *bin = gpgme_data_release_and_get_mem(out, &len);
	assert_true(len > 0);
	*keydata_b64_r = g_base64_encode((const guchar *)bin, len);
	gpgme_free(bin);
	return fpr;
}

static char *ac_value(const char *addr, bool mutual, const char *keydata)
{
	return g_strdup_printf("addr=%s; %skeydata=%s", addr, mutual ? "prefer-encrypt=mutual; " : "",
			       keydata);
}

static keystore_autocrypt_result process(fixture *f, const char *from, int64_t date,
					 const char *const *autocrypt, const char *const *gossip,
					 const char *const *recipients, bool encrypted)
{
	keystore_autocrypt_message m = {
		.account = "alice@example.test", .from = from, .date = date,
		.now = 1800000000, .autocrypt = autocrypt, .gossip = gossip,
		.recipients = recipients, .encrypted = encrypted,
	};
	keystore_autocrypt_result res;
	const char *error = NULL;
	if (keystore_autocrypt_process(f->db, f->kr, &m, &res, &error) < 0)
		fail_msg("process: %s", error);
	return res;
}

static keystore_autocrypt_peer get_peer(fixture *f, const char *addr, bool *found)
{
	keystore_autocrypt_peer p;
	const char *error = NULL;
	assert_int_equal(keystore_autocrypt_peer_get(f->db, "alice@example.test", addr, &p, found,
						     &error), 0);
	return p;
}

static gint compare_strings(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keyring's keys for address, as "FPR:source:acceptance;..." sorted. */
static char *keyring_says(fixture *f, const char *address)
{
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	assert_int_equal(keystore_keyring_list(f->kr, address, &keys, &n, &error), 0);
	GPtrArray *items = g_ptr_array_new_with_free_func(g_free);
	for (size_t i = 0; i < n; i++)
		g_ptr_array_add(items, g_strdup_printf("%s:%s:%s", keys[i].fingerprint,
						       keystore_key_source_name(keys[i].source),
						       keystore_acceptance_name(keys[i].acceptance)));
	g_ptr_array_sort(items, compare_strings);
	GString *s = g_string_new("");
	for (guint i = 0; i < items->len; i++)
		g_string_append_printf(s, "%s;", (const char *)g_ptr_array_index(items, i));
	g_ptr_array_free(items, TRUE);
	keystore_keyring_keys_free(&keys, n);
	return g_string_free(s, FALSE);
}

static unsigned pending_count(fixture *f);

static void test_process_learns_and_defends(void **state)
{
	fixture *f = *state;
	char *bob1_b64, *bob2_b64, *bob3_b64, *carol_b64, *other_b64;
	char *bob1 = make_peer_key(f, "Bob <bob@example.test>", &bob1_b64);
	char *bob2 = make_peer_key(f, "Bob <bob@example.test>", &bob2_b64);
	char *bob3 = make_peer_key(f, "Bob <bob@example.test>", &bob3_b64);
	char *carol = make_peer_key(f, "Carol <carol@example.test>", &carol_b64);
	char *other = make_peer_key(f, "<someone-else@example.test>", &other_b64);
	const int64_t t0 = 1700000000;

	/* The spec's example: a plaintext message with one header. */
	char *h1 = ac_value("bob@example.test", true, bob1_b64);
	const char *just_h1[] = { h1, NULL };
	keystore_autocrypt_result r = process(f, "Bob@Example.test", t0, just_h1, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_TAKEN);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_IMPORTED);
	assert_string_equal(r.fingerprint, bob1);
	char *says = keyring_says(f, "bob@example.test");
	char *want = g_strdup_printf("%s:autocrypt:unverified;", bob1);
	assert_string_equal(says, want);
	g_free(says);
	g_free(want);
	bool found;
	keystore_autocrypt_peer p = get_peer(f, "bob@example.test", &found);
	assert_true(found);
	assert_int_equal(p.autocrypt_timestamp, t0);
	assert_int_equal(p.last_seen, t0);
	assert_true(p.prefer_mutual);
	assert_string_equal(p.public_key_fpr, bob1);
	keystore_autocrypt_peer_clear(&p);

	/* The same message again: nothing new. */
	r = process(f, "bob@example.test", t0, just_h1, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_TAKEN);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_NONE);

	/* A message without a header: last_seen only. */
	r = process(f, "bob@example.test", t0 + 10, NULL, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	p = get_peer(f, "bob@example.test", &found);
	assert_int_equal(p.last_seen, t0 + 10);
	assert_int_equal(p.autocrypt_timestamp, t0);
	keystore_autocrypt_peer_clear(&p);

	/* Attack: addr is not the From address. */
	char *forged = ac_value("bob@example.test", false, bob2_b64);
	const char *just_forged[] = { forged, NULL };
	r = process(f, "mallory@example.test", t0 + 20, just_forged, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_NONE);
	assert_non_null(strstr(r.header_why, "From"));
	p = get_peer(f, "bob@example.test", &found);
	assert_string_equal(p.public_key_fpr, bob1);
	keystore_autocrypt_peer_clear(&p);

	/* Attack: two valid headers, one with another key: both ignored. */
	char *h2 = ac_value("bob@example.test", false, bob2_b64);
	const char *two[] = { h1, h2, NULL };
	r = process(f, "bob@example.test", t0 + 30, two, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	assert_non_null(strstr(r.header_why, "more than one"));

	/* Attack: an older message with a new key. */
	const char *just_h2[] = { h2, NULL };
	r = process(f, "bob@example.test", t0 - 100, just_h2, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_UNCHANGED);
	p = get_peer(f, "bob@example.test", &found);
	assert_string_equal(p.public_key_fpr, bob1);
	assert_true(p.prefer_mutual);
	keystore_autocrypt_peer_clear(&p);

	/* An unknown critical attribute, and keydata that is no key. */
	char *critical = g_strdup_printf("addr=bob@example.test; level=2; keydata=%s", bob2_b64);
	const char *just_critical[] = { critical, NULL };
	r = process(f, "bob@example.test", t0 + 40, just_critical, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	const char *broken[] = { "addr=bob@example.test; keydata=bm90IGEga2V5IGF0IGFsbA==", NULL };
	r = process(f, "bob@example.test", t0 + 50, broken, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	assert_non_null(strstr(r.header_why, "OpenPGP"));
	/* Cut in the middle of the key. */
	char *cut_b64 = g_strndup(bob2_b64, strlen(bob2_b64) / 2 / 4 * 4);
	char *cut = ac_value("bob@example.test", false, cut_b64);
	const char *just_cut[] = { cut, NULL };
	r = process(f, "bob@example.test", t0 + 55, just_cut, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	/* A key without a user ID for the address: peer state only. */
	char *foreign = ac_value("bob@example.test", false, other_b64);
	const char *just_foreign[] = { foreign, NULL };
	r = process(f, "bob@example.test", t0 + 60, just_foreign, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_TAKEN);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_UNUSABLE);
	assert_non_null(strstr(r.key_why, "user ID"));
	says = keyring_says(f, "someone-else@example.test");
	assert_string_equal(says, "");
	g_free(says);
	/* Back to bob1 (known to the keyring). */
	r = process(f, "bob@example.test", t0 + 70, just_h1, NULL, NULL, false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_KNOWN);
	assert_int_equal(pending_count(f), 0);

	/* The user verifies bob1; a newer message brings bob2: pending, not
	 * in the keyring. */
	const char *error = NULL;
	assert_int_equal(keystore_keyring_set_acceptance(f->kr, bob1, KEYSTORE_ACCEPTANCE_VERIFIED,
							 &error), 0);
	r = process(f, "bob@example.test", t0 + 100, just_h2, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_TAKEN);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_PENDING);
	assert_true(r.pending_id > 0);
	says = keyring_says(f, "bob@example.test");
	want = g_strdup_printf("%s:autocrypt:verified;", bob1);
	assert_string_equal(says, want);
	g_free(says);
	g_free(want);
	assert_int_equal(pending_count(f), 1);
	/* The same again: still one pending change. */
	r = process(f, "bob@example.test", t0 + 110, just_h2, NULL, NULL, false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_NONE);
	assert_int_equal(pending_count(f), 1);

	/* Accepted: bob2 verified and used, bob1 rejected. */
	keystore_pending_key pk;
	assert_int_equal(keystore_pending_get(f->db, 0, bob2, &pk, &found, &error), 0);
	assert_true(found);
	assert_string_equal(pk.old_fingerprint, bob1);
	assert_string_equal(pk.addr, "bob@example.test");
	keystore_keyring_key k;
	if (keystore_keyring_pending_accept(f->kr, &pk, &k, &error) < 0)
		fail_msg("accept: %s", error);
	assert_string_equal(k.fingerprint, bob2);
	assert_null(k.unusable);
	keystore_keyring_key_clear(&k);
	keystore_pending_key_clear(&pk);
	assert_int_equal(pending_count(f), 0);
	says = keyring_says(f, "bob@example.test");
	char *w1 = g_strdup_printf("%s:autocrypt:rejected;", bob1);
	char *w2 = g_strdup_printf("%s:autocrypt:verified;", bob2);
	assert_non_null(strstr(says, w1));
	assert_non_null(strstr(says, w2));
	g_free(w1);
	g_free(w2);
	g_free(says);

	/* bob3 arrives, is refused: rejected, never imported, not offered
	 * again. */
	char *h3 = ac_value("bob@example.test", false, bob3_b64);
	const char *just_h3[] = { h3, NULL };
	r = process(f, "bob@example.test", t0 + 200, just_h3, NULL, NULL, false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_PENDING);
	assert_int_equal(keystore_pending_get(f->db, r.pending_id, NULL, &pk, &found, &error), 0);
	assert_true(found);
	assert_int_equal(keystore_keyring_pending_refuse(f->kr, &pk, &error), 0);
	keystore_pending_key_clear(&pk);
	assert_int_equal(pending_count(f), 0);
	says = keyring_says(f, "bob@example.test");
	assert_null(strstr(says, bob3));
	g_free(says);
	/* Another key in between, then bob3 again: known as rejected. */
	r = process(f, "bob@example.test", t0 + 300, just_h2, NULL, NULL, false);
	r = process(f, "bob@example.test", t0 + 400, just_h3, NULL, NULL, false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_REJECTED);
	assert_int_equal(pending_count(f), 0);

	/* The account's own address is never learned. */
	char *own = ac_value("alice@example.test", false, carol_b64);
	const char *just_own[] = { own, NULL };
	r = process(f, "alice@example.test", t0, just_own, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_UNCHANGED);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_NONE);

	/* Gossip outside encryption: ignored. */
	char *gossip = ac_value("carol@example.test", false, carol_b64);
	const char *gossips[] = { gossip, NULL };
	const char *rcpts[] = { "alice@example.test", "Carol@example.test", NULL };
	r = process(f, "bob@example.test", t0 + 500, NULL, gossips, rcpts, false);
	assert_int_equal(r.gossip_taken, 0);
	assert_int_equal(r.gossip_ignored, 1);
	p = get_peer(f, "carol@example.test", &found);
	assert_false(found);
	/* Gossip for someone not among the recipients: ignored. */
	const char *rcpts_no_carol[] = { "alice@example.test", NULL };
	r = process(f, "bob@example.test", t0 + 500, NULL, gossips, rcpts_no_carol, true);
	assert_int_equal(r.gossip_taken, 0);
	assert_int_equal(r.gossip_ignored, 1);
	/* Inside encryption, for a recipient: taken, and imported since
	 * carol has no key yet. */
	r = process(f, "bob@example.test", t0 + 500, NULL, gossips, rcpts, true);
	assert_int_equal(r.gossip_taken, 1);
	assert_int_equal(r.gossip_imported, 1);
	p = get_peer(f, "carol@example.test", &found);
	assert_true(found);
	assert_int_equal(p.gossip_timestamp, t0 + 500);
	assert_null(p.public_key);
	assert_string_equal(p.gossip_key_fpr, carol);
	keystore_autocrypt_peer_clear(&p);
	/* Older gossip is not taken. */
	r = process(f, "bob@example.test", t0 + 400, NULL, gossips, rcpts, true);
	assert_int_equal(r.gossip_taken, 0);

	/* The recommendation from the stored state: bob has a key and is
	 * fresh, carol only gossip, dave nothing. */
	keystore_autocrypt_recommendation rec;
	char why[200];
	const char *bob_only[] = { "bob@example.test" };
	assert_int_equal(keystore_autocrypt_recommend(f->db, "alice@example.test", bob_only, 1,
						      true, false, NULL, NULL, &rec, why,
						      sizeof(why), &error), 0);
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_AVAILABLE);
	const char *bob_carol[] = { "bob@example.test", "carol@example.test" };
	assert_int_equal(keystore_autocrypt_recommend(f->db, "alice@example.test", bob_carol, 2,
						      true, false, NULL, NULL, &rec, why,
						      sizeof(why), &error), 0);
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_DISCOURAGE);
	assert_string_equal(why, "<carol@example.test>: discourage");
	const char *with_dave[] = { "bob@example.test", "dave@example.test" };
	assert_int_equal(keystore_autocrypt_recommend(f->db, "alice@example.test", with_dave, 2,
						      true, false, NULL, NULL, &rec, why,
						      sizeof(why), &error), 0);
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_DISABLE);
	/* Another account knows nobody. */
	assert_int_equal(keystore_autocrypt_recommend(f->db, "zed@example.test", bob_only, 1,
						      true, false, NULL, NULL, &rec, why,
						      sizeof(why), &error), 0);
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_DISABLE);

	/* A verified key whose user ID writes the address in another case
	 * guards it all the same. */
	char *dave1_b64, *dave2_b64;
	char *dave1 = make_peer_key(f, "Dave <Dave@Example.test>", &dave1_b64);
	char *dave2 = make_peer_key(f, "<dave@example.test>", &dave2_b64);
	gsize dave1_len = 0;
	guchar *dave1_bin = g_base64_decode(dave1_b64, &dave1_len);
	const keystore_import_options opt = { .address = "Dave@Example.test" };
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_keyring_import(f->kr, dave1_bin, dave1_len, &opt, &keys, &n, &error) < 0)
		fail_msg("import: %s", error);
	keystore_keyring_keys_free(&keys, n);
	assert_int_equal(keystore_keyring_set_acceptance(f->kr, dave1, KEYSTORE_ACCEPTANCE_VERIFIED,
							 &error), 0);
	char *hd = ac_value("dave@example.test", false, dave2_b64);
	const char *just_hd[] = { hd, NULL };
	r = process(f, "dave@example.test", t0, just_hd, NULL, NULL, false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_PENDING);
	says = keyring_says(f, "dave@example.test");
	assert_null(strstr(says, dave2));
	g_free(says);
	g_free(hd);
	g_free(dave1_bin);
	g_free(dave1);
	g_free(dave2);
	g_free(dave1_b64);
	g_free(dave2_b64);

	g_free(own);
	g_free(gossip);
	g_free(h1);
	g_free(h2);
	g_free(h3);
	g_free(forged);
	g_free(critical);
	g_free(cut_b64);
	g_free(cut);
	g_free(foreign);
	g_free(bob1);
	g_free(bob2);
	g_free(bob3);
	g_free(carol);
	g_free(other);
	g_free(bob1_b64);
	g_free(bob2_b64);
	g_free(bob3_b64);
	g_free(carol_b64);
	g_free(other_b64);
}

static int count_one(void *ctx, const keystore_pending_key *p)
{
	(void)p;
	(*(unsigned *)ctx)++;
	return 0;
}

static unsigned pending_count(fixture *f)
{
	unsigned n = 0;
	const char *error;
	assert_int_equal(keystore_pending_list(f->db, count_one, &n, &error), 0);
	return n;
}

static bool opportunistic(fixture *f, const char *address, const char *fpr, bool mutual,
			  keystore_autocrypt_recommendation *rec_r)
{
	bool encrypt = false;
	const char *error = NULL;
	if (keystore_autocrypt_opportunistic(f->db, "alice@example.test", address, fpr, mutual,
					     &encrypt, rec_r, &error) < 0)
		fail_msg("opportunistic: %s", error);
	return encrypt;
}

/* The recommendation feeds `opportunistic` for keys learned from
 * Autocrypt only: stale and gossip-only keys are not encrypted to,
 * verified and imported ones always are. */
static void test_opportunistic(void **state)
{
	fixture *f = *state;
	char *bob_b64, *carol_b64, *dave_b64;
	char *bob = make_peer_key(f, "Bob <bob@example.test>", &bob_b64);
	char *carol = make_peer_key(f, "Carol <carol@example.test>", &carol_b64);
	char *dave = make_peer_key(f, "Dave <dave@example.test>", &dave_b64);
	const int64_t t0 = 1700000000;
	keystore_autocrypt_recommendation rec;

	/* No state for the key at all: Autocrypt has no say. */
	assert_true(opportunistic(f, "bob@example.test", bob, false, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_AVAILABLE);
	assert_true(opportunistic(f, "bob@example.test", "not a fingerprint", false, &rec));

	/* Learned from a header: available; encrypt when both prefer mutual. */
	char *h = ac_value("bob@example.test", true, bob_b64);
	const char *just_h[] = { h, NULL };
	keystore_autocrypt_result r = process(f, "bob@example.test", t0, just_h, NULL, NULL, false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_IMPORTED);
	assert_true(opportunistic(f, "bob@example.test", bob, false, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_AVAILABLE);
	assert_true(opportunistic(f, "Bob@EXAMPLE.test", bob, true, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_ENCRYPT);

	/* Bob writes again 36 days later without the header: his key is
	 * stale, the recommendation discourage, the message goes as written. */
	r = process(f, "bob@example.test", t0 + 36 * 86400, NULL, NULL, NULL, false);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_SEEN);
	assert_false(opportunistic(f, "bob@example.test", bob, true, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_DISCOURAGE);

	/* Once the user verified the key, Autocrypt no longer has a say. */
	const char *error = NULL;
	assert_int_equal(keystore_key_state_set_acceptance(f->db, bob, KEYSTORE_ACCEPTANCE_VERIFIED,
							   &error), 0);
	assert_true(opportunistic(f, "bob@example.test", bob, false, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_AVAILABLE);

	/* Gossip only (from inside an encrypted message): discourage. */
	char *g = ac_value("carol@example.test", false, carol_b64);
	const char *just_g[] = { g, NULL };
	const char *rcpts[] = { "alice@example.test", "carol@example.test", NULL };
	char *dh = ac_value("dave@example.test", false, dave_b64);
	const char *just_dh[] = { dh, NULL };
	r = process(f, "dave@example.test", t0, just_dh, just_g, rcpts, true);
	assert_int_equal(r.step, KEYSTORE_AUTOCRYPT_TAKEN);
	char *says = keyring_says(f, "carol@example.test");
	assert_non_null(strstr(says, carol));
	g_free(says);
	assert_false(opportunistic(f, "carol@example.test", carol, false, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_DISCOURAGE);
	assert_true(opportunistic(f, "dave@example.test", dave, false, &rec));
	/* A learned key other than the one the peer state names: disable. */
	assert_false(opportunistic(f, "dave@example.test", carol, false, &rec));
	assert_int_equal(rec, KEYSTORE_AUTOCRYPT_DISABLE);

	g_free(h);
	g_free(g);
	g_free(dh);
	g_free(bob_b64);
	g_free(carol_b64);
	g_free(dave_b64);
	g_free(bob);
	g_free(carol);
	g_free(dave);
}

/* Two sessions (each with a database handle of its own, as the API and
 * the server have) read mail from bob at the same time: one the messages
 * with his header, the other those without. Every change must survive:
 * last_seen is the newest date of all, autocrypt_timestamp the newest
 * with a header, and the key stays. Without one transaction per row
 * update, a session writing back what it read before the other's write
 * loses that write. */
typedef struct {
	fixture *f;
	keystore_db *db;
	const char *header;	/* NULL: messages without one */
	int64_t first;
	int n;
	int failures;
} race_arg;

static gpointer race_run(gpointer p)
{
	race_arg *a = p;
	const char *values[] = { a->header, NULL };
	for (int i = 0; i < a->n; i++) {
		keystore_autocrypt_message m = {
			.account = "alice@example.test", .from = "bob@example.test",
			.date = a->first + 2 * i, .now = 1800000000,
			.autocrypt = a->header != NULL ? values : NULL,
		};
		keystore_autocrypt_result res;
		const char *error = NULL;
		if (keystore_autocrypt_process(a->db, a->f->kr, &m, &res, &error) < 0)
			a->failures++;
	}
	return NULL;
}

typedef struct {
	keystore_db *db;
	volatile gint stop;
	int regressions;	/* times a timestamp went back */
	int reads;
} race_watch;

/* Reads the row over and over: what is stored never goes back in time. */
static gpointer race_watch_run(gpointer p)
{
	race_watch *w = p;
	int64_t seen = 0, ts = 0;
	while (!g_atomic_int_get(&w->stop)) {
		keystore_autocrypt_peer peer;
		bool found = false;
		const char *error;
		if (keystore_autocrypt_peer_get(w->db, "alice@example.test", "bob@example.test",
						&peer, &found, &error) == 0 && found) {
			w->reads++;
			if (peer.last_seen < seen || peer.autocrypt_timestamp < ts)
				w->regressions++;
			seen = MAX(seen, peer.last_seen);
			ts = MAX(ts, peer.autocrypt_timestamp);
			keystore_autocrypt_peer_clear(&peer);
		}
		g_usleep(50);
	}
	return NULL;
}

static void test_concurrent_sessions(void **state)
{
	fixture *f = *state;
	char *bob_b64;
	char *bob = make_peer_key(f, "Bob <bob@example.test>", &bob_b64);
	char *h = ac_value("bob@example.test", false, bob_b64);
	const int64_t t0 = 1700000000;
	const int n = 150;
	const char *error = NULL;
	keystore_db *db2 = keystore_db_open(f->dir, &error);
	assert_non_null(db2);
	/* The key is known before the race: no gpg in it, the threads overlap. */
	const char *just_h[] = { h, NULL };
	keystore_autocrypt_result r = process(f, "bob@example.test", t0 - 10, just_h, NULL, NULL,
					      false);
	assert_int_equal(r.key, KEYSTORE_AUTOCRYPT_KEY_IMPORTED);
	keystore_db *db3 = keystore_db_open(f->dir, &error);
	assert_non_null(db3);
	race_watch watch = { db3, 0, 0, 0 };
	race_arg with = { f, f->db, h, t0, n, 0 };
	race_arg without = { f, db2, NULL, t0 + 1, n, 0 };
	GThread *w = g_thread_new("watch", race_watch_run, &watch);
	GThread *a = g_thread_new("with", race_run, &with);
	GThread *b = g_thread_new("without", race_run, &without);
	g_thread_join(a);
	g_thread_join(b);
	g_atomic_int_set(&watch.stop, 1);
	g_thread_join(w);
	keystore_db_close(&db3);
	assert_int_equal(with.failures, 0);
	assert_int_equal(without.failures, 0);
	assert_true(watch.reads > 0);
	assert_int_equal(watch.regressions, 0);
	bool found;
	keystore_autocrypt_peer p = get_peer(f, "bob@example.test", &found);
	assert_true(found);
	assert_int_equal(p.last_seen, t0 + 1 + 2 * (n - 1));
	assert_int_equal(p.autocrypt_timestamp, t0 + 2 * (n - 1));
	assert_non_null(p.public_key);
	assert_string_equal(p.public_key_fpr, bob);
	keystore_autocrypt_peer_clear(&p);
	keystore_db_close(&db2);
	g_free(h);
	g_free(bob_b64);
	g_free(bob);
}

/* The spec's example key (RSA 3072, a user ID that is not Alice's
 * address): a valid OpenPGP key, so the header is taken, but it is kept
 * as peer state only. */
static void test_process_spec_example(void **state)
{
	fixture *f = *state;
	const char *values[] = { spec_alice, NULL };
	keystore_autocrypt_message m = {
		.account = "bob@autocrypt.example", .from = "alice@autocrypt.example",
		.date = 1510062830, .now = 1800000000, .autocrypt = values,
	};
	keystore_autocrypt_result res;
	const char *error = NULL;
	assert_int_equal(keystore_autocrypt_process(f->db, f->kr, &m, &res, &error), 0);
	assert_int_equal(res.step, KEYSTORE_AUTOCRYPT_TAKEN);
	assert_string_equal(res.fingerprint, SPEC_ALICE_FPR);
	assert_int_equal(res.key, KEYSTORE_AUTOCRYPT_KEY_UNUSABLE);
	keystore_autocrypt_peer p;
	bool found;
	assert_int_equal(keystore_autocrypt_peer_get(f->db, "bob@autocrypt.example",
						     "alice@autocrypt.example", &p, &found, &error),
			 0);
	assert_true(found);
	assert_int_equal(p.autocrypt_timestamp, 1510062830);
	assert_true(p.prefer_mutual);
	keystore_autocrypt_peer_clear(&p);
	/* No From address: nothing. */
	m.from = NULL;
	assert_int_equal(keystore_autocrypt_process(f->db, f->kr, &m, &res, &error), 0);
	assert_int_equal(res.step, KEYSTORE_AUTOCRYPT_UNCHANGED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_spec_example),
		cmocka_unit_test(test_parse_attributes),
		cmocka_unit_test(test_parse_prefixes),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_update_rules),
		cmocka_unit_test(test_recommendation),
		cmocka_unit_test_setup_teardown(test_process_learns_and_defends, setup_fixture,
						teardown_fixture),
		cmocka_unit_test_setup_teardown(test_concurrent_sessions, setup_fixture,
						teardown_fixture),
		cmocka_unit_test_setup_teardown(test_opportunistic, setup_fixture,
						teardown_fixture),
		cmocka_unit_test_setup_teardown(test_process_spec_example, setup_fixture,
						teardown_fixture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
