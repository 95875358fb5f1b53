/* Unit tests of gateway mode's own parts: the [gateway NAME] section, rule
 * targets and their matching, client networks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "config.h"
#include "gateway.h"

static const char good[] =
	"[sealpost]\n"
	"state_dir = /tmp/sp-state\n"
	"\n"
	"[gateway outbound]\n"
	"listen = 127.0.0.1:10025\n"
	"next_hop = 127.0.0.1:10026\n"
	"clients = 127.0.0.1, 10.1.0.0/16 fd00::/8\n"
	"default_policy = never\n"
	"require = Partner.Example, *.partner.example, counsel@lawfirm.example\n"
	"exempt = press.example, ceo@partner.example\n"
	"sign_key = gateway@org.example\n";

static config *load(const char *text, const char **error_r)
{
	return config_load_data(text, strlen(text), "t.conf", error_r);
}

static void test_section(void **state)
{
	(void)state;
	const char *error = NULL;
	config *cfg = load(good, &error);
	assert_non_null(cfg);
	assert_int_equal(cfg->n_accounts, 0);
	assert_int_equal(cfg->n_gateways, 1);
	const config_gateway *gw = cfg->gateways[0];
	assert_string_equal(gw->name, "outbound");
	assert_string_equal(gw->listen.host, "127.0.0.1");
	assert_int_equal(gw->listen.port, 10025);
	const config_account *a = &gw->account;
	assert_ptr_equal(a->gateway, gw);
	assert_string_equal(a->name, "outbound");
	assert_string_equal(a->smtp_upstream.host, "127.0.0.1");
	assert_int_equal(a->smtp_upstream.port, 10026);
	assert_int_equal(a->smtp_upstream.tls, UPSTREAM_TLS_NONE);
	assert_string_equal(a->smtp_upstream.url, "127.0.0.1:10026");
	assert_int_equal(a->policy, KEYSTORE_POLICY_NEVER);
	assert_true(a->sign);
	assert_string_equal(a->address, "gateway@org.example");
	assert_false(a->policy_header);
	assert_false(gw->split);
	assert_int_equal(gw->n_clients, 3);
	assert_string_equal(gw->require[0], "@partner.example");
	assert_string_equal(gw->require[1], ".partner.example");
	assert_string_equal(gw->require[2], "counsel@lawfirm.example");
	assert_null(gw->require[3]);
	assert_string_equal(gw->exempt[0], "@press.example");
	config_free(&cfg);
}

static void test_defaults(void **state)
{
	(void)state;
	const char *error = NULL;
	config *cfg = load("[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = localhost:2\n", &error);
	assert_non_null(cfg);
	const config_gateway *gw = cfg->gateways[0];
	assert_int_equal(gw->account.policy, KEYSTORE_POLICY_OPPORTUNISTIC);
	assert_false(gw->account.sign);
	assert_null(gw->account.address);
	assert_true(gateway_client_allowed(gw, "127.0.0.1"));
	assert_true(gateway_client_allowed(gw, "::1"));
	assert_false(gateway_client_allowed(gw, "127.0.0.2"));
	assert_null(gw->require[0]);
	assert_int_equal(gateway_policy(gw, "x@y.example", NULL), KEYSTORE_POLICY_OPPORTUNISTIC);
	config_free(&cfg);
}

static void test_errors(void **state)
{
	(void)state;
	static const struct { const char *text, *error; } cases[] = {
		{ "[gateway g]\nnext_hop = 127.0.0.1:2\n",
		  "t.conf:1: [gateway g]: missing key 'listen', where the MTA hands mail over" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\n",
		  "t.conf:1: [gateway g]: missing key 'next_hop', where mail is re-injected" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = smtp://127.0.0.1:2\n",
		  "t.conf:3: [gateway g] next_hop: expected HOST:PORT, got 'smtp://127.0.0.1:2'" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = mx.example.org:25\n",
		  "t.conf:3: [gateway g] next_hop: mx.example.org is not a loopback address; "
		  "set next_hop_tls = starttls or tls" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\nnext_hop_tls = maybe\n",
		  "t.conf:4: [gateway g] next_hop_tls: expected none, starttls or tls, got 'maybe'" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\nclients = 10.0.0.0/33\n",
		  "t.conf:4: [gateway g] clients: the prefix length is out of range, got '10.0.0.0/33'" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\nrequire = a@b@c\n",
		  "t.conf:4: [gateway g] require: expected user@domain, @domain, domain or "
		  "*.domain, got 'a@b@c'" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\ndefault_policy = x\n",
		  "t.conf:4: [gateway g] default_policy: expected require, opportunistic or never, "
		  "got 'x'" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\npolicy = never\n",
		  "t.conf:4: [gateway g] policy: unknown key" },
		{ "[gateway g]\nlisten = 10.0.0.1:1\nnext_hop = 127.0.0.1:2\n",
		  "t.conf:2: [gateway g] listen: 10.0.0.1 is not a loopback address; set "
		  "allow_remote = true in [sealpost] to listen there" },
		{ "[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\n"
		  "[gateway h]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\n",
		  "t.conf:5: [gateway h] listen: 127.0.0.1:1 is already used by another gateway" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *error = NULL;
		config *cfg = load(cases[i].text, &error);
		if (cfg != NULL)
			fail_msg("case %zu loaded", i);
		assert_string_equal(error, cases[i].error);
	}
}

static void test_rules(void **state)
{
	(void)state;
	const char *error = NULL;
	config *cfg = load(good, &error);
	assert_non_null(cfg);
	const config_gateway *gw = cfg->gateways[0];
	const char *m;
	assert_int_equal(gateway_policy(gw, "bob@partner.example", &m), KEYSTORE_POLICY_REQUIRE);
	assert_string_equal(m, "@partner.example");
	assert_int_equal(gateway_policy(gw, "Bob@PARTNER.example", &m), KEYSTORE_POLICY_REQUIRE);
	assert_int_equal(gateway_policy(gw, "x@eu.partner.example", &m), KEYSTORE_POLICY_REQUIRE);
	assert_string_equal(m, ".partner.example");
	/* An address exemption beats the domain requirement. */
	assert_int_equal(gateway_policy(gw, "ceo@partner.example", &m), KEYSTORE_POLICY_NEVER);
	assert_string_equal(m, "ceo@partner.example");
	assert_int_equal(gateway_policy(gw, "counsel@lawfirm.example", &m), KEYSTORE_POLICY_REQUIRE);
	assert_int_equal(gateway_policy(gw, "other@lawfirm.example", &m), KEYSTORE_POLICY_NEVER);
	assert_null(m);
	assert_int_equal(gateway_policy(gw, "x@press.example", &m), KEYSTORE_POLICY_NEVER);
	/* Not a subdomain match: "notpartner.example". */
	assert_int_equal(gateway_policy(gw, "x@notpartner.example", &m), KEYSTORE_POLICY_NEVER);
	assert_null(m);
	assert_int_equal(gateway_policy(gw, NULL, &m), KEYSTORE_POLICY_NEVER);
	config_free(&cfg);
}

static void test_equal_specificity_exempt_wins(void **state)
{
	(void)state;
	const char *error = NULL;
	config *cfg = load("[gateway g]\nlisten = 127.0.0.1:1\nnext_hop = 127.0.0.1:2\n"
			   "require = @a.example, *.b.example\nexempt = a.example .x.b.example\n",
			   &error);
	assert_non_null(cfg);
	const config_gateway *gw = cfg->gateways[0];
	assert_int_equal(gateway_policy(gw, "u@a.example", NULL), KEYSTORE_POLICY_NEVER);
	assert_int_equal(gateway_policy(gw, "u@y.b.example", NULL), KEYSTORE_POLICY_REQUIRE);
	/* The longer subdomain rule is the more specific. */
	assert_int_equal(gateway_policy(gw, "u@z.x.b.example", NULL), KEYSTORE_POLICY_NEVER);
	config_free(&cfg);
}

static void test_parse_rule(void **state)
{
	(void)state;
	static const struct { const char *in, *out; } good_rules[] = {
		{ "example.org", "@example.org" },
		{ "@Example.ORG", "@example.org" },
		{ "*.example.org", ".example.org" },
		{ ".example.org", ".example.org" },
		{ "A.B@example.org", "a.b@example.org" },
	};
	for (size_t i = 0; i < sizeof(good_rules) / sizeof(good_rules[0]); i++) {
		char *norm = NULL;
		const char *error;
		assert_int_equal(gateway_parse_rule(good_rules[i].in, &norm, &error), 0);
		assert_string_equal(norm, good_rules[i].out);
		g_free(norm);
	}
	static const char *const bad[] = {
		"", "@", "a@", "*.", "..example.org", "example..org", "a b@example.org",
		"<a@example.org>", "a@b@example.org", "exa mple.org", "example.org.",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *norm = NULL;
		const char *error = NULL;
		if (gateway_parse_rule(bad[i], &norm, &error) == 0)
			fail_msg("'%s' was accepted as %s", bad[i], norm);
		assert_non_null(error);
	}
}

static void test_networks(void **state)
{
	(void)state;
	config_gateway gw;
	memset(&gw, 0, sizeof(gw));
	config_network nets[3];
	const char *error;
	assert_int_equal(gateway_parse_network("10.1.0.0/16", &nets[0], &error), 0);
	assert_int_equal(gateway_parse_network("fd00::/8", &nets[1], &error), 0);
	assert_int_equal(gateway_parse_network("192.0.2.7", &nets[2], &error), 0);
	gw.clients = nets;
	gw.n_clients = 3;
	assert_true(gateway_client_allowed(&gw, "10.1.255.3"));
	assert_false(gateway_client_allowed(&gw, "10.2.0.1"));
	assert_true(gateway_client_allowed(&gw, "fd12::1"));
	assert_false(gateway_client_allowed(&gw, "fe80::1"));
	assert_true(gateway_client_allowed(&gw, "192.0.2.7"));
	assert_true(gateway_client_allowed(&gw, "::ffff:192.0.2.7"));
	assert_false(gateway_client_allowed(&gw, "192.0.2.8"));
	assert_false(gateway_client_allowed(&gw, "not an address"));
	assert_int_equal(gateway_parse_network("10.0.0.0/", &nets[0], &error), -1);
	assert_int_equal(gateway_parse_network("10.0.0.0/-1", &nets[0], &error), -1);
	assert_int_equal(gateway_parse_network("::/129", &nets[0], &error), -1);
	assert_int_equal(gateway_parse_network("host.example", &nets[0], &error), -1);
	assert_int_equal(gateway_parse_network("0.0.0.0/0", &nets[0], &error), 0);
	gw.n_clients = 1;
	assert_true(gateway_client_allowed(&gw, "203.0.113.9"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_section),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_equal_specificity_exempt_wins),
		cmocka_unit_test(test_parse_rule),
		cmocka_unit_test(test_networks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
