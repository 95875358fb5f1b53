/* cli_common: what the subcommands share — the exit codes of docs/cli.md,
 * option parsing, loading the configuration, echoing user input safely and
 * printing JSON. */
#ifndef SEALPOST_CLI_COMMON_H
#define SEALPOST_CLI_COMMON_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

#include "config.h"

/* The exit codes of docs/cli.md, for every command. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_RUNTIME = 1,	/* could not start, serve or do what was asked */
	CLI_EXIT_USAGE = 2,	/* bad command line */
	CLI_EXIT_CONFIG = 3,	/* the configuration is invalid */
};

/* What the user typed, safe to echo on one line of a terminal: valid
 * UTF-8, control characters as '?', at most 80 characters then "...".
 * g_free. */
char *cli_printable(const char *s);

/* Parses argv with ctx and frees ctx. False on a usage error, with
 * "sealpost CMD: why" printed. */
bool cli_parse(const char *cmd, GOptionContext *ctx, int *argc, char ***argv);

/* Removes the first "--" from argv: GOption leaves it in place, where it
 * only protected a following argument that starts with '-'. */
void cli_drop_dashdash(int *argc, char **argv);

/* The configuration at config_path (NULL: the per-user default path,
 * config_default_path). NULL with the reason printed and *exit_r set:
 * CLI_EXIT_USAGE when there is no file to read, CLI_EXIT_CONFIG when it
 * cannot be loaded. cmd names the command in the message. */
config *cli_load_config(const char *cmd, const char *config_path, int *exit_r);

/* Prints what b built, pretty, and a line end on stdout (--json), then
 * unrefs b. */
void cli_print_json(JsonBuilder *b);

#endif
