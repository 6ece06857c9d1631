/* sb-bench's processes: starting the router, NATS and the responder, and
 * reading what each one cost from /proc (the only figures on a shared 2-core
 * VM that stay steady from run to run). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

pid_t sbb_proc_spawn(char *const argv[], int *out_fd, int quiet)
{
	int out[2] = {-1, -1};
	if (out_fd && pipe2(out, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(out_fd ? out[1] : null, STDOUT_FILENO);
		if (quiet)
			dup2(null, STDERR_FILENO);
		/* Children die with the harness: an interrupted benchmark must
		 * not leave a router or a NATS server holding a core. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execvp(argv[0], argv);
		fprintf(stderr, "sb-bench: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (out_fd) {
		close(out[1]);
		*out_fd = out[0];
	}
	return pid;
}

int sbb_proc_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t have = 0;
	uint64_t until = sbb_now_ns() + (uint64_t)timeout_ms * 1000000u;
	while (have + 1 < cap) {
		uint64_t now = sbb_now_ns();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (now >= until || poll(&p, 1, (int)((until - now) / 1000000u) + 1) <= 0)
			return -1;
		/* One byte at a time: what follows the line is not ours to eat. */
		ssize_t n = read(fd, buf + have, 1);
		if (n <= 0)
			return -1;
		if (buf[have] == '\n')
			break;
		have++;
	}
	buf[have] = 0;
	return 0;
}

void sbb_proc_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static FILE *open_proc(pid_t pid, const char *file)
{
	char path[64];
	if (pid == 0)
		snprintf(path, sizeof path, "/proc/self/%s", file);
	else
		snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
	return fopen(path, "r");
}

/* utime+stime from an open /proc/.../stat, which it closes. */
static double stat_cpu(FILE *f)
{
	char buf[1024];
	unsigned long ut = 0, st = 0;
	if (f == NULL)
		return -1;
	char *ok = fgets(buf, sizeof buf, f);
	fclose(f);
	/* The command name may hold spaces and parentheses: count fields from
	 * the last ')'. utime and stime are fields 14 and 15. */
	char *p = ok ? strrchr(buf, ')') : NULL;
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double sbb_proc_cpu(pid_t pid)
{
	return stat_cpu(open_proc(pid, "stat"));
}

unsigned sbb_proc_threads(pid_t pid, pid_t *tid, unsigned max)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	unsigned n = 0;
	if (d == NULL)
		return 0;
	for (struct dirent *e; n < max && (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			tid[n++] = (pid_t)atoi(e->d_name);
	closedir(d);
	return n;
}

double sbb_proc_thread_cpu(pid_t pid, pid_t tid)
{
	char file[48];
	snprintf(file, sizeof file, "task/%d/stat", (int)tid);
	return stat_cpu(open_proc(pid, file));
}

double sbb_proc_peak_rss(pid_t pid)
{
	char line[256];
	double kib = -1;
	FILE *f = open_proc(pid, "status");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kib = atof(line + 6);
	fclose(f);
	return kib < 0 ? -1 : kib / 1024;
}
