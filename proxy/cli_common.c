/* cli_common: helpers shared by the sealpost subcommands. */
#include "cli_common.h"

#include <glib.h>
#include <stdio.h>

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
