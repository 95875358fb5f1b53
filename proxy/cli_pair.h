/* cli_pair: the `sealpost pair` command — prints the local API's URL and
 * bearer token, for the add-on, the web console or a script. */
#ifndef SEALPOST_CLI_PAIR_H
#define SEALPOST_CLI_PAIR_H

/* argv[0] is "pair". Returns the exit code of docs/cli.md: 0 done, 1 the
 * token could not be read or created, 2 usage, 3 the configuration is
 * invalid. */
int cli_pair_main(int argc, char **argv);

#endif
