/* The SMTP follower in C (track/_smtpfollow.c): track/smtp.py's SmtpFollower, for the C tracker. */
#ifndef DSRDIAG_SMTPFOLLOW_H
#define DSRDIAG_SMTPFOLLOW_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define SMTP_MAX_LINE 4096           /* decode/smtp.py MAX_LINE */
#define SMTP_MAX_CODES 64            /* track/smtp.py MAX_CODES */

typedef struct { uint8_t *p; uint32_t len, cap; } sbuf_t;

typedef struct {
    uint8_t wants, in_data, start, seen_server, st_offered, st_started, st_asked, data_asked, xc_offered;
    uint8_t has_banner, has_helo, has_xclient, has_last, tlen;
    int bad, banner_code, ncodes, ncmds;
    sbuf_t buf[2];                     /* partial lines: [0] server -> client, [1] client -> server */
    uint8_t tail[4];                   /* in DATA: the last bytes seen, for a terminator split across segments */
    sbuf_t banner, helo, xclient, last, cmds;  /* text as received (latin-1); cmds: verbs, NUL-separated */
    unsigned long long banner_frame, xc_frame;
    int64_t banner_ts, xc_ts;
    uint16_t codes[SMTP_MAX_CODES];
    PyObject *proxy;                   /* (version, client ip, client port, frame, ts) or NULL */
} smtp_t;

void smtp_init(smtp_t *s);
void smtp_free(smtp_t *s);
/* in-order bytes of one direction; -1 with a Python error set (from parse_proxy, or no memory) */
int smtp_data(smtp_t *s, int is_orig, const uint8_t *data, uint32_t len, unsigned long long frame, int64_t ts,
              PyObject *parse_proxy);
void smtp_gap(smtp_t *s, int is_orig);
/* what track/smtp.py's dialogue() takes: (banner or None, helo, codes, commands, starttls_offered,
   starttls_started, xclient_offered, xclient, xclient_at, proxy, last_reply) */
PyObject *smtp_state(const smtp_t *s);
/* a buffer's text (latin-1), or None when !has */
PyObject *smtp_text(const sbuf_t *b, int has);

#endif
