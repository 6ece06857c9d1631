/* Peers in processes of their own: the test program run again as
 * `PROGRAM child ROLE PORT NAME ARG`, started with fork + exec so no child
 * inherits a half-copied multithreaded process, and killed with SIGKILL when
 * the test wants a peer to die. Each is a client library peer:
 *
 *   hold       a service of NAME that keeps every call and never answers;
 *              reports calls, cancels
 *   echo       a service of NAME that answers every call with its payload;
 *              reports calls
 *   stream     a service of NAME that answers each request with an endless
 *              stream of chunks of ARG bytes, as fast as flow control allows;
 *              reports bytes the library accepted, times it said
 *              SB_EOVERLOADED, cancels
 *   streamreq  a client that requests ARG streams of NAME; reports chunks
 *
 * A child says "ready" on its stdout once online, then "n A B C" whenever
 * what it reports changes. */
#ifndef SB_TEST_CHILD_H
#define SB_TEST_CHILD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct child {
	pid_t pid;
	int out;        /* read end of its stdout */
	char buf[4096]; /* a partial line */
	size_t have;
	int ready;
	long v[3]; /* the last "n" line */
};

/* Runs the child whose command line this is; main() calls it first when
 * argv[1] is "child", and returns what it returns. */
int child_main(int argc, char **argv);

struct child *child_start(const char *role, uint16_t port, const char *name, long arg);
void child_read(struct child *ch); /* what it has said so far */
void child_kill(struct child *ch); /* SIGKILL, reaped, freed; NULL is fine */

/* A streamed chunk carries its number: a bin 32 whose first 4 bytes are
 * the number, big-endian. */
void put_chunk(uint8_t *b, size_t len, uint32_t seq);
uint32_t chunk_seq(const void *payload, size_t len); /* UINT32_MAX: not a chunk */

#endif
