/* A plain HTTP/1.1 client for the tests, over a real socket: one request,
 * or several on one kept-alive connection, the answer read whole (by its
 * Content-Length) within a deadline. Bodies are text (NUL-terminated). */
#ifndef SB_TEST_HTTP_H
#define SB_TEST_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct http_answer {
	int status;      /* 0: no answer within the deadline, or the connection failed */
	char head[4096]; /* the status line and fields, NUL-terminated */
	char *body;      /* malloc'd, NUL-terminated; free with http_answer_free */
	size_t body_len; /* Content-Length bytes */
	int closed;      /* the connection ended before the whole answer came */
};

/* A connection to @p addr:@p port (NULL: 127.0.0.1): its fd, or -1. */
int http_dial(const char *addr, uint16_t port);

/* Sends "METHOD PATH HTTP/1.1" with Host and @p extra header lines
 * ("Name: value\r\n" each, or NULL; when they start with a Host line, it
 * replaces "Host: 127.0.0.1"), then reads one answer (10 s at most). */
void http_ask(int fd, const char *method, const char *path, const char *extra,
	      struct http_answer *a);

/* 1 once the router closes @p fd (what it still sends is dropped), 0 if
 * it is still open after @p ms. */
int http_closed_within(int fd, int ms);

/* http_dial, one request with Connection: close, and the close. */
void http_get(uint16_t port, const char *path, struct http_answer *a);

/* The value of field @p name in the answer's head ("" if absent). */
const char *http_field(const struct http_answer *a, const char *name, char *buf, size_t cap);

void http_answer_free(struct http_answer *a);

#endif
