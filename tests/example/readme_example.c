/* Run a command in a local workspace (./data/example) and print its output. */
#include <stdio.h>

#include <omni/omni.h>

int main(void)
{
	struct omni_backend *b = NULL;
	struct omni_command_result res;

	if (omni_global_init() < 0) {
		fprintf(stderr, "error: %s\n", omni_error_last());
		return 1;
	}
	if (omni_local_backend_new(&b, "example", NULL) < 0 ||
	    omni_backend_start(b) < 0 ||
	    omni_backend_execute_command(b, "echo 'Hello'", 30, &res) < 0)
		goto fail;
	fwrite(res.output, 1, res.output_len, stdout); /* Hello */
	omni_command_result_finish(&res);
	if (omni_backend_shutdown(b) < 0)
		goto fail;
	omni_backend_free(b);
	omni_global_shutdown();
	return 0;
fail:
	fprintf(stderr, "error: %s\n", omni_error_last());
	omni_backend_free(b);
	omni_global_shutdown();
	return 1;
}
