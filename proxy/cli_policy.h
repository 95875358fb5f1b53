/* cli_policy: the `sealpost policy` command — set, unset and list the
 * per-address and per-domain encryption rules in STATE_DIR/sealpost.db. */
#ifndef SEALPOST_CLI_POLICY_H
#define SEALPOST_CLI_POLICY_H

/* argv[0] is "policy". Returns the exit code of docs/cli.md: 0 done, 1 the
 * database failed or unset found no rule, 2 usage (a bad TARGET or POLICY
 * included), 3 the configuration is invalid. */
int cli_policy_main(int argc, char **argv);

#endif
