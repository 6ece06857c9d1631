/* The admin listener's page (GET /): one self-contained HTML file,
 * core/router/admin_page.html, built into the router as a C array at build
 * time (tools/embed_file.cmake) (docs/operations.md, "Admin page"). */
#ifndef SB_ROUTER_ADMIN_PAGE_H
#define SB_ROUTER_ADMIN_PAGE_H

#include <stddef.h>

#include "router/admin_http.h"

/* The page's bytes (NUL-terminated; the NUL is not in the length). Defined
 * in the generated admin_page_html.c. */
extern const char sb__admin_page_html[];
extern const size_t sb__admin_page_html_len;

/** GET /: the page, as text/html. A row of admin_http.c's table. */
void sb__admin_page(struct sb__shard *sh, const struct sb__http_req *r, struct sb__admin_reply *a);

#endif
