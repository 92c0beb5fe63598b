/* _smtpfollow: track/smtp.py's SmtpFollower in C, for the C tracker (track/_conntrack.c).
 *
 * Why: after the tracker went to C, following the SMTP dialogue (a Python call per in-order
 * segment until STARTTLS's 220) was the largest per-packet cost left in Python. The rules are
 * track/smtp.py's and decode/smtp.py's, byte for byte: text is latin-1 (one byte, one character),
 * `str.strip()` strips the latin-1 characters Python calls whitespace (\t \n \v \f \r \x1c-\x1f,
 * space, \x85, \xa0), verbs and reply words compare in ASCII upper case (no latin-1 letter
 * upper-cases into an ASCII one that could make STARTTLS or XCLIENT). A PROXY header is parsed by
 * Python's own decode/proxyproto.parse_proxy, called only when a client stream starts with `P` or
 * `\r` (for any other first byte it answers "not PROXY"). tests/test_native_tracker.py feeds
 * random and hostile byte streams, cut at random, to both followers and compares what they learnt.
 */
#include "_smtpfollow.h"
#include <string.h>

#define MAX_LINE SMTP_MAX_LINE     /* decode/smtp.py MAX_LINE (_smtpfollow.h) */
#define MAX_CODES SMTP_MAX_CODES   /* track/smtp.py MAX_CODES */

static int ws(uint8_t b) {   /* str.isspace() for a latin-1 character */
    return b == 0x20 || (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f) || b == 0x85 || b == 0xa0;
}

static void strip(const uint8_t **p, uint32_t *n) {
    while (*n && ws((*p)[0])) { (*p)++; (*n)--; }
    while (*n && ws((*p)[*n - 1])) (*n)--;
}

static int sb_reserve(sbuf_t *b, uint32_t n) {
    if (n <= b->cap) return 0;
    uint32_t cap = b->cap ? b->cap : 64;
    while (cap < n) cap *= 2;
    uint8_t *p = PyMem_Realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int sb_set(sbuf_t *b, const uint8_t *src, uint32_t n) {
    if (sb_reserve(b, n ? n : 1) < 0) return -1;
    if (n) memmove(b->p, src, n);
    b->len = n;
    return 0;
}

static int sb_add(sbuf_t *b, const uint8_t *src, uint32_t n) {
    if (sb_reserve(b, b->len + n + 1) < 0) return -1;
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static void sb_free(sbuf_t *b) { PyMem_Free(b->p); b->p = NULL; b->len = b->cap = 0; }

void smtp_init(smtp_t *s) {
    memset(s, 0, sizeof *s);
    s->wants = 1;
    s->start = 1;
}

void smtp_free(smtp_t *s) {
    sb_free(&s->buf[0]); sb_free(&s->buf[1]); sb_free(&s->banner); sb_free(&s->helo);
    sb_free(&s->xclient); sb_free(&s->last); sb_free(&s->cmds);
    Py_CLEAR(s->proxy);
}

static void stop(smtp_t *s) {    /* wants_data = False: nothing more is read; the partial lines go */
    s->wants = 0;
    sb_free(&s->buf[0]);
    sb_free(&s->buf[1]);
}

void smtp_gap(smtp_t *s, int is_orig) {
    s->buf[is_orig ? 1 : 0].len = 0;
}

/* _skip_message: in DATA, drop message bytes up to and including CRLF.CRLF; returns how many of
   d's bytes are consumed (n when the terminator is not there yet), -1 without memory */
static long skip_message(smtp_t *s, const uint8_t *d, uint32_t n) {
    uint32_t plen = s->tlen + n;
    uint8_t *probe = PyMem_Malloc(plen ? plen : 1);
    if (!probe) { PyErr_NoMemory(); return -1; }
    memcpy(probe, s->tail, s->tlen);
    if (n) memcpy(probe + s->tlen, d, n);
    long end = -1;
    for (uint32_t i = 0; i + 5 <= plen; i++)
        if (probe[i] == '\r' && memcmp(probe + i, "\r\n.\r\n", 5) == 0) { end = (long)i; break; }
    long consumed;
    if (end < 0) {
        uint32_t k = plen < 4 ? plen : 4;
        memmove(s->tail, probe + plen - k, k);
        s->tlen = (uint8_t)k;
        consumed = (long)n;
    } else {
        consumed = end + 5 - s->tlen;   /* > 0: the terminator ends inside d */
        s->in_data = 0;
        s->tlen = 0;
    }
    PyMem_Free(probe);
    return consumed;
}

static int word_is(const uint8_t *w, uint32_t n, const char *up) {
    size_t k = strlen(up);
    if (n != k) return 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = w[i];
        if (c >= 'a' && c <= 'z') c -= 32;
        if (c != (uint8_t)up[i]) return 0;
    }
    return 1;
}

/* _command with decode/smtp.parse_command */
static int command(smtp_t *s, const uint8_t *line, uint32_t n, unsigned long long frame, int64_t ts) {
    s->start = 0;
    strip(&line, &n);
    if (!n) return 0;
    uint32_t vl = 0;
    while (vl < n && line[vl] != ' ') vl++;
    const uint8_t *arg = vl < n ? line + vl + 1 : line + n;
    uint32_t al = vl < n ? n - vl - 1 : 0;
    if (vl > 16) return 0;
    int letters = 0;
    for (uint32_t i = 0; i < vl; i++) {
        uint8_t c = line[i];
        if (c == '-') continue;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return 0;   /* isascii() and isalpha() */
        letters++;
    }
    if (!letters) return 0;
    char verb[17];
    for (uint32_t i = 0; i < vl; i++) verb[i] = (char)(line[i] >= 'a' && line[i] <= 'z' ? line[i] - 32 : line[i]);
    verb[vl] = 0;
    strip(&arg, &al);
    if (s->ncmds < MAX_CODES) {
        if (sb_add(&s->cmds, (const uint8_t *)verb, vl + 1) < 0) return -1;   /* with its NUL */
        s->ncmds++;
    }
    if ((!strcmp(verb, "EHLO") || !strcmp(verb, "HELO")) && !s->has_helo) {
        if (sb_set(&s->helo, arg, al < 255 ? al : 255) < 0) return -1;
        s->has_helo = 1;
    } else if (!strcmp(verb, "STARTTLS")) {
        s->st_asked = 1;
    } else if (!strcmp(verb, "XCLIENT") && !s->has_xclient) {
        if (sb_set(&s->xclient, arg, al < 512 ? al : 512) < 0) return -1;
        s->has_xclient = 1;
        s->xc_frame = frame;
        s->xc_ts = ts;
    } else if (!strcmp(verb, "DATA")) {
        s->data_asked = 1;
    }
    return 0;
}

/* _reply with decode/smtp.parse_reply */
static int reply(smtp_t *s, const uint8_t *line, uint32_t n, unsigned long long frame, int64_t ts) {
    if (n < 3 || line[0] < '0' || line[0] > '9' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9') return 0;
    if (n > 3 && line[3] != ' ' && line[3] != '-') return 0;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code < 200 || code > 599) return 0;
    int cont = n > 3 && line[3] == '-';
    const uint8_t *text = n > 4 ? line + 4 : line + n;
    uint32_t tl = n > 4 ? n - 4 : 0;
    strip(&text, &tl);
    if (!s->seen_server) {
        s->seen_server = 1;
        if (sb_set(&s->banner, text, tl) < 0) return -1;
        s->has_banner = 1;
        s->banner_code = code;
        s->banner_frame = frame;
        s->banner_ts = ts;
    }
    uint32_t wl = 0;
    while (wl < tl && text[wl] != ' ') wl++;
    if (word_is(text, wl, "STARTTLS")) s->st_offered = 1;
    else if (word_is(text, wl, "XCLIENT")) s->xc_offered = 1;
    if (cont) return 0;
    if (s->ncodes < MAX_CODES) s->codes[s->ncodes++] = (uint16_t)code;
    char head[5];
    snprintf(head, sizeof head, "%d ", code);
    uint32_t keep = tl < 196 ? tl : 196;      /* f"{code} {text}"[:200] */
    if (sb_set(&s->last, (const uint8_t *)head, 4) < 0 || sb_add(&s->last, text, keep) < 0) return -1;
    s->has_last = 1;
    if (s->data_asked) {
        s->data_asked = 0;
        if (code == 354) {
            s->in_data = 1;
            memcpy(s->tail, "\r\n", 2);   /* the DATA line's CRLF: an empty message is just ".\r\n" */
            s->tlen = 2;
        }
    }
    if (s->st_asked) {
        s->st_asked = 0;
        if (code == 220) {
            s->st_started = 1;
            stop(s);                      /* TLS from here on */
        }
    }
    return 0;
}

/* _proxy_header: 1 go on with pending[*skip:], 0 wait for more, -1 error */
static int proxy_header(smtp_t *s, const uint8_t *pending, uint32_t n, unsigned long long frame, int64_t ts,
                        PyObject *parse_proxy, uint32_t *skip) {
    *skip = 0;
    if (n && pending[0] != 'P' && pending[0] != '\r') return 1;   /* parse_proxy says None for these */
    PyObject *r = PyObject_CallFunction(parse_proxy, "y#", (const char *)pending, (Py_ssize_t)n);
    if (!r) return -1;
    if (PyUnicode_Check(r)) {                                      /* NEED_MORE */
        Py_DECREF(r);
        return 0;
    }
    if (r != Py_None) {
        PyObject *version, *src, *sport, *hlen;
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 6) { Py_DECREF(r); PyErr_SetString(PyExc_ValueError, "parse_proxy"); return -1; }
        version = PyTuple_GET_ITEM(r, 0); src = PyTuple_GET_ITEM(r, 1); sport = PyTuple_GET_ITEM(r, 2); hlen = PyTuple_GET_ITEM(r, 5);
        Py_ssize_t h = PyLong_AsSsize_t(hlen);
        if (h < 0 && PyErr_Occurred()) { Py_DECREF(r); return -1; }
        Py_XSETREF(s->proxy, Py_BuildValue("(OOOKL)", version, src, sport, frame, (long long)ts));
        Py_DECREF(r);
        if (!s->proxy) return -1;
        *skip = (uint32_t)(h < (Py_ssize_t)n ? h : (Py_ssize_t)n);
        return 1;
    }
    Py_DECREF(r);
    return 1;
}

int smtp_data(smtp_t *s, int is_orig, const uint8_t *data, uint32_t len, unsigned long long frame, int64_t ts,
              PyObject *parse_proxy) {
    if (!s->wants) return 0;
    int idx = is_orig ? 1 : 0;
    sbuf_t *b = &s->buf[idx];
    const uint8_t *d = data;
    uint32_t n = len;
    if (is_orig) {
        if (s->start) {
            /* pending = buf[1] + data, kept in buf[1] while the header is incomplete */
            if (sb_add(b, d, n) < 0) return -1;
            uint32_t skip;
            int r = proxy_header(s, b->p, b->len, frame, ts, parse_proxy, &skip);
            if (r <= 0) return r;
            s->start = 0;
            memmove(b->p, b->p + skip, b->len - skip);   /* buf = b"" + pending[hlen:] */
            b->len -= skip;
            if (s->in_data) {
                long c = skip_message(s, b->p, b->len);
                if (c < 0) return -1;
                memmove(b->p, b->p + c, b->len - (uint32_t)c);
                b->len -= (uint32_t)c;
                if (!b->len) return 0;
            }
            d = NULL;
            n = 0;
        } else if (s->in_data) {
            long c = skip_message(s, d, n);
            if (c < 0) return -1;
            d += c;
            n -= (uint32_t)c;
            if (!n) return 0;
        }
    }
    if (n && sb_add(b, d, n) < 0) return -1;
    uint32_t pos = 0;
    for (;;) {
        uint8_t *nl = b->len > pos ? memchr(b->p + pos, '\n', b->len - pos) : NULL;
        if (!nl) break;
        uint32_t end = (uint32_t)(nl - b->p), ll = end - pos;
        while (ll && b->p[pos + ll - 1] == '\r') ll--;     /* rstrip(b"\r") */
        uint32_t line = pos;
        pos = end + 1;
        int rc;
        if (is_orig) {
            rc = command(s, b->p + line, ll, frame, ts);
            if (rc == 0 && s->in_data) {
                long c = skip_message(s, b->p + pos, b->len - pos);
                if (c < 0) return -1;
                pos += (uint32_t)c;
            }
        } else {
            rc = reply(s, b->p + line, ll, frame, ts);
        }
        if (rc < 0) return -1;
        if (!s->wants) return 0;                          /* (the buffers are gone) */
    }
    uint32_t rest = b->len - pos;
    if (rest > MAX_LINE) {
        s->bad++;
        rest = 0;
        pos = b->len;
        if (s->bad > 3) { stop(s); return 0; }            /* not SMTP */
    }
    memmove(b->p, b->p + pos, rest);
    b->len = rest;
    return 0;
}

PyObject *smtp_text(const sbuf_t *b, int has) {
    if (!has) Py_RETURN_NONE;
    return PyUnicode_DecodeLatin1((const char *)b->p, b->len, NULL);
}

PyObject *smtp_state(const smtp_t *s) {
    PyObject *banner = s->has_banner
        ? Py_BuildValue("(iNKL)", s->banner_code, smtp_text(&s->banner, 1), s->banner_frame, (long long)s->banner_ts)
        : (Py_INCREF(Py_None), Py_None);
    PyObject *codes = PyTuple_New(s->ncodes);
    PyObject *cmds = PyTuple_New(s->ncmds);
    if (!banner || !codes || !cmds) { Py_XDECREF(banner); Py_XDECREF(codes); Py_XDECREF(cmds); return NULL; }
    for (int i = 0; i < s->ncodes; i++) PyTuple_SET_ITEM(codes, i, PyLong_FromLong(s->codes[i]));
    const char *v = (const char *)s->cmds.p;
    for (int i = 0; i < s->ncmds; i++) {
        PyObject *u = PyUnicode_InternFromString(v);
        if (!u) { Py_DECREF(banner); Py_DECREF(codes); Py_DECREF(cmds); return NULL; }
        PyTuple_SET_ITEM(cmds, i, u);
        v += strlen(v) + 1;
    }
    PyObject *xc_at = s->has_xclient ? Py_BuildValue("(KL)", s->xc_frame, (long long)s->xc_ts) : (Py_INCREF(Py_None), Py_None);
    return Py_BuildValue("(NNNNOOONNON)", banner, smtp_text(&s->helo, s->has_helo), codes, cmds,
                         s->st_offered ? Py_True : Py_False, s->st_started ? Py_True : Py_False,
                         s->xc_offered ? Py_True : Py_False, smtp_text(&s->xclient, s->has_xclient), xc_at,
                         s->proxy ? s->proxy : Py_None, smtp_text(&s->last, s->has_last));
}
