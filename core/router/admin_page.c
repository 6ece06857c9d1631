/* GET / on the admin listener: the page. It shows names peers chose, and
 * writes them as text only; its own Content-Security-Policy (a <meta> in
 * its head) is the second line: no script, style, image or connection
 * from anywhere but the page itself and this listener. */
#include "router/admin_page.h"

void sb__admin_page(struct sb__shard *sh, const struct sb__http_req *r, struct sb__admin_reply *a)
{
	(void)sh;
	(void)r;
	a->content_type = "text/html; charset=utf-8";
	sb__admin_put(&a->body, sb__admin_page_html, sb__admin_page_html_len);
}
