/* cli_pair: `sealpost pair [--json]` reads STATE_DIR/api-token (creating it
 * as `sealpost serve` would when it does not exist yet) and prints it with
 * the API's URL. */
#include "cli_pair.h"

#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "api_token.h"
#include "cli_common.h"
#include "config.h"

int cli_pair_main(int argc, char **argv)
{
	char *config_path = NULL;
	gboolean json = FALSE;
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration file (default: ~/.config/sealpost/sealpost.conf)", "FILE" },
		{ "json", 0, 0, G_OPTION_ARG_NONE, &json, "print a JSON object", NULL },
		G_OPTION_ENTRY_NULL
	};
	GOptionContext *ctx = g_option_context_new("- print the local API's URL and token");
	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_summary(ctx,
		"Prints the URL of sealpost's local API and the token that the add-on,\n"
		"the web console or a script sends as \"Authorization: Bearer TOKEN\".\n"
		"The token lives in STATE_DIR/api-token (mode 0600), made on first start;\n"
		"whoever has it can manage your keys and policy: paste it only into the\n"
		"sealpost add-on or console.");
	if (!cli_parse("pair", ctx, &argc, &argv)) {
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	if (argc != 1) {
		fprintf(stderr, "sealpost pair: unexpected argument %s\n", argv[1]);
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	int ret;
	config *cfg = cli_load_config("pair", config_path, &ret);
	g_free(config_path);
	if (cfg == NULL)
		return ret;
	const char *error;
	ret = CLI_EXIT_RUNTIME;
	char token[API_CHECK_TOKEN_LEN + 1];
	if (sodium_init() < 0) {
		fprintf(stderr, "sealpost pair: libsodium cannot be initialised\n");
	} else if (g_mkdir_with_parents(cfg->state_dir, 0700) < 0) {
		fprintf(stderr, "sealpost pair: cannot create state_dir %s: %s\n", cfg->state_dir,
			strerror(errno));
	} else if (api_token_load(cfg->state_dir, true, token, &error) < 0) {
		fprintf(stderr, "sealpost pair: %s\n", error);
	} else {
		char *url = api_url(&cfg->api_listen);
		if (cfg->api_listen_default)
			fprintf(stderr, "sealpost pair: api_listen is not set, so sealpost serves no "
				"API; add api_listen = %s:%d to [sealpost]\n", cfg->api_listen.host,
				cfg->api_listen.port);
		if (json) {
			JsonBuilder *b = json_builder_new();
			json_builder_begin_object(b);
			json_builder_set_member_name(b, "url");
			json_builder_add_string_value(b, url);
			json_builder_set_member_name(b, "api");
			char *base = g_strconcat(url, "/api/v1/", NULL);
			json_builder_add_string_value(b, base);
			g_free(base);
			json_builder_set_member_name(b, "token");
			json_builder_add_string_value(b, token);
			json_builder_end_object(b);
			cli_print_json(b);
		} else {
			printf("url   %s/api/v1/\ntoken %s\n", url, token);
		}
		g_free(url);
		sodium_memzero(token, sizeof(token));
		ret = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
	}
	config_free(&cfg);
	return ret;
}
