/*
 * exec/agent_mux.h - `omni-agent mux` (agent_mux.c), called by agent.c's main
 * when the first argument is "mux".
 */
#ifndef OMNI_AGENT_MUX_H
#define OMNI_AGENT_MUX_H

/* Run the mux over stdin/stdout until stdin ends; the exit status. */
int omni__agent_mux_main(int argc, char **argv);

#endif
