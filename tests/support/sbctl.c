/* sbctl in a child process with its output on pipes, and the router and
 * service it talks to. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/clock.h"
#include "support/router.h"
#include "support/sbctl.h"
#include "support/testlib.h"

const char *SBCTL;
char ROUTER[32];
const char *SBCTL_STDIN;

static struct sb_client *svc;
static pthread_t svc_thread;

static void *run_service(void *arg)
{
	(void)arg;
	CHECK_INT(sb_client_run(svc), 0);
	return NULL;
}

void service_start(void (*handlers)(struct sb_client *service))
{
	router_start(NULL);
	snprintf(ROUTER, sizeof ROUTER, "127.0.0.1:%u", PORT);
	svc = new_client("service");
	handlers(svc);
	until_online(svc);
	CHECK_INT(pthread_create(&svc_thread, NULL, run_service, NULL), 0);
}

void service_stop(void)
{
	sb_client_stop(svc);
	pthread_join(svc_thread, NULL);
	sb_client_free(svc);
	sb_router_stop(R, 1000);
	sb_router_free(R);
	R = NULL;
}

void until_online(struct sb_client *c)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	while (!sb_client_online(c) && now_ms() < deadline)
		sb_client_process(c, 10);
	CHECK(sb_client_online(c));
}

struct sb_client *new_client(const char *role)
{
	struct sb_client_config cfg;
	int err = 0;

	sb_client_config_init(&cfg);
	cfg.port = PORT;
	cfg.role = strcmp(role, "service") == 0 ? SB_ROLE_SERVICE : SB_ROLE_CLIENT;
	struct sb_client *c = sb_client_new(&cfg, &err);
	CHECK(c != NULL);
	return c;
}

void sbctl_spawn(struct proc *p, const char *const *args)
{
	const char *argv[32] = {SBCTL, "--router", ROUTER};
	int o[2], e[2], n = 3;

	while (*args != NULL && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	memset(p, 0, sizeof *p);
	CHECK(pipe(o) == 0 && pipe(e) == 0);
	p->pid = fork();
	if (p->pid == 0) {
		/* Never the test's own stdin: sbctl reading it would hang. */
		int in = open(SBCTL_STDIN != NULL ? SBCTL_STDIN : "/dev/null", O_RDONLY);
		if (in < 0)
			_exit(126);
		dup2(in, STDIN_FILENO);
		dup2(o[1], STDOUT_FILENO);
		dup2(e[1], STDERR_FILENO);
		close(o[0]);
		close(e[0]);
		execv(SBCTL, (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	p->out = o[0];
	p->err = e[0];
}

int sbctl_read(struct proc *p, int ms)
{
	struct pollfd fds[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};

	if (p->out < 0 && p->err < 0)
		return 0;
	if (poll(fds, 2, ms) <= 0)
		return 1;
	for (int i = 0; i < 2; i++) {
		int *fd = i == 0 ? &p->out : &p->err;
		char *buf = i == 0 ? p->so : p->se;
		size_t *len = i == 0 ? &p->nso : &p->nse;
		if (*fd < 0 || fds[i].revents == 0)
			continue;
		ssize_t r = read(*fd, buf + *len, sizeof p->so - 1 - *len);
		if (r <= 0) {
			close(*fd);
			*fd = -1;
		} else {
			*len += (size_t)r;
			buf[*len] = 0;
		}
	}
	return 1;
}

int sbctl_wait_stderr(struct proc *p, const char *text)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	while (strstr(p->se, text) == NULL && now_ms() < deadline && sbctl_read(p, 50))
		;
	return strstr(p->se, text) != NULL;
}

void sbctl_finish(struct proc *p)
{
	uint64_t deadline = now_ms() + RUN_MS;
	int status;

	while (now_ms() < deadline && sbctl_read(p, 50))
		;
	if (p->out >= 0 || p->err >= 0) {
		fprintf(stderr, "sbctl hung; killing it\n");
		CHECK(0);
		kill(p->pid, SIGKILL);
		if (p->out >= 0)
			close(p->out);
		if (p->err >= 0)
			close(p->err);
	}
	waitpid(p->pid, &status, 0);
	p->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}
