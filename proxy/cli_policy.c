/* cli_policy: `sealpost policy set|unset|list` on the rules in the
 * configuration's STATE_DIR/sealpost.db; a running server sees each change. */
#include "cli_policy.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#include "cli_common.h"
#include "config.h"
#include "keystore_db.h"

/* A normalised target and its terminating NUL (keystore_db.h). */
#define CLI_POLICY_TARGET_SIZE 321

/* ISO 8601 in UTC, e.g. 2026-03-01T12:00:00Z (g_free). */
static char *cli_policy_time(int64_t t)
{
	GDateTime *dt = g_date_time_new_from_unix_utc(t);
	if (dt == NULL)
		return g_strdup("?");
	char *s = g_date_time_format_iso8601(dt);
	g_date_time_unref(dt);
	return s != NULL ? s : g_strdup("?");
}

typedef struct {
	char *target;
	keystore_policy policy;
	int64_t updated;
} cli_policy_rule;

static void cli_policy_rule_clear(void *p)
{
	g_free(((cli_policy_rule *)p)->target);
}

static int cli_policy_collect(void *ctx, const keystore_policy_rule *rule)
{
	cli_policy_rule r = {
		.target = g_strdup(rule->target),
		.policy = rule->policy,
		.updated = rule->updated,
	};
	g_array_append_val((GArray *)ctx, r);
	return 0;
}

static void cli_policy_json_add(JsonBuilder *b, const GArray *rules)
{
	json_builder_begin_array(b);
	for (guint i = 0; i < rules->len; i++) {
		const cli_policy_rule *r = &g_array_index(rules, cli_policy_rule, i);
		char *when = cli_policy_time(r->updated);
		char *target = g_utf8_make_valid(r->target, -1);
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "target");
		json_builder_add_string_value(b, target);
		json_builder_set_member_name(b, "policy");
		json_builder_add_string_value(b, keystore_policy_name(r->policy));
		json_builder_set_member_name(b, "updated");
		json_builder_add_string_value(b, when);
		json_builder_end_object(b);
		g_free(target);
		g_free(when);
	}
	json_builder_end_array(b);
}

int cli_policy_json_rules(keystore_db *db, JsonBuilder *b, const char **error_r)
{
	GArray *rules = g_array_new(FALSE, FALSE, sizeof(cli_policy_rule));
	g_array_set_clear_func(rules, cli_policy_rule_clear);
	int ret = keystore_policy_list(db, cli_policy_collect, rules, error_r);
	if (ret == 0)
		cli_policy_json_add(b, rules);
	g_array_free(rules, TRUE);
	return ret;
}

static int cli_policy_list(keystore_db *db, bool json)
{
	GArray *rules = g_array_new(FALSE, FALSE, sizeof(cli_policy_rule));
	g_array_set_clear_func(rules, cli_policy_rule_clear);
	const char *error;
	if (keystore_policy_list(db, cli_policy_collect, rules, &error) < 0) {
		fprintf(stderr, "sealpost policy list: %s\n", error);
		g_array_free(rules, TRUE);
		return CLI_EXIT_RUNTIME;
	}
	if (json) {
		JsonBuilder *b = json_builder_new();
		cli_policy_json_add(b, rules);
		cli_print_json(b);
		g_array_free(rules, TRUE);
		return CLI_EXIT_OK;
	}
	GString *out = g_string_new("");
	int width = 0, policy_width = 0;
	for (guint i = 0; i < rules->len; i++) {
		const cli_policy_rule *r = &g_array_index(rules, cli_policy_rule, i);
		width = MAX(width, (int)g_utf8_strlen(r->target, -1));
		policy_width = MAX(policy_width, (int)strlen(keystore_policy_name(r->policy)));
	}
	for (guint i = 0; i < rules->len; i++) {
		const cli_policy_rule *r = &g_array_index(rules, cli_policy_rule, i);
		char *when = cli_policy_time(r->updated);
		/* Padded by characters, not bytes, so that columns align
		 * with internationalised names too. */
		g_string_append(out, r->target);
		for (int pad = (int)g_utf8_strlen(r->target, -1); pad < width; pad++)
			g_string_append_c(out, ' ');
		g_string_append_printf(out, "  %-*s  updated %s\n", policy_width,
				       keystore_policy_name(r->policy), when);
		g_free(when);
	}
	fputs(out->str, stdout);
	g_string_free(out, TRUE);
	g_array_free(rules, TRUE);
	return CLI_EXIT_OK;
}

static const char cli_policy_summary[] =
	"Commands:\n"
	"  set TARGET POLICY   add or replace the rule for TARGET\n"
	"  unset TARGET        remove the rule for TARGET\n"
	"  list [--json]       print every rule\n"
	"\n"
	"TARGET is an address (user@domain) or a domain (@domain), stored in lower\n"
	"case; an address's rule beats its domain's. POLICY is require,\n"
	"opportunistic or never. The rules live in STATE_DIR/sealpost.db of the\n"
	"configuration; a running sealpost applies a change to the next recipient.";

/* Checks the command line before anything is read: a usage error is
 * reported as such even when the configuration is broken too. */
static int cli_policy_check_args(int argc, char **argv, bool json, char *target,
				 keystore_policy *policy)
{
	const char *sub = argv[1];
	int want = strcmp(sub, "set") == 0 ? 4 : strcmp(sub, "unset") == 0 ? 3 : 2;
	if (strcmp(sub, "set") != 0 && strcmp(sub, "unset") != 0 && strcmp(sub, "list") != 0) {
		char *p = cli_printable(sub);
		fprintf(stderr, "sealpost policy: unknown command '%s': expected set, unset or list\n", p);
		g_free(p);
		return -1;
	}
	if (argc != want) {
		static const char *const usage[] = { "list", "unset TARGET", "set TARGET POLICY" };
		fprintf(stderr, "sealpost policy %s: usage: sealpost policy %s [--config FILE]%s\n",
			sub, usage[want - 2], want == 2 ? " [--json]" : "");
		return -1;
	}
	if (json && want != 2) {
		fprintf(stderr, "sealpost policy %s: --json applies to list only\n", sub);
		return -1;
	}
	if (want >= 3) {
		const char *why;
		if (keystore_policy_target_normalise(argv[2], target, CLI_POLICY_TARGET_SIZE, &why) < 0) {
			char *p = cli_printable(argv[2]);
			fprintf(stderr, "sealpost policy %s: invalid TARGET '%s': %s\n", sub, p, why);
			g_free(p);
			return -1;
		}
	}
	if (want == 4 && keystore_policy_parse(argv[3], policy) < 0) {
		char *p = cli_printable(argv[3]);
		fprintf(stderr, "sealpost policy set: invalid POLICY '%s': expected require, "
			"opportunistic or never\n", p);
		g_free(p);
		return -1;
	}
	return 0;
}

int cli_policy_main(int argc, char **argv)
{
	char *config_path = NULL;
	gboolean json = FALSE;
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration file (default: ~/.config/sealpost/sealpost.conf)", "FILE" },
		{ "json", 0, 0, G_OPTION_ARG_NONE, &json,
		  "list: print the rules as a JSON array", NULL },
		G_OPTION_ENTRY_NULL
	};
	GOptionContext *ctx = g_option_context_new(
		"set TARGET POLICY | unset TARGET | list - manage encryption policy rules");
	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_summary(ctx, cli_policy_summary);
	if (!cli_parse("policy", ctx, &argc, &argv)) {
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	/* "--" protects a TARGET that starts with '-'. */
	cli_drop_dashdash(&argc, argv);
	if (argc < 2) {
		fprintf(stderr, "sealpost policy: expected set, unset or list "
			"(sealpost policy --help)\n");
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	char target[CLI_POLICY_TARGET_SIZE] = "";
	keystore_policy policy = KEYSTORE_POLICY_NONE;
	if (cli_policy_check_args(argc, argv, json, target, &policy) < 0) {
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	const char *sub = argv[1];

	int exit_code;
	config *cfg = cli_load_config("policy", config_path, &exit_code);
	g_free(config_path);
	if (cfg == NULL)
		return exit_code;
	const char *error;
	keystore_db *db = keystore_db_open(cfg->state_dir, &error);
	config_free(&cfg);
	if (db == NULL) {
		fprintf(stderr, "sealpost policy: %s\n", error);
		return CLI_EXIT_RUNTIME;
	}

	int ret = CLI_EXIT_OK;
	if (strcmp(sub, "list") == 0) {
		ret = cli_policy_list(db, json);
	} else if (strcmp(sub, "set") == 0) {
		if (keystore_policy_set(db, target, policy, &error) < 0) {
			fprintf(stderr, "sealpost policy set: %s\n", error);
			ret = CLI_EXIT_RUNTIME;
		} else {
			printf("%s  %s\n", target, keystore_policy_name(policy));
		}
	} else {
		bool existed = false;
		if (keystore_policy_unset(db, target, &existed, &error) < 0) {
			fprintf(stderr, "sealpost policy unset: %s\n", error);
			ret = CLI_EXIT_RUNTIME;
		} else if (!existed) {
			fprintf(stderr, "sealpost policy unset: no rule for %s\n", target);
			ret = CLI_EXIT_RUNTIME;
		} else {
			printf("%s  removed\n", target);
		}
	}
	keystore_db_close(&db);
	if (fflush(stdout) != 0 && ret == CLI_EXIT_OK) {
		fprintf(stderr, "sealpost policy: cannot write the output\n");
		ret = CLI_EXIT_RUNTIME;
	}
	return ret;
}
