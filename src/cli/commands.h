/* commands.h: the subcommands of the alignprop-mpi program. Each returns the
 * process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef AP_CLI_COMMANDS_H
#define AP_CLI_COMMANDS_H

int ap_cmd_sample(int argc, char **argv);
/* alignprop-mpi lora convert IN OUT --to LAYOUT (lora_cmd.c). */
int ap_cmd_lora(int argc, char **argv);
/* alignprop-mpi inspect PATH [--json] (inspect_cmd.c). */
int ap_cmd_inspect(int argc, char **argv);
/* alignprop-mpi CONFIG.yaml [options]: training / evaluation (train_cmd.c). */
int ap_cmd_train(int argc, char **argv);
/* alignprop-mpi report RUN_DIR [-o FILE]: the run's HTML report (report_cmd.c). */
int ap_cmd_report(int argc, char **argv);

#endif
