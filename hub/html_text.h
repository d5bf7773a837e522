/* html_text.h — text written into an HTML page as text, never markup:
 * for the report's printable page and the clinic's page.  Hub-private. */
#ifndef DXHUB_HTML_TEXT_H
#define DXHUB_HTML_TEXT_H

#include <stdbool.h>
#include <stdio.h>

/* s escaped (& < > " '), fit for element content and quoted attributes;
 * newlines become <br> when keep_newlines, else spaces. */
void html_put(FILE *f, const char *s, bool keep_newlines);
/* s percent-encoded for a URL's query value. */
void html_put_query(FILE *f, const char *s);
/* The same, malloc'd (NULL when out of memory). */
char *html_query_dup(const char *s);

#endif
