/* cli_common: what every configuration-reading subcommand shares — the exit
 * codes of docs/cli.md and echoing user input safely. */
#ifndef SEALPOST_CLI_COMMON_H
#define SEALPOST_CLI_COMMON_H

#include <json-glib/json-glib.h>

/* The exit codes of docs/cli.md, as in main.c. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_RUNTIME = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_CONFIG = 3,
};

/* What the user typed, safe to echo on one line of a terminal: valid
 * UTF-8, control characters as '?', at most 80 characters then "...".
 * g_free. */
char *cli_printable(const char *s);

/* Prints what b built, pretty, and a line end on stdout (--json), then
 * unrefs b. */
void cli_print_json(JsonBuilder *b);

#endif
