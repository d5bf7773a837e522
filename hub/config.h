/* config.h — a role's options as one table (hub-private; the command
 * table's roles use it).  Each row is one setting: its INI section, its
 * name (the INI key and the long option are the same word), its type, the
 * field it fills, its embedded default and its help.  The same table drives
 * getopt_long, the INI file (libinih), the defaults, `--help`,
 * `--print-config` and the README's configuration reference, so they
 * cannot drift apart (Redis's config.c idea).
 *
 * Precedence: embedded defaults < `--config FILE` < command-line options.
 *
 * A role adopts it with a struct of its settings, a table of rows
 * (CFG_ROW helps) and one call:
 *
 *     cfg_strings own = {0};
 *     int rc = cfg_parse(&role, &conf, argc, argv, &own);
 *     if (rc != CFG_RUN) return rc == CFG_DONE ? 0 : 2;
 *     ... run ...
 *     cfg_release(&own);
 */
#ifndef DXHUB_CONFIG_H
#define DXHUB_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cfg_type {
    CFG_STRING, /* const char *; at least min characters, at most max when max > 0 */
    CFG_INT,    /* int in [min, max] */
    CFG_PORT,   /* uint16_t, 0 = any free port */
    CFG_SIZE,   /* uint64_t bytes; "16G", "512M", "100K" in files and options; at least min */
    CFG_FLAG,   /* int 0/1: an option without argument; true/false in files */
    CFG_CHOICE, /* int: index of the value in choices ("error|warn|info|debug") */
} cfg_type;

typedef struct cfg_option {
    const char *section; /* INI section; NULL: command line only (an action, e.g. --status) */
    const char *name;    /* INI key and long option */
    cfg_type    type;
    size_t      offset;  /* of the field in the role's settings struct */
    const char *def;     /* embedded default, written as in a file; NULL: unset
                          * (strings NULL, integers -1; help says what applies) */
    long        min, max;
    const char *choices; /* CFG_CHOICE: values separated by '|' */
    const char *arg;     /* placeholder in --help: DIR, N, AET */
    const char *help;
} cfg_option;

typedef struct cfg_role {
    const char       *name;     /* "serve": messages say "dxhub serve: ..." */
    const char       *synopsis; /* --help's first lines */
    const cfg_option *opts;
    size_t            n_opts;
} cfg_role;

/* Strings read from a file live here until cfg_release. */
typedef struct cfg_strings {
    char  **v;
    size_t  n, cap;
} cfg_strings;
void cfg_release(cfg_strings *own);

enum { CFG_RUN = 0, CFG_DONE = 1, CFG_USAGE = 2 };

/* Defaults, then --config FILE, then the command line into conf.  Prints
 * --help or --print-config on stdout (CFG_DONE), or one line naming the
 * file, line, key and reason (or the option) on stderr (CFG_USAGE).
 * Positional arguments are refused. */
int cfg_parse(const cfg_role *r, void *conf, int argc, char **argv, cfg_strings *own);

/* The pieces, for tests and for roles with more to do. */
/* 0, or -1 naming the row whose embedded default is bad (a bug). */
int  cfg_defaults(const cfg_role *r, void *conf, char *err, size_t errlen);
/* 0, or -1 with "FILE:LINE: [section] key: why" in err. */
int  cfg_load_file(const cfg_role *r, void *conf, const char *path, cfg_strings *own, char *err, size_t errlen);
/* Sets one option from text; 0, or -1 with the reason in err. */
int  cfg_set(const cfg_option *o, void *conf, const char *value, cfg_strings *own, char *err, size_t errlen);
/* The settings as an INI file that cfg_load_file reads back to the same. */
void cfg_write_ini(const cfg_role *r, const void *conf, FILE *out);
void cfg_write_usage(const cfg_role *r, FILE *out);
/* A Markdown table of every setting (the README's reference). */
void cfg_write_reference(const cfg_role *r, FILE *out);

#endif
