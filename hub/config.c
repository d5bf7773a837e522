/* config.c — see config.h.  The only includer of libinih's ini.h. */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "hub/cmd.h"
#include "hub/config.h"

#define FIELD(conf, o, T) ((T *)((char *)(conf) + (o)->offset))

void cfg_release(cfg_strings *own)
{
    for (size_t i = 0; i < own->n; i++)
        free(own->v[i]);
    free(own->v);
    *own = (cfg_strings){0};
}

static const char *keep(cfg_strings *own, const char *s)
{
    if (own->n == own->cap) {
        size_t cap = own->cap ? own->cap * 2 : 16;
        char **v = realloc(own->v, cap * sizeof *v);
        if (!v)
            return NULL;
        own->v = v;
        own->cap = cap;
    }
    char *d = strdup(s);
    if (d)
        own->v[own->n++] = d;
    return d;
}

/* Index of value in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *value)
{
    size_t len = strlen(value);
    int i = 0;
    for (const char *p = choices; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && !strncmp(p, value, n))
            return i;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

static void choice_name(const char *choices, int index, char *out, size_t n)
{
    const char *p = choices;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '|');
        if (p)
            p++;
    }
    if (!p) {
        snprintf(out, n, "?");
        return;
    }
    const char *bar = strchr(p, '|');
    snprintf(out, n, "%.*s", bar ? (int)(bar - p) : (int)strlen(p), p);
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i]))
            return *out = 1, 0;
        if (!strcasecmp(v, no[i]))
            return *out = 0, 0;
    }
    return -1;
}

int cfg_set(const cfg_option *o, void *conf, const char *value, cfg_strings *own, char *err, size_t errlen)
{
    char *end;
    /* An empty value unsets an option that has no default. */
    if (!o->def && !*value && o->type != CFG_FLAG) {
        if (o->type == CFG_STRING)
            *FIELD(conf, o, const char *) = NULL;
        else if (o->type == CFG_INT)
            *FIELD(conf, o, int) = -1;
        else
            goto bad;
        return 0;
    }
    switch (o->type) {
    case CFG_STRING: {
        size_t len = strlen(value);
        if (len < (size_t)o->min || (o->max > 0 && len > (size_t)o->max)) {
            if (o->max > 0)
                snprintf(err, errlen, "'%s' must be %ld to %ld characters", value, o->min, o->max);
            else
                snprintf(err, errlen, "must not be empty");
            return -1;
        }
        const char *s = own ? keep(own, value) : value;
        if (!s) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *FIELD(conf, o, const char *) = s;
        return 0;
    }
    case CFG_INT: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < o->min || v > o->max) {
            snprintf(err, errlen, "'%s' is not a whole number from %ld to %ld", value, o->min, o->max);
            return -1;
        }
        *FIELD(conf, o, int) = (int)v;
        return 0;
    }
    case CFG_PORT: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < 0 || v > 65535) {
            snprintf(err, errlen, "'%s' is not a port (0 to 65535; 0 takes any free port)", value);
            return -1;
        }
        *FIELD(conf, o, uint16_t) = (uint16_t)v;
        return 0;
    }
    case CFG_SIZE: {
        uint64_t v;
        if (parse_size(value, &v) < 0) {
            snprintf(err, errlen, "'%s' is not a size (bytes, or with K, M or G: 16G)", value);
            return -1;
        }
        if (v < (uint64_t)o->min) {
            snprintf(err, errlen, "'%s' is less than %ld bytes", value, o->min);
            return -1;
        }
        *FIELD(conf, o, uint64_t) = v;
        return 0;
    }
    case CFG_FLAG: {
        int v;
        if (parse_bool(value, &v) < 0) {
            snprintf(err, errlen, "'%s' is not true or false", value);
            return -1;
        }
        *FIELD(conf, o, int) = v;
        return 0;
    }
    case CFG_CHOICE: {
        int i = choice_index(o->choices, value);
        if (i < 0) {
            snprintf(err, errlen, "'%s' is not one of %s", value, o->choices);
            return -1;
        }
        *FIELD(conf, o, int) = i;
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "a value is required");
    return -1;
}

int cfg_defaults(const cfg_role *r, void *conf, char *err, size_t errlen)
{
    char why[256];
    for (size_t i = 0; i < r->n_opts; i++) {
        const cfg_option *o = &r->opts[i];
        /* Embedded defaults are constants: they need no copy (test_config
         * checks that every table's defaults are valid). */
        if (cfg_set(o, conf, o->def ? o->def : o->type == CFG_FLAG ? "false" : "", NULL, why, sizeof why) < 0) {
            snprintf(err, errlen, "bad embedded default for %s: %s", o->name, why);
            return -1;
        }
    }
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1 << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1 << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1 << 30, end++;
    if (end == s || *end || !(v >= 0) || v * (double)mul > 1e18)
        return -1;
    *out = (uint64_t)(v * (double)mul);
    return 0;
}

/* --- files -------------------------------------------------------------- */

typedef struct file_ctx {
    const cfg_role *r;
    void           *conf;
    cfg_strings    *own;
    FILE           *f;
    const char     *path;
    int             line, long_line;
    char           *err;
    size_t          errlen;
    int             failed;
} file_ctx;

/* libinih's reader: counts lines (the handler is told none) and refuses a
 * line longer than libinih's buffer rather than let it split silently. */
static char *read_line(char *buf, int size, void *stream)
{
    file_ctx *c = stream;
    if (!fgets(buf, size, c->f))
        return NULL;
    c->line++;
    size_t n = strlen(buf);
    if (n == (size_t)size - 1 && buf[n - 1] != '\n' && !feof(c->f)) {
        if (!c->failed) {
            snprintf(c->err, c->errlen, "%s:%d: line longer than %d characters", c->path, c->line, size - 2);
            c->failed = 1;
        }
        int ch;
        while ((ch = fgetc(c->f)) != EOF && ch != '\n')
            ;
        buf[0] = '\0';
    }
    return buf;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
    file_ctx *c = user;
    if (c->failed)
        return 1;
    const cfg_option *o = NULL;
    for (size_t i = 0; i < c->r->n_opts && !o; i++)
        if (c->r->opts[i].section && !strcmp(c->r->opts[i].name, name))
            o = &c->r->opts[i];
    char why[300];
    if (!o) {
        snprintf(why, sizeof why, "unknown key ('dxhub %s --print-config' lists them)", c->r->name);
    } else if (strcmp(o->section, section)) {
        snprintf(why, sizeof why, "belongs in section [%s]", o->section);
    } else if (cfg_set(o, c->conf, value, c->own, why, sizeof why) == 0) {
        return 1;
    }
    snprintf(c->err, c->errlen, "%s:%d: [%s] %s: %s", c->path, c->line, section, name, why);
    c->failed = 1;
    return 0;
}

int cfg_load_file(const cfg_role *r, void *conf, const char *path, cfg_strings *own, char *err, size_t errlen)
{
    file_ctx c = {.r = r, .conf = conf, .own = own, .path = path, .err = err, .errlen = errlen};
    c.f = fopen(path, "r");
    if (!c.f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(c.f), &st) == 0 && !S_ISREG(st.st_mode)) {
        fclose(c.f);
        snprintf(err, errlen, "%s: not a file", path);
        return -1;
    }
    int rc = ini_parse_stream(read_line, &c, on_pair, &c);
    int read_error = ferror(c.f);
    fclose(c.f);
    if (read_error && !c.failed) {
        snprintf(err, errlen, "%s: read error", path);
        return -1;
    }
    if (c.failed)
        return -1;
    if (rc > 0) {
        snprintf(err, errlen, "%s:%d: not 'key = value', '[section]' or a comment", path, rc);
        return -1;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot be read", path);
        return -1;
    }
    return 0;
}

/* --- output ------------------------------------------------------------- */

static int is_unset(const cfg_option *o, const void *conf)
{
    if (o->type == CFG_STRING)
        return *FIELD(conf, o, const char *const) == NULL;
    if (o->type == CFG_INT && !o->def)
        return *FIELD(conf, o, const int) < 0;
    return 0;
}

static void format_value(const cfg_option *o, const void *conf, char *out, size_t n)
{
    out[0] = '\0';
    switch (o->type) {
    case CFG_STRING: {
        const char *s = *FIELD(conf, o, const char *const);
        snprintf(out, n, "%s", s ? s : "");
        break;
    }
    case CFG_INT:
        if (!is_unset(o, conf))
            snprintf(out, n, "%d", *FIELD(conf, o, const int));
        break;
    case CFG_PORT: snprintf(out, n, "%u", (unsigned)*FIELD(conf, o, const uint16_t)); break;
    case CFG_FLAG: snprintf(out, n, "%s", *FIELD(conf, o, const int) ? "true" : "false"); break;
    case CFG_CHOICE: choice_name(o->choices, *FIELD(conf, o, const int), out, n); break;
    case CFG_SIZE: {
        uint64_t v = *FIELD(conf, o, const uint64_t);
        const char *u = "GMK";
        for (int shift = 30, i = 0; shift > 0; shift -= 10, i++)
            if (v && v % ((uint64_t)1 << shift) == 0) {
                snprintf(out, n, "%llu%c", (unsigned long long)(v >> shift), u[i]);
                return;
            }
        snprintf(out, n, "%llu", (unsigned long long)v);
        break;
    }
    }
}

void cfg_write_ini(const cfg_role *r, const void *conf, FILE *out)
{
    fprintf(out, "; dxhub %s configuration: use with 'dxhub %s --config FILE'.\n"
                 "; Command-line options override what is set here; a key left\n"
                 "; commented out takes the default its comment names.\n",
            r->name, r->name);
    const char *section = NULL;
    for (size_t i = 0; i < r->n_opts; i++) {
        const cfg_option *o = &r->opts[i];
        if (!o->section)
            continue;
        if (!section || strcmp(section, o->section)) {
            section = o->section;
            fprintf(out, "\n[%s]\n", section);
        }
        char v[1024];
        format_value(o, conf, v, sizeof v);
        fprintf(out, "; %s\n%s%s =%s%s\n", o->help, is_unset(o, conf) ? "; " : "", o->name, v[0] ? " " : "", v);
    }
}

static void option_label(const cfg_option *o, char *out, size_t n)
{
    if (o->type == CFG_FLAG)
        snprintf(out, n, "--%s", o->name);
    else
        snprintf(out, n, "--%s %s", o->name, o->arg ? o->arg : "VALUE");
}

void cfg_write_usage(const cfg_role *r, FILE *out)
{
    fputs(r->synopsis, out);
    for (size_t i = 0; i < r->n_opts; i++) {
        const cfg_option *o = &r->opts[i];
        char label[64];
        option_label(o, label, sizeof label);
        fprintf(out, "  %-24s %s", label, o->help);
        if (o->def && o->type != CFG_FLAG && *o->def)
            fprintf(out, " (default %s)", o->def);
        fputc('\n', out);
    }
    fprintf(out, "  %-24s %s\n  %-24s %s\n", "--config FILE", "read settings from an INI file; options given here override it",
            "--print-config", "print the effective settings as an INI file and exit");
}

void cfg_write_reference(const cfg_role *r, FILE *out)
{
    fprintf(out, "| section | key (and `--option`) | default | meaning |\n| --- | --- | --- | --- |\n");
    for (size_t i = 0; i < r->n_opts; i++) {
        const cfg_option *o = &r->opts[i];
        if (!o->section)
            continue;
        const char *def = o->def ? o->def : o->type == CFG_FLAG ? "false" : NULL;
        if (def && *def)
            fprintf(out, "| `[%s]` | `%s` | `%s` | %s |\n", o->section, o->name, def, o->help);
        else
            fprintf(out, "| `[%s]` | `%s` | %s | %s |\n", o->section, o->name, def ? "(empty)" : "—", o->help);
    }
}

/* --- the command line ----------------------------------------------------- */

enum { OPT_CONFIG = 1, OPT_PRINT, OPT_REFERENCE, OPT_HELP, OPT_BASE = 256 };

int cfg_parse(const cfg_role *r, void *conf, int argc, char **argv, cfg_strings *own)
{
    struct option *lo = calloc(r->n_opts + 5, sizeof *lo);
    if (!lo)
        return CFG_USAGE;
    for (size_t i = 0; i < r->n_opts; i++)
        lo[i] = (struct option){r->opts[i].name, r->opts[i].type == CFG_FLAG ? no_argument : required_argument,
                                NULL, OPT_BASE + (int)i};
    lo[r->n_opts] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    lo[r->n_opts + 1] = (struct option){"print-config", no_argument, NULL, OPT_PRINT};
    lo[r->n_opts + 2] = (struct option){"config-reference", no_argument, NULL, OPT_REFERENCE};
    lo[r->n_opts + 3] = (struct option){"help", no_argument, NULL, OPT_HELP};

    /* Pass 1: what to do, and the file; pass 2: options over the file. */
    const char *file = NULL;
    int action = 0, o, rc = CFG_RUN;
    optind = 0;
    opterr = 1;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (o == OPT_CONFIG)
            file = optarg;
        else if (o == OPT_PRINT || o == OPT_REFERENCE || o == OPT_HELP || o == 'h')
            action = action ? action : o == 'h' ? OPT_HELP : o;
        else if (o == '?') {
            fprintf(stderr, "'dxhub %s --help' lists the options\n", r->name);
            rc = CFG_USAGE;
            goto out;
        }
    }
    if (action == OPT_HELP || action == OPT_REFERENCE) {
        if (action == OPT_HELP)
            cfg_write_usage(r, stdout);
        else
            cfg_write_reference(r, stdout);
        rc = CFG_DONE;
        goto out;
    }
    if (optind < argc) {
        fprintf(stderr, "dxhub %s: unexpected argument '%s'\n", r->name, argv[optind]);
        rc = CFG_USAGE;
        goto out;
    }
    char err[1400];
    if (cfg_defaults(r, conf, err, sizeof err) < 0) {
        fprintf(stderr, "dxhub %s: %s\n", r->name, err);
        rc = CFG_USAGE;
        goto out;
    }
    if (file && cfg_load_file(r, conf, file, own, err, sizeof err) < 0) {
        fprintf(stderr, "dxhub %s: %s\n", r->name, err);
        rc = CFG_USAGE;
        goto out;
    }
    optind = 0;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (o < OPT_BASE)
            continue;
        const cfg_option *opt = &r->opts[o - OPT_BASE];
        if (cfg_set(opt, conf, opt->type == CFG_FLAG ? "true" : optarg, own, err, sizeof err) < 0) {
            fprintf(stderr, "dxhub %s: --%s: %s\n", r->name, opt->name, err);
            rc = CFG_USAGE;
            goto out;
        }
    }
    if (action == OPT_PRINT) {
        cfg_write_ini(r, conf, stdout);
        rc = CFG_DONE;
    }
out:
    free(lo);
    return rc;
}
