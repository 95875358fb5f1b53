/* cli_common: helpers shared by the sealpost subcommands. */
#include "cli_common.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

char *cli_printable(const char *s)
{
	char *valid = g_utf8_make_valid(s, -1);
	GString *out = g_string_new("");
	for (const char *p = valid; *p != '\0'; p = g_utf8_next_char(p)) {
		if (g_utf8_pointer_to_offset(valid, p) >= 80) {
			g_string_append(out, "...");
			break;
		}
		gunichar c = g_utf8_get_char(p);
		if (g_unichar_iscntrl(c))
			g_string_append_c(out, '?');
		else
			g_string_append_unichar(out, c);
	}
	g_free(valid);
	return g_string_free(out, FALSE);
}

void cli_print_json(JsonBuilder *b)
{
	JsonNode *root = json_builder_get_root(b);
	JsonGenerator *gen = json_generator_new();
	json_generator_set_root(gen, root);
	json_generator_set_pretty(gen, TRUE);
	char *text = json_generator_to_data(gen, NULL);
	printf("%s\n", text);
	g_free(text);
	g_object_unref(gen);
	json_node_unref(root);
	g_object_unref(b);
}

bool cli_parse(const char *cmd, GOptionContext *ctx, int *argc, char ***argv)
{
	GError *err = NULL;
	bool parsed = g_option_context_parse(ctx, argc, argv, &err);
	g_option_context_free(ctx);
	if (!parsed) {
		fprintf(stderr, "sealpost %s: %s\n", cmd, err->message);
		g_error_free(err);
	}
	return parsed;
}

void cli_drop_dashdash(int *argc, char **argv)
{
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i - 1) * sizeof(*argv));
			(*argc)--;
			return;
		}
	}
}

config *cli_load_config(const char *cmd, const char *config_path, int *exit_r)
{
	char *fallback = config_path == NULL ? config_default_path() : NULL;
	const char *path = config_path != NULL ? config_path : fallback;
	if (path == NULL) {
		fprintf(stderr, "sealpost %s: no configuration; give --config FILE\n", cmd);
		*exit_r = CLI_EXIT_USAGE;
		return NULL;
	}
	const char *error;
	config *cfg = config_load(path, &error);
	g_free(fallback);
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", error);
		*exit_r = CLI_EXIT_CONFIG;
	}
	return cfg;
}
