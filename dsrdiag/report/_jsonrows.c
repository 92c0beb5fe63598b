/* The C peers of report/jsondoc.py's connection list items: items(), of a block of lone SYNs
(_lone_items_py), and connection(), of one ordinary record (orjson.dumps(_conn(c, b)); see its own
comment below, before CONN_FIELDS).

items():

Why in C: a SYN flood's connection list is millions of items; jsondoc.lone_items already encodes
what a group of rows shares once (its six template pieces) and a client address once per pair, so
what is left per row is its numbers (uid, times, client port, TTL) and the gluing. In Python that is
~5 us a row; here ~0.2 us (about half of it the epoch's shortest decimal; the output's own pages
are the floor for a large block).

Exactness: the bytes are b",".join(_lone_items_py(...)) for the same arguments (the specification;
tests/test_lone_kernels.py compares them). The ISO time is strftime of the UTC second (cached per
second) and the nanoseconds cut to microseconds when they end in 000, as core/evidence.format_ts
does. ts_epoch is what orjson.dumps(float(f"{sec}.{ns:09d}")) writes, i.e. Python's repr of that
double (repr and orjson agree for 1.0 <= x < 1e16): made and written in integers where that is plain
(epoch_exact, below: >99% of times), else by PyOS_string_to_double of that exact decimal text
(Python's float()) and PyOS_double_to_string 'r' (Python's repr). Where this writer would not
give orjson's bytes, it gives None for the whole block and the caller runs the Python loop: a second
<= 0 (before 1970-01-01T00:00:01, x < 1.0), a year outside 1..9999, x outside [1, 1e16), a row whose
last_ts_ns differs from its first_ts_ns (duration: Python's round() of a double, left to Python).

items_text(): the same bytes without ips and row_pair: each row's client address is written from
the row (track/_ntop.h, the text lone.Digest.pair_ips holds), so the JSON list needs only the
digest's groups (a spoofed flood's pairs are as many as its rows: their table and a Python text per
client cost more than writing each row's address, ~40 ns). A row whose address length is neither
4 nor 16 (no tracker makes one) is declined.

Ranges: both take an optional row range (start, stop) and write those rows' part of the block's
list (a comma before each row but the block's first): report/jsondoc.py writes a block in pieces of
a few hundred rows, so that each piece's buffers (the output, ~190 KB; a row's epoch and address
texts) are of a size malloc hands out again from memory already touched and the caches hold; a
16k-row block at once was 12 MB of fresh pages, each faulted in and cleared by the kernel, then
given back, for every block. Whether a range is declined depends on its own rows only.

Checks: a buffer that is not whole 104-byte rows is a ValueError; a range that is not one of the
block's rows, a row's group or pair index outside templates or ips, or row_group/row_pair shorter
than the range's end, an IndexError (raised before
anything else is looked at: a caller's bug, not a row this writer declines); templates that are not
6 bytes objects, head not 2, ips neither bytes nor str (an address's text, written as its UTF-8):
TypeError/ValueError. Every loop is bounded by the row
count or a piece's length. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "../track/_ntop.h"
#include "../track/_lonerow.h"

#define NS 1000000000LL


/* ts_epoch: Python's repr of the double nearest to first_ns / 10^9 (what orjson writes too, for
   1 <= x < 1e16), written to out (at least 40 bytes); its length, 0 where this writer declines (x
   outside [1, 1e16)), -1 on error (exception set).

   The exact path, for every time from 1 s on (int64 ns end before 2^34 s; a compiler with 128-bit integers):
   the double is m / 2^k with m the correctly rounded (to nearest, ties to even) 53-bit quotient of
   first_ns * 2^k / 10^9, in integers; its repr is the shortest decimal strictly inside its rounding
   interval (m +- 1/2) / 2^k, the one nearest to x where two are that short. A decimal of at most 9
   fractional digits is a whole number of nanoseconds, so that search runs over multiples of
   10^(9-d) ns, d = 0..9 (d = 9 always succeeds: first_ns itself is inside). Whatever is not plain
   (a candidate on the interval's edge, two candidates equally near, m at a power of two where the
   interval is lopsided) takes the general path: PyOS_string_to_double of the decimal text (Python's
   float()), PyOS_double_to_string 'r' (Python's repr). tests/test_lone_kernels.py compares both
   paths with orjson on random and edge times. */
#define NS_U 1000000000ULL
static const uint64_t POW10[10] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
                                   100000000ULL, 1000000000ULL};

static const uint64_t POW10_20[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL, 1000000000ULL,
    10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
    1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL, 1000000000000000000ULL,
    10000000000000000000ULL,
};

/* The decimal digit count of v */
static size_t digits(uint64_t v) {
    size_t n = 1;
    while (n < 20 && v >= POW10_20[n]) n++;
    return n;
}

static size_t put_u64(char *o, uint64_t v);

#if defined(__SIZEOF_INT128__)
typedef unsigned __int128 u128;
static int epoch_exact(uint64_t first, char *out) {
    uint64_t sec = first / NS_U;
    if (sec < 1 || sec >= (1ULL << 34)) return 0; /* (int64 ns: always below 2^34 s) */
    int L = 0; /* 2^L <= sec < 2^(L+1), so 2^L <= x < 2^(L+1): a binary search of sec's top bit */
    for (int step = 32; step; step /= 2)
        if (sec >> (L + step)) L += step;
    int k = 52 - L;
    u128 M = (u128)first << k;
    uint64_t m = (uint64_t)(M / NS_U), r = (uint64_t)(M % NS_U);
    if (2 * r > NS_U || (2 * r == NS_U && (m & 1))) m++; /* (a tie cannot happen for k > 9: kept general) */
    if (m <= (1ULL << 52) || m >= (1ULL << 53)) return 0; /* at a power of two: the general path */
    int s = k + 1;                                          /* x * 1e9 = X / 2^s */
    u128 X = (u128)(2 * m) * NS_U, lo = X - NS_U, hi = X + NS_U;
    uint64_t xn = (uint64_t)(X >> s); /* floor(x * 1e9) */
    uint64_t rem[10];                 /* rem[j] = xn mod 10^j, from xn's last nine digits */
    uint64_t f9 = xn % NS_U;
    rem[0] = 0;
    for (int j = 1; j <= 9; j++) {
        rem[j] = rem[j - 1] + (f9 % 10) * POW10[j - 1];
        f9 /= 10;
    }
    uint64_t wn = (uint64_t)(NS_U >> s) + 1; /* >= the interval's half-width in ns */
    for (int d = 0; d <= 9; d++) {
        uint64_t u = POW10[9 - d], rr = rem[9 - d], a = xn - rr, b = a + u;
        if (rr > wn && u - rr > wn + 1) continue; /* neither a nor b is near enough: no 128-bit test */
        u128 A = (u128)a << s, B = (u128)b << s;
        if (A == lo || A == hi || B == lo || B == hi) return 0; /* (cannot happen, s > 9: 2^s does not divide
                                                                    an edge, odd x 10^9; kept as a guard) */
        int ina = A > lo && A < hi, inb = B > lo && B < hi;
        if (!ina && !inb) continue;
        uint64_t c;
        if (ina && inb) {
            u128 da = X - A, db = B - X;
            if (da == db) return 0;
            c = da < db ? a : b;
        } else c = ina ? a : b;
        size_t n = put_u64(out, c / NS_U);
        out[n++] = '.';
        if (d == 0) out[n++] = '0';
        else {
            uint64_t f = (c % NS_U) / u;
            for (int j = d - 1; j >= 0; j--) { out[n + (size_t)j] = (char)('0' + f % 10); f /= 10; }
            n += (size_t)d;
        }
        return (int)n;
    }
    return 0;
}
#else
static int epoch_exact(uint64_t first, char *out) { (void)first; (void)out; return 0; }
#endif

static int epoch_general(int64_t first, char *out) {
    char txt[48];
    int64_t sec = first / NS, ns = first % NS;
    if (ns < 0) { sec -= 1; ns += NS; }
    int tn = snprintf(txt, sizeof txt, "%lld.%09lld", (long long)sec, (long long)ns);
    if (tn <= 0 || (size_t)tn >= sizeof txt) return 0;
    double x = PyOS_string_to_double(txt, NULL, NULL);
    if (x == -1.0 && PyErr_Occurred()) return -1;
    if (!(x >= 1.0 && x < 1e16)) return 0;
    char *rep = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!rep) return -1;
    size_t rn = strlen(rep);
    if (rn >= 40) { PyMem_Free(rep); return 0; }
    memcpy(out, rep, rn);
    PyMem_Free(rep);
    return (int)rn;
}

static int epoch(int64_t first, char *out) {
    if (first >= NS) {
        int n = epoch_exact((uint64_t)first, out);
        if (n) return n;
    }
    return epoch_general(first, out);
}

typedef struct {
    const char *p;
    Py_ssize_t n;
} piece;

/* A bytes object's piece, or -1 with TypeError */
static int as_piece(PyObject *o, piece *out, const char *what) {
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    out->p = PyBytes_AS_STRING(o);
    out->n = PyBytes_GET_SIZE(o);
    return 0;
}

/* An ip's piece: bytes, or a str as its UTF-8 (an address's text, lone.Digest.pair_ips: ASCII, whose
   UTF-8 is the str's own storage, no copy; the reference writes x.encode()), or -1 with TypeError */
static int as_text_piece(PyObject *o, piece *out, const char *what) {
    if (PyUnicode_Check(o)) {
        const char *p = PyUnicode_AsUTF8AndSize(o, &out->n);
        if (!p) return -1;
        out->p = p;
        return 0;
    }
    return as_piece(o, out, what);
}

/* Decimal digits of v at o; their count (two digits a step, from the right) */
static const char DIGIT_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static size_t put_u64(char *o, uint64_t v) {
    size_t n = digits(v), i = n;
    while (v >= 100 && i >= 2) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        o[--i] = DIGIT_PAIRS[2 * r + 1];
        o[--i] = DIGIT_PAIRS[2 * r];
    }
    if (v >= 10 && i >= 2) {
        o[--i] = DIGIT_PAIRS[2 * v + 1];
        o[--i] = DIGIT_PAIRS[2 * v];
    } else if (i >= 1) o[--i] = (char)('0' + v);
    return n;
}

#define PUT(o, s, len) do { memcpy((o), (s), (size_t)(len)); (o) += (len); } while (0)
#define LIT(o, s) PUT(o, s, sizeof(s) - 1)

#define ITEM_EPOCH "Z\",\"ts_epoch\":"
#define ITEM_DURATION ",\"duration\":0.0"
#define EPS 40 /* room for one ts_epoch text (repr of a double < 1e16: at most 17 digits and a dot) */


/* items() and items_text(): ips and row_pair NULL (items_text) is each row's client address
   written from the row itself (track/_ntop.h: the text the digest's pair_ips holds). Rows start..stop-1
   of the block only (stop -1: to the end): their part of the block's list, a comma before each row but
   the block's first, so that the parts of consecutive ranges, concatenated, are the whole list. */
static PyObject *items_core(PyObject *data, PyObject *head, PyObject *templates, PyObject *ips, PyObject *row_group,
                            PyObject *row_pair, Py_ssize_t start, Py_ssize_t stop) {
    Py_buffer b, bg, bp;
    int have_b = 0, have_g = 0, have_p = 0;
    char *txt = NULL;    /* items_text: each row's address text, NTOP_MAX bytes a row */
    uint8_t *txn = NULL; /* and its length */
    PyObject *fhead = NULL, *ftpl = NULL, *fips = NULL, *out = NULL;
    PyObject **ftpls = NULL; /* each template's PySequence_Fast */
    Py_ssize_t ntpl = 0, nfilled = 0;
    piece *tp = NULL, *ip = NULL, h[2];
    size_t *tlen = NULL;
    char *eps = NULL;   /* each row's ts_epoch text, EPS bytes a row */
    uint8_t *epn = NULL; /* and its length */
    if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0) goto fail;
    have_b = 1;
    if (PyObject_GetBuffer(row_group, &bg, PyBUF_SIMPLE) < 0) goto fail;
    have_g = 1;
    if (row_pair) {
        if (PyObject_GetBuffer(row_pair, &bp, PyBUF_SIMPLE) < 0) goto fail;
        have_p = 1;
    }
    if (b.len % ROW) {
        PyErr_Format(PyExc_ValueError, "rows: length %zd is not a multiple of %d", b.len, ROW);
        goto fail;
    }
    if (bg.len % 4 || (have_p && bp.len % 4)) {
        PyErr_SetString(PyExc_ValueError, "row_group and row_pair must be buffers of uint32");
        goto fail;
    }
    Py_ssize_t nrows = b.len / ROW;
    if (stop < 0) stop = nrows;
    if (start < 0 || start > stop || stop > nrows) {
        PyErr_Format(PyExc_IndexError, "rows %zd..%zd: not a range of the block's %zd rows", start, stop, nrows);
        goto fail;
    }
    Py_ssize_t n = stop - start; /* the rows written: start + 0 .. start + n - 1 */
    if (bg.len / 4 < stop || (have_p && bp.len / 4 < stop)) {
        PyErr_SetString(PyExc_IndexError, "row_group or row_pair has fewer entries than there are rows");
        goto fail;
    }
    if (!(fhead = PySequence_Fast(head, "head must be a sequence"))) goto fail;
    if (PySequence_Fast_GET_SIZE(fhead) != 2) {
        PyErr_SetString(PyExc_ValueError, "head must have 2 pieces");
        goto fail;
    }
    if (as_piece(PySequence_Fast_GET_ITEM(fhead, 0), &h[0], "head") < 0
            || as_piece(PySequence_Fast_GET_ITEM(fhead, 1), &h[1], "head") < 0)
        goto fail;
    if (!(ftpl = PySequence_Fast(templates, "templates must be a sequence"))) goto fail;
    ntpl = PySequence_Fast_GET_SIZE(ftpl);
    ftpls = PyMem_Calloc((size_t)(ntpl ? ntpl : 1), sizeof *ftpls);
    tp = PyMem_Malloc((size_t)(ntpl ? ntpl : 1) * 6 * sizeof *tp);
    if (!ftpls || !tp) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t g = 0; g < ntpl; g++) {
        PyObject *t = PySequence_Fast(PySequence_Fast_GET_ITEM(ftpl, g), "a template must be a sequence");
        if (!t) goto fail;
        ftpls[g] = t;
        nfilled = g + 1;
        if (PySequence_Fast_GET_SIZE(t) != 6) {
            PyErr_SetString(PyExc_ValueError, "a template must have 6 pieces");
            goto fail;
        }
        for (int k = 0; k < 6; k++)
            if (as_piece(PySequence_Fast_GET_ITEM(t, k), &tp[g * 6 + k], "a template piece") < 0) goto fail;
    }
    tlen = PyMem_Malloc((size_t)(ntpl ? ntpl : 1) * sizeof *tlen);
    eps = PyMem_Malloc((size_t)(n ? n : 1) * EPS);
    epn = PyMem_Malloc((size_t)(n ? n : 1));
    if (!tlen || !eps || !epn) { PyErr_NoMemory(); goto fail; }
    Py_ssize_t nips = 0;
    if (ips) {
        if (!(fips = PySequence_Fast(ips, "ips must be a sequence"))) goto fail;
        nips = PySequence_Fast_GET_SIZE(fips);
        ip = PyMem_Malloc((size_t)(nips ? nips : 1) * sizeof *ip);
        if (!ip) { PyErr_NoMemory(); goto fail; }
        for (Py_ssize_t k = 0; k < nips; k++)
            if (as_text_piece(PySequence_Fast_GET_ITEM(fips, k), &ip[k], "an ip") < 0) goto fail;
    } else {
        txt = PyMem_Malloc((size_t)(n ? n : 1) * NTOP_MAX);
        txn = PyMem_Malloc((size_t)(n ? n : 1));
        if (!txt || !txn) { PyErr_NoMemory(); goto fail; }
    }

    /* Pass 1: indexes in range (IndexError, whichever row), rows this writer formats (else None),
       each row's ts_epoch text (kept: pass 2 copies it), the exact size (an exact allocation: the
       caller frees blocks of about one size, which malloc then reuses without new pages). */
    const uint8_t *rows = b.buf;
    const char *gbuf = bg.buf, *pbuf = have_p ? bp.buf : NULL;
    size_t size = 0;
    int decline = 0;
    for (Py_ssize_t g = 0; g < ntpl; g++) {
        size_t tl = 0;
        for (int k = 0; k < 6; k++) tl += (size_t)tp[g * 6 + k].n;
        tlen[g] = tl;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = start + j; /* the row's index in the block; j in this range's buffers */
        uint32_t g, p = 0;
        memcpy(&g, gbuf + 4 * i, 4);
        if (pbuf) memcpy(&p, pbuf + 4 * i, 4);
        if ((uint64_t)g >= (uint64_t)ntpl) {
            PyErr_Format(PyExc_IndexError, "row %zd: group %u has no template (%zd)", i, (unsigned)g, ntpl);
            goto fail;
        }
        if (pbuf && (uint64_t)p >= (uint64_t)nips) {
            PyErr_Format(PyExc_IndexError, "row %zd: pair %u has no ip (%zd)", i, (unsigned)p, nips);
            goto fail;
        }
        if (decline) continue;
        const uint8_t *r = rows + (size_t)i * ROW;
        size_t an;
        if (pbuf) an = (size_t)ip[p].n;
        else { /* the row's address: 4 or 16 bytes, else a row no tracker makes (Python's, then) */
            unsigned alen = r[OFF_ALEN];
            an = ntop_text(r + OFF_CI, alen, txt + (size_t)j * NTOP_MAX);
            if (!an || (alen != 4 && alen != 16)) { decline = 1; continue; }
            txn[j] = (uint8_t)an;
        }
        int64_t first = ld_i64(r + OFF_FIRST), last = ld_i64(r + OFF_LAST);
        /* a second <= 0, a year past 9999 (10000-01-01 is second 253402300800), a duration: Python's */
        if (first < NS || first / NS >= 253402300800LL || last != first) { decline = 1; continue; }
        int en = epoch(first, eps + (size_t)j * EPS);
        if (en < 0) goto fail;
        if (en == 0) { decline = 1; continue; }
        epn[j] = (uint8_t)en;
        unsigned cport = (unsigned)r[OFF_CPORT] | (unsigned)r[OFF_CPORT + 1] << 8;
        size_t add = (size_t)h[0].n + (size_t)h[1].n + tlen[g] + 2 * an + (i > 0)
            + digits(ld_u64(r + OFF_NUM)) + 20 + (first % NS % 1000 ? 9 : 6) + (sizeof ITEM_EPOCH - 1) + (size_t)en
            + (sizeof ITEM_DURATION - 1) + 2 * digits(cport) + digits(r[OFF_TTL]);
        if (size > (size_t)PY_SSIZE_T_MAX - add) { PyErr_NoMemory(); goto fail; }
        size += add;
    }
    if (decline) { out = Py_None; Py_INCREF(out); goto done; }

    /* Pass 2: the items */
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!out) goto fail;
    char *o = PyBytes_AS_STRING(out), *out0 = o;
    int64_t last_sec = INT64_MIN;
    char base[40];
    size_t base_n = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = start + j;
        const uint8_t *r = rows + (size_t)i * ROW;
        uint32_t g, p = 0;
        memcpy(&g, gbuf + 4 * i, 4);
        if (pbuf) memcpy(&p, pbuf + 4 * i, 4);
        const piece *t = &tp[(size_t)g * 6];
        piece row_ip;
        if (!pbuf) { row_ip.p = txt + (size_t)j * NTOP_MAX; row_ip.n = txn[j]; }
        const piece *a = pbuf ? &ip[p] : &row_ip;
        uint64_t num = ld_u64(r + OFF_NUM);
        int64_t first = ld_i64(r + OFF_FIRST);
        int64_t sec = first / NS, ns = first % NS; /* first >= NS (pass 1): no floor correction */
        unsigned cport = (unsigned)r[OFF_CPORT] | (unsigned)r[OFF_CPORT + 1] << 8, ttl = r[OFF_TTL];
        if (sec != last_sec) {
            struct tm tm;
            time_t tt = (time_t)sec;
            if ((int64_t)tt != sec || !gmtime_r(&tt, &tm)) goto decline_now;
            base_n = strftime(base, sizeof base - 1, "%Y-%m-%dT%H:%M:%S", &tm);
            if (base_n != 19) goto decline_now; /* (years 1970..9999: always 19) */
            base[base_n++] = '.';
            last_sec = sec;
        }
        if (i > 0) *o++ = ',';
        PUT(o, h[0].p, h[0].n);
        o += put_u64(o, num);
        PUT(o, h[1].p, h[1].n);
        PUT(o, base, base_n);
        char frac[9]; /* ns's nine digits: one, then four pairs */
        uint32_t f = (uint32_t)ns;
        frac[8] = (char)('0' + f % 10);
        f /= 10;
        for (int k = 6; k >= 0; k -= 2) {
            unsigned q = f % 100;
            f /= 100;
            frac[k] = DIGIT_PAIRS[2 * q];
            frac[k + 1] = DIGIT_PAIRS[2 * q + 1];
        }
        if (ns % 1000) PUT(o, frac, 9);
        else PUT(o, frac, 6);
        LIT(o, ITEM_EPOCH);
        PUT(o, eps + (size_t)j * EPS, epn[j]);
        LIT(o, ITEM_DURATION);
        PUT(o, t[0].p, t[0].n);
        PUT(o, a->p, a->n);
        PUT(o, t[1].p, t[1].n);
        char port[8];
        size_t pn = put_u64(port, cport);
        PUT(o, port, pn);
        PUT(o, t[2].p, t[2].n);
        o += put_u64(o, ttl);
        PUT(o, t[3].p, t[3].n);
        PUT(o, a->p, a->n);
        PUT(o, t[4].p, t[4].n);
        PUT(o, port, pn);
        PUT(o, t[5].p, t[5].n);
    }
    if ((size_t)(o - out0) != size) { /* cannot happen: the sizes above are the writes below */
        PyErr_SetString(PyExc_SystemError, "_jsonrows.items: size mismatch");
        goto fail;
    }
    goto done;
decline_now:
    Py_CLEAR(out);
    out = Py_None;
    Py_INCREF(out);
    goto done;
fail:
    Py_CLEAR(out);
done:
    for (Py_ssize_t g = 0; g < nfilled; g++) Py_XDECREF(ftpls[g]);
    PyMem_Free(ftpls);
    PyMem_Free(tp);
    PyMem_Free(ip);
    PyMem_Free(tlen);
    PyMem_Free(eps);
    PyMem_Free(epn);
    PyMem_Free(txt);
    PyMem_Free(txn);
    Py_XDECREF(fhead);
    Py_XDECREF(ftpl);
    Py_XDECREF(fips);
    if (have_b) PyBuffer_Release(&b);
    if (have_g) PyBuffer_Release(&bg);
    if (have_p) PyBuffer_Release(&bp);
    return out;
}

static PyObject *items(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *head, *templates, *ips, *row_group, *row_pair;
    Py_ssize_t start = 0, stop = -1;
    if (!PyArg_ParseTuple(args, "OOOOOO|nn:items", &data, &head, &templates, &ips, &row_group, &row_pair, &start, &stop))
        return NULL;
    return items_core(data, head, templates, ips, row_group, row_pair, start, stop);
}

static PyObject *items_text(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *head, *templates, *row_group;
    Py_ssize_t start = 0, stop = -1;
    if (!PyArg_ParseTuple(args, "OOOO|nn:items_text", &data, &head, &templates, &row_group, &start, &stop)) return NULL;
    return items_core(data, head, templates, NULL, row_group, NULL, start, stop);
}

/* The test hook: ts_epoch's bytes for one first_ts_ns as items() writes it (path 0), by the general
   path alone (1), or by the exact path alone (2: None where it defers to the general one); None
   where items() would decline the block. */
static PyObject *ts_epoch(PyObject *self, PyObject *args) {
    (void)self;
    long long first;
    int path = 0;
    if (!PyArg_ParseTuple(args, "L|i:_ts_epoch", &first, &path)) return NULL;
    if (path < 0 || path > 2) {
        PyErr_SetString(PyExc_ValueError, "path must be 0, 1 or 2");
        return NULL;
    }
    char rep[40];
    int n = 0;
    if (path != 1 && first >= NS) n = epoch_exact((uint64_t)first, rep);
    if (!n && path != 2) n = epoch_general((int64_t)first, rep);
    if (n < 0) return NULL;
    if (n == 0) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(rep, n);
}

/* ---- connection(): one ordinary record's item ----------------------------------------------------

The C peer of orjson.dumps(jsondoc._conn(c, b)) for one Connection c (a NamedTuple: its fields are
read by position, in CONN_FIELDS' order, which tests/test_json_records.py holds against
Connection._fields) with the back-end's item already encoded by the caller (once per back-end).
Why: on short SMTP sessions the Python dict, orjson, the display filter and the times cost ~25 us a
record, a quarter of a run; here a record is its fields copied and escaped once.

Exactness, or None: the bytes are orjson's for the same record, or the answer is None and the
caller runs the Python path (which then does whatever it does: raises for a record it cannot
write). Declined: a record that is not a 30-field tuple subclass (its dialogue not a 16-field one);
a value that is not None, True/False, an exact int within int64 or an exact str where the document
has a plain value; a str with a lone surrogate (orjson refuses it); an L2 path that is not a tuple
or list of 2-tuples or 2-lists; reply codes not a tuple or list; a first_ts_ns before
1970-01-01T00:00:01 (ts_epoch < 1.0, where repr and orjson part, as in items()); a duration or
banner delay whose difference leaves int64.

Strings: orjson's escaping (\" \\ \b \t \n \f \r, \u00xx lowercase for the other controls below
0x20, nothing else: DEL and non-ASCII are written as UTF-8; json_bytes, after, is the caller's).
Numbers: ints as decimal; ts_epoch by epoch() above; duration = round((last-first)/1e9, 6) and
syn_to_banner_ms = round((banner-first)/1e6, 3) are, for a difference D of ns with |D| < 2^53 and D
mod 1000 != 500, the double nearest to N/10^6 (resp. N/10^3) with N = D/1000 rounded to nearest:
the double nearest to D/10^9 is within half an ulp (< 1 ns there) of D/10^9, which is at least 1 ns
from a rounding boundary, so Python's correctly rounded round() lands on N too; N has at most 13
digits, so N's digits without their trailing zeros are that double's shortest decimal, written in
orjson's (ryu's) layout (put_digits). Other differences: Python's round() of the same double
((double)D / 1e9, as Python's int / float), its repr's digits re-laid in orjson's layout. */

enum { C_UID, C_CAPTURE, C_VANTAGE, C_CLIENT_IP, C_CLIENT_PORT, C_SERVER_IP, C_SERVER_PORT, C_IP_VERSION,
       C_FIRST, C_LAST, C_HISTORY, C_CONN_STATE, C_ORIG_PKTS, C_RESP_PKTS, C_ORIG_BYTES, C_RESP_BYTES,
       C_MISSED, C_ORIG_FWD, C_RESP_FWD, C_ORIG_L2, C_RESP_L2, C_ORIG_TTL, C_RESP_TTL, C_SYN_SEQ,
       C_SYNACK_ACK, C_PACKETS, C_SYN_FRAMES, C_FWD_FRAMES, C_SMTP, C_TUNNELED, C_NFIELDS };
static const char *const CONN_FIELDS[C_NFIELDS] = {
    "uid", "capture", "vantage", "client_ip", "client_port", "server_ip", "server_port", "ip_version",
    "first_ts_ns", "last_ts_ns", "history", "conn_state", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes",
    "missed_bytes", "orig_forwarded", "resp_forwarded", "orig_l2", "resp_l2", "orig_ttl", "resp_ttl", "syn_seq",
    "synack_ack", "packets", "syn_frames", "forwarded_frames", "smtp", "tunneled_from"};
enum { S_CODE, S_TEXT, S_HOST, S_FRAME, S_TS, S_HELO, S_REPLIES, S_COMMANDS, S_TLS_OFFERED, S_TLS_STARTED,
       S_XCLIENT_OFFERED, S_XCLIENT, S_XCLIENT_FRAME, S_XCLIENT_TS, S_PROXY, S_LAST_REPLY, S_NFIELDS };
static const char *const SMTP_FIELDS[S_NFIELDS] = {
    "banner_code", "banner_text", "banner_host", "banner_frame", "banner_ts_ns", "helo", "reply_codes", "commands",
    "starttls_offered", "starttls_started", "xclient_offered", "xclient", "xclient_frame", "xclient_ts_ns", "proxy",
    "last_reply"};

#define OK 0
#define DECLINE 1
#define ERR (-1)

/* The output: a stack buffer first (a record's item is ~1 KiB), the heap past it */
typedef struct {
    char *p;
    size_t n, cap;
    int heap;
    PyObject *bytes;           /* non-NULL: p is this bytes object's buffer (obuf_bytes), grown in place */
} obuf;

static int grow_slow(obuf *o, size_t need) {
    if (need > (size_t)PY_SSIZE_T_MAX / 2 - o->n) { PyErr_NoMemory(); return ERR; }
    size_t cap = o->cap * 2;
    if (cap < o->n + need) cap = o->n + need;
    if (o->bytes) {
        if (_PyBytes_Resize(&o->bytes, (Py_ssize_t)cap) < 0) return ERR;   /* it freed the object */
        o->p = PyBytes_AS_STRING(o->bytes);
        o->cap = cap;
        return OK;
    }
    char *q = o->heap ? PyMem_Realloc(o->p, cap) : PyMem_Malloc(cap);
    if (!q) { PyErr_NoMemory(); return ERR; }
    if (!o->heap) memcpy(q, o->p, o->n);
    o->p = q;
    o->cap = cap;
    o->heap = 1;
    return OK;
}

/* An output written straight into a bytes object of cap bytes (a run's items are ~280 KiB: no
   copy of them into a bytes object at the end) */
static int obuf_bytes(obuf *o, size_t cap) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(cap ? cap : 1));
    if (!b) return ERR;
    *o = (obuf){PyBytes_AS_STRING(b), 0, cap ? cap : 1, 1, b};
    return OK;
}

/* obuf_bytes' result: the bytes written (OK), None (DECLINE) or NULL (ERR, an error set) */
static PyObject *obuf_result(obuf *o, int r) {
    PyObject *b = o->bytes;
    o->bytes = NULL;
    if (r == OK) {
        if (b && _PyBytes_Resize(&b, (Py_ssize_t)o->n) < 0) return NULL;
        return b;
    }
    Py_XDECREF(b);
    if (r == DECLINE) Py_RETURN_NONE;
    return NULL;
}

/* Room for need more bytes */
static inline int grow(obuf *o, size_t need) {
    return need <= o->cap - o->n ? OK : grow_slow(o, need);
}

static inline int w_raw(obuf *o, const char *s, size_t n) {
    if (grow(o, n)) return ERR;
    memcpy(o->p + o->n, s, n);
    o->n += n;
    return OK;
}
#define W_LIT(o, s) w_raw((o), (s), sizeof(s) - 1)

static const char HEX[] = "0123456789abcdef";

/* A str's characters JSON-escaped as orjson does, without quotes; DECLINE for a lone surrogate */
static int w_str_body(obuf *o, PyObject *u) {
    if (PyUnicode_READY(u) < 0) return ERR;
    Py_ssize_t len = PyUnicode_GET_LENGTH(u);
    if ((size_t)len > ((size_t)PY_SSIZE_T_MAX - 8) / 6) { PyErr_NoMemory(); return ERR; }
    int kind = PyUnicode_KIND(u);
    const void *data = PyUnicode_DATA(u);
    Py_ssize_t i = 0;
    if (PyUnicode_IS_ASCII(u)) { /* the common case: the plain head copied whole, the rest (if any) below */
        if (grow(o, (size_t)len)) return ERR;
        const unsigned char *a = data;
        for (; i + 8 <= len; i += 8) {                 /* 8 bytes a step: any < 0x20, '"' or '\\'? */
            uint64_t w;
            memcpy(&w, a + i, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
            /* ASCII (high bits clear): a byte is < 0x20, or 0 after the XOR, exactly where the sum
               borrows into its high bit */
            if (((w - ones * 0x20) | (q - ones) | (b - ones)) & highs) break;
        }
        while (i < len && a[i] >= 0x20 && a[i] != '"' && a[i] != '\\') i++;
        memcpy(o->p + o->n, a, (size_t)i);
        o->n += (size_t)i;
        if (i == len) return OK;
    }
    if (grow(o, (size_t)(len - i) * 6)) return ERR; /* the most a character takes: \u00xx, or 4 UTF-8 bytes */
    char *q = o->p + o->n;
    for (; i < len; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch < 0x80) {
            if (ch >= 0x20 && ch != '"' && ch != '\\') { *q++ = (char)ch; continue; }
            *q++ = '\\';
            switch (ch) {
            case '"': *q++ = '"'; break;
            case '\\': *q++ = '\\'; break;
            case '\b': *q++ = 'b'; break;
            case '\t': *q++ = 't'; break;
            case '\n': *q++ = 'n'; break;
            case '\f': *q++ = 'f'; break;
            case '\r': *q++ = 'r'; break;
            default:
                *q++ = 'u'; *q++ = '0'; *q++ = '0';
                *q++ = HEX[ch >> 4]; *q++ = HEX[ch & 15];
            }
        } else if (ch < 0x800) {
            *q++ = (char)(0xC0 | (ch >> 6));
            *q++ = (char)(0x80 | (ch & 0x3F));
        } else if (ch < 0x10000) {
            if (ch >= 0xD800 && ch <= 0xDFFF) return DECLINE; /* orjson: "str is not valid UTF-8" */
            *q++ = (char)(0xE0 | (ch >> 12));
            *q++ = (char)(0x80 | ((ch >> 6) & 0x3F));
            *q++ = (char)(0x80 | (ch & 0x3F));
        } else {
            *q++ = (char)(0xF0 | (ch >> 18));
            *q++ = (char)(0x80 | ((ch >> 12) & 0x3F));
            *q++ = (char)(0x80 | ((ch >> 6) & 0x3F));
            *q++ = (char)(0x80 | (ch & 0x3F));
        }
    }
    o->n = (size_t)(q - o->p);
    return OK;
}

static int w_i64(obuf *o, int64_t v) {
    if (grow(o, 21)) return ERR;
    char *q = o->p + o->n;
    uint64_t a = (uint64_t)v;
    if (v < 0) { *q++ = '-'; a = 0 - a; }
    q += put_u64(q, a);
    o->n = (size_t)(q - o->p);
    return OK;
}

/* a - b into *out, or 1 where it leaves int64 (no compiler builtin: any C99) */
static int sub_i64(int64_t a, int64_t b, int64_t *out) {
    if ((b < 0 && a > INT64_MAX + b) || (b > 0 && a < INT64_MIN + b)) return 1;
    *out = a - b;
    return 0;
}

/* An exact int within int64 as its value; DECLINE for any other object (a bool included) */
static int as_i64(PyObject *v, int64_t *out) {
    if (!PyLong_CheckExact(v)) return DECLINE;
    int ovf = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &ovf);
    if (ovf) return DECLINE;
    if (x == -1 && PyErr_Occurred()) return ERR;
    *out = (int64_t)x;
    return OK;
}

/* A plain value as orjson writes it: null, true, false, an int, a str */
static int w_val(obuf *o, PyObject *v) {
    if (v == Py_None) return W_LIT(o, "null");
    if (v == Py_True) return W_LIT(o, "true");
    if (v == Py_False) return W_LIT(o, "false");
    if (PyUnicode_CheckExact(v)) {
        if (W_LIT(o, "\"")) return ERR;
        int r = w_str_body(o, v);
        if (r) return r;
        return W_LIT(o, "\"");
    }
    int64_t x;
    int r = as_i64(v, &x);
    if (r) return r;
    return w_i64(o, x);
}

/* The decimal sign * dig[0..len) * 10^exp (len >= 1, dig without leading or trailing zeros) in
   orjson's layout: ryu's "pretty" format64 (1234e7 -> 12340000000.0, 1234e-2 -> 12.34, 1234e-6 ->
   0.001234, 1e30, 1.234e33, 5e-6: a value below 1e-5 or from 1e16 on takes an exponent). */
static int put_digits(obuf *o, int neg, const char *dig, int len, int exp) {
    if (grow(o, (size_t)len + 32)) return ERR;
    char *q = o->p + o->n;
    int kk = len + exp; /* 10^(kk-1) <= value < 10^kk */
    if (neg) *q++ = '-';
    if (exp >= 0 && kk <= 16) {
        memcpy(q, dig, (size_t)len); q += len;
        for (int i = len; i < kk; i++) *q++ = '0';
        *q++ = '.'; *q++ = '0';
    } else if (kk > 0 && kk <= 16) {
        memcpy(q, dig, (size_t)kk); q += kk;
        *q++ = '.';
        memcpy(q, dig + kk, (size_t)(len - kk)); q += len - kk;
    } else if (kk > -5 && kk <= 0) {
        *q++ = '0'; *q++ = '.';
        for (int i = 0; i < -kk; i++) *q++ = '0';
        memcpy(q, dig, (size_t)len); q += len;
    } else {
        *q++ = dig[0];
        if (len > 1) {
            *q++ = '.';
            memcpy(q, dig + 1, (size_t)(len - 1)); q += len - 1;
        }
        *q++ = 'e';
        int e = kk - 1;
        if (e < 0) { *q++ = '-'; e = -e; }
        q += put_u64(q, (uint64_t)e);
    }
    o->n = (size_t)(q - o->p);
    return OK;
}

/* sign * n * 10^exp, n's trailing zeros dropped; n == 0 is 0.0 or -0.0 */
static int put_scaled(obuf *o, int neg, uint64_t n, int exp) {
    if (n == 0) return neg ? W_LIT(o, "-0.0") : W_LIT(o, "0.0");
    while (n % 10 == 0) { n /= 10; exp++; }
    char dig[24];
    int len = (int)put_u64(dig, n);
    return put_digits(o, neg, dig, len, exp);
}

/* Any double as orjson writes it, from Python's repr of it (the same shortest digits: Gay's and
   ryu's shortest round-trip, the nearer where two are as short): its digits and exponent re-laid.
   DECLINE for nan and infinities (orjson's null; round() cannot give them here) */
static int put_double(obuf *o, double x) {
    if (x != x || x > 1.7976931348623157e308 || x < -1.7976931348623157e308) return DECLINE;
    if (x == 0.0) return signbit(x) ? W_LIT(o, "-0.0") : W_LIT(o, "0.0");
    char *rep = PyOS_double_to_string(x, 'r', 0, 0, NULL);
    if (!rep) return ERR;
    char dig[40];
    int len = 0, frac = 0, seen_dot = 0, neg = 0, exp = 0, bad = 0;
    const char *s = rep;
    if (*s == '-') { neg = 1; s++; }
    for (; *s && *s != 'e'; s++) {
        if (*s == '.') { seen_dot = 1; continue; }
        if (*s < '0' || *s > '9' || len >= 39) { bad = 1; break; }
        if (len == 0 && *s == '0') { if (seen_dot) frac++; continue; } /* leading zeros */
        dig[len++] = *s;
        if (seen_dot) frac++;
    }
    if (!bad && *s == 'e') {
        s++;
        int eneg = 0, e = 0;
        if (*s == '+' || *s == '-') eneg = *s++ == '-';
        if (!*s) bad = 1;
        for (; *s; s++) {
            if (*s < '0' || *s > '9' || e > 10000) { bad = 1; break; }
            e = e * 10 + (*s - '0');
        }
        exp = eneg ? -e : e;
    }
    PyMem_Free(rep);
    if (bad || len == 0) return DECLINE;
    exp -= frac;
    while (len > 1 && dig[len - 1] == '0') { len--; exp++; }
    return put_digits(o, neg, dig, len, exp);
}

static PyObject *ROUND_NAME; /* "__round__" */

/* round(D / div, nd) as Python computes it (D an int of ns, div 1e9 or 1e6, nd 6 or 3: a result
   in units of 1000 ns either way), written as orjson writes that float */
static int put_rounded(obuf *o, int64_t D, double div, int nd) {
    uint64_t a = D < 0 ? 0 - (uint64_t)D : (uint64_t)D;
    if (a < (1ULL << 53) && a % 1000 != 500) return put_scaled(o, D < 0, a / 1000 + (a % 1000 > 500), -nd);
    PyObject *x = PyFloat_FromDouble((double)D / div); /* Python's int / float: the int's nearest double, divided */
    if (!x) return ERR;
    PyObject *n = PyLong_FromLong(nd);
    PyObject *r = n ? PyObject_CallMethodOneArg(x, ROUND_NAME, n) : NULL;
    Py_DECREF(x);
    Py_XDECREF(n);
    if (!r) return ERR;
    double y = PyFloat_AsDouble(r);
    Py_DECREF(r);
    if (y == -1.0 && PyErr_Occurred()) return ERR;
    return put_double(o, y);
}

/* format_ts: "YYYY-mm-ddTHH:MM:SS.ffffff[fff]Z" (quoted), strftime cached per second as there */
static int64_t ts_last_sec = INT64_MIN;
static char ts_base[24];

static int put_ts(obuf *o, int64_t first) {
    int64_t sec = first / NS, ns = first % NS; /* first >= NS: no floor correction */
    if (sec != ts_last_sec) {
        struct tm tm;
        time_t tt = (time_t)sec;
        if ((int64_t)tt != sec || !gmtime_r(&tt, &tm)) return DECLINE;
        if (strftime(ts_base, sizeof ts_base, "%Y-%m-%dT%H:%M:%S", &tm) != 19) return DECLINE;
        ts_last_sec = sec;
    }
    if (grow(o, 32)) return ERR;
    char *q = o->p + o->n;
    *q++ = '"';
    memcpy(q, ts_base, 19); q += 19;
    *q++ = '.';
    char frac[9];
    uint32_t f = (uint32_t)ns;
    for (int k = 8; k >= 0; k--) { frac[k] = (char)('0' + f % 10); f /= 10; }
    size_t fn = ns % 1000 ? 9 : 6;
    memcpy(q, frac, fn); q += fn;
    *q++ = 'Z'; *q++ = '"';
    o->n = (size_t)(q - o->p);
    return OK;
}

/* What an f-string writes of a port in conn_filter (f"{p}"): a str as itself, an int as decimal,
   None and bools by name; escaped (the filter is one JSON string) */
static int put_fmt(obuf *o, PyObject *v) {
    if (v == Py_None) return W_LIT(o, "None");
    if (v == Py_True) return W_LIT(o, "True");
    if (v == Py_False) return W_LIT(o, "False");
    if (PyUnicode_CheckExact(v)) return w_str_body(o, v);
    int64_t x;
    int r = as_i64(v, &x);
    if (r) return r;
    return w_i64(o, x);
}

/* wireshark.conn_filter's address field: ipv6.addr when the text holds ':' */
static int put_addr_field(obuf *o, PyObject *ip) {
    Py_ssize_t at = PyUnicode_FindChar(ip, ':', 0, PyUnicode_GET_LENGTH(ip), 1);
    if (at == -2) return ERR;
    return at >= 0 ? W_LIT(o, "ipv6.addr==") : W_LIT(o, "ip.addr==");
}

/* A list or tuple's length and items (a borrowed array), or DECLINE */
static int as_seq(PyObject *v, Py_ssize_t *n, PyObject ***items) {
    if (PyTuple_CheckExact(v)) { *n = PyTuple_GET_SIZE(v); *items = &PyTuple_GET_ITEM(v, 0); return OK; }
    if (PyList_CheckExact(v)) { *n = PyList_GET_SIZE(v); *items = PyList_GET_SIZE(v) ? &PyList_GET_ITEM(v, 0) : NULL; return OK; }
    return DECLINE;
}

/* An L2 path: [{"src":s,"dst":d},...] of 2-tuples (or 2-lists) */
static int put_l2(obuf *o, PyObject *v) {
    Py_ssize_t n;
    PyObject **it;
    int r = as_seq(v, &n, &it);
    if (r) return r;
    if (W_LIT(o, "[")) return ERR;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t m;
        PyObject **pair;
        if ((r = as_seq(it[i], &m, &pair))) return r;
        if (m != 2) return DECLINE;
        if (i && W_LIT(o, ",")) return ERR;
        if (W_LIT(o, "{\"src\":") || (r = w_val(o, pair[0])) || W_LIT(o, ",\"dst\":") || (r = w_val(o, pair[1]))
                || W_LIT(o, "}"))
            return r ? r : ERR;
    }
    return W_LIT(o, "]");
}

/* c.orig_l2[0][0] if c.orig_l2 else None: the first pair's source MAC */
static int put_first_mac(obuf *o, PyObject *v) {
    Py_ssize_t n, m;
    PyObject **it, **pair;
    int r = as_seq(v, &n, &it);
    if (r) return r;
    if (n == 0) return W_LIT(o, "null");
    if ((r = as_seq(it[0], &m, &pair))) return r;
    if (m < 1) return DECLINE;
    return w_val(o, pair[0]);
}

/* An attribute of the proxy header as a plain value; DECLINE where it has none */
static int put_attr(obuf *o, PyObject *obj, const char *name) {
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (!v) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) { PyErr_Clear(); return DECLINE; }
        return ERR;
    }
    int r = w_val(o, v);
    Py_DECREF(v);
    return r;
}

#define T(x) do { int r_ = (x); if (r_) return r_; } while (0)
#define L(s) T(W_LIT(o, s))
#define V(x) T(w_val(o, (x)))

/* One side of the connection: {"ip":..,"port":..,"mac":..,"packets":..,"bytes":..,"ttl":..} */
static int put_side(obuf *o, PyObject *ip, PyObject *port, PyObject *l2, PyObject *pkts, PyObject *bytes, PyObject *ttl) {
    L("{\"ip\":"); V(ip);
    L(",\"port\":"); V(port);
    L(",\"mac\":"); T(put_first_mac(o, l2));
    L(",\"packets\":"); V(pkts);
    L(",\"bytes\":"); V(bytes);
    L(",\"ttl\":"); V(ttl);
    L("}");
    return OK;
}

static int put_smtp(obuf *o, PyObject *s, int64_t first, PyObject *history) {
    if (s == Py_None) { L("null"); return OK; }
    if (!PyTuple_Check(s) || PyTuple_CheckExact(s) || PyTuple_GET_SIZE(s) != S_NFIELDS) return DECLINE;
#define SF(i) PyTuple_GET_ITEM(s, (i))
    L("{\"banner_code\":"); V(SF(S_CODE));
    L(",\"banner\":"); V(SF(S_TEXT));
    L(",\"banner_host\":"); V(SF(S_HOST));
    L(",\"banner_frame\":"); V(SF(S_FRAME));
    L(",\"syn_to_banner_ms\":");
    PyObject *bts = SF(S_TS);
    int64_t banner = 0;
    if (bts != Py_None) T(as_i64(bts, &banner));
    int syn = 0;
    if (banner) { /* `s.banner_ts_ns and c.saw_syn`: saw_syn only asked for a banner time */
        if (!PyUnicode_CheckExact(history)) return DECLINE;
        Py_ssize_t at = PyUnicode_FindChar(history, 'S', 0, PyUnicode_GET_LENGTH(history), 1);
        if (at == -2) return ERR;
        syn = at >= 0;
    }
    if (syn) {
        int64_t d;
        if (sub_i64(banner, first, &d)) return DECLINE;
        T(put_rounded(o, d, 1e6, 3));
    } else L("null");
    L(",\"helo\":"); V(SF(S_HELO));
    L(",\"reply_codes\":[");
    Py_ssize_t n;
    PyObject **it;
    T(as_seq(SF(S_REPLIES), &n, &it));
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i) L(",");
        V(it[i]);
    }
    L("],\"starttls_offered\":"); V(SF(S_TLS_OFFERED));
    L(",\"starttls_started\":"); V(SF(S_TLS_STARTED));
    L(",\"xclient\":"); V(SF(S_XCLIENT));
    L(",\"proxy_protocol\":");
    PyObject *p = SF(S_PROXY);
    if (p == Py_None) L("null");
    else {
        L("{\"version\":"); T(put_attr(o, p, "version"));
        L(",\"client_ip\":"); T(put_attr(o, p, "client_ip"));
        L(",\"client_port\":"); T(put_attr(o, p, "client_port"));
        L("}");
    }
    L("}");
#undef SF
    return OK;
}

static int put_connection(obuf *o, PyObject *c, PyObject *backend) {
    if (!PyTuple_Check(c) || PyTuple_CheckExact(c) || PyTuple_GET_SIZE(c) != C_NFIELDS) return DECLINE;
#define F(i) PyTuple_GET_ITEM(c, (i))
    int64_t first, last, dur;
    T(as_i64(F(C_FIRST), &first));
    T(as_i64(F(C_LAST), &last));
    if (first < NS || sub_i64(last, first, &dur)) return DECLINE;
    PyObject *cip = F(C_CLIENT_IP), *sip = F(C_SERVER_IP);
    if (!PyUnicode_CheckExact(cip) || !PyUnicode_CheckExact(sip)) return DECLINE; /* conn_filter's `":" in ip` */
    L("{\"uid\":"); V(F(C_UID));
    L(",\"vantage\":"); V(F(C_VANTAGE));
    L(",\"capture\":"); V(F(C_CAPTURE));
    L(",\"ts\":"); T(put_ts(o, first));
    L(",\"ts_epoch\":");
    T(grow(o, EPS));
    int en = epoch(first, o->p + o->n);
    if (en < 0) return ERR;
    if (en == 0) return DECLINE;
    o->n += (size_t)en;
    L(",\"duration\":"); T(put_rounded(o, dur, 1e9, 6));
    L(",\"ip_version\":"); V(F(C_IP_VERSION));
    L(",\"client\":");
    T(put_side(o, cip, F(C_CLIENT_PORT), F(C_ORIG_L2), F(C_ORIG_PKTS), F(C_ORIG_BYTES), F(C_ORIG_TTL)));
    L(",\"server\":");
    T(put_side(o, sip, F(C_SERVER_PORT), F(C_RESP_L2), F(C_RESP_PKTS), F(C_RESP_BYTES), F(C_RESP_TTL)));
    L(",\"l2_path\":{\"client_to_server\":"); T(put_l2(o, F(C_ORIG_L2)));
    L(",\"server_to_client\":"); T(put_l2(o, F(C_RESP_L2)));
    L(",\"forwarded_copies\":"); V(F(C_ORIG_FWD));
    L("},\"history\":"); V(F(C_HISTORY));
    L(",\"conn_state\":"); V(F(C_CONN_STATE));
    L(",\"tunneled_from\":"); V(F(C_TUNNELED));
    L(",\"missed_bytes\":"); V(F(C_MISSED));
    L(",\"display_filter\":\"");
    T(put_addr_field(o, cip)); T(w_str_body(o, cip));
    L(" && tcp.port=="); T(put_fmt(o, F(C_CLIENT_PORT)));
    L(" && "); T(put_addr_field(o, sip)); T(w_str_body(o, sip));
    L(" && tcp.port=="); T(put_fmt(o, F(C_SERVER_PORT)));
    L("\",\"backend\":");
    T(w_raw(o, PyBytes_AS_STRING(backend), (size_t)PyBytes_GET_SIZE(backend)));
    L(",\"smtp\":"); T(put_smtp(o, F(C_SMTP), first, F(C_HISTORY)));
    L("}");
#undef F
    return OK;
}

#define OBUF_STACK 4096

static PyObject *connection(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "connection() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *c = args[0], *backend = args[1];
    if (!PyBytes_Check(backend)) {
        PyErr_Format(PyExc_TypeError, "backend must be bytes (the encoded back-end), not %.100s", Py_TYPE(backend)->tp_name);
        return NULL;
    }
    char stack[OBUF_STACK];
    obuf o = {stack, 0, sizeof stack, 0};
    int r = put_connection(&o, c, backend);
    PyObject *out = NULL;
    if (r == OK) out = PyBytes_FromStringAndSize(o.p, (Py_ssize_t)o.n);
    else if (r == DECLINE) { out = Py_None; Py_INCREF(out); }
    if (o.heap) PyMem_Free(o.p);
    return out;
}

/* connections(records, backends) -> bytes | None: b",".join(connection(c, b) for each pair), or None
   when connection() declines any of them (the caller then writes that batch one record at a time).
   Why a batch: one call per record, its bytes object, the caller's comma and json_bytes scan cost
   more than writing the item (200k sessions: ~2 us a record in Python around ~1 us in C). Each
   record and back-end is held while it is written; a list changed meanwhile is an error. */
static PyObject *connections(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *recs, *backs;
    if (!PyArg_ParseTuple(args, "O!O!:connections", &PyList_Type, &recs, &PyList_Type, &backs)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(recs);
    if (PyList_GET_SIZE(backs) != n) {
        PyErr_SetString(PyExc_ValueError, "connections(): records and backends differ in length");
        return NULL;
    }
    obuf o;
    if (obuf_bytes(&o, (size_t)(n ? n : 1) * 1200) < 0) return NULL;   /* ~1.1 KiB an item: one allocation, usually */
    int r = OK;
    for (Py_ssize_t k = 0; k < n && r == OK; k++) {
        if (PyList_GET_SIZE(recs) != n || PyList_GET_SIZE(backs) != n) {
            PyErr_SetString(PyExc_RuntimeError, "connections(): a list changed while it was written");
            r = ERR;
            break;
        }
        PyObject *c = PyList_GET_ITEM(recs, k), *b = PyList_GET_ITEM(backs, k);
        if (!PyBytes_Check(b)) {
            PyErr_Format(PyExc_TypeError, "backend must be bytes (the encoded back-end), not %.100s", Py_TYPE(b)->tp_name);
            r = ERR;
            break;
        }
        Py_INCREF(c);
        Py_INCREF(b);
        if (k) r = W_LIT(&o, ",");
        if (r == OK) r = put_connection(&o, c, b);
        Py_DECREF(c);
        Py_DECREF(b);
    }
    return obuf_result(&o, r);
}

/* connections_by(records, item_of) -> bytes | None: connections(records, [item_of(c) for c in
   records]), asking item_of only once per distinct back-end key in the call. The key is what
   Context.backend_of reads of a record (orig_l2, resp_l2, orig_forwarded > 0, server_ip,
   smtp.banner_host), compared by identity: records unpacked from one store batch share each
   distinct value as one object, so identical parts mean an equal key and the same back-end (equal
   values in different objects only cost another call). The cache holds its key objects and items
   until the call returns, so an address is never reused under it. item_of(c) returns the encoded
   back-end (bytes) or None: then None is returned (the caller writes the records one at a time).
   Why: a Python step per record to look its back-end up cost as much as writing its item. */
#define BY_KEYS 8
typedef struct { PyObject *o_l2, *r_l2, *sip, *host, *item; int fwd; } by_key;

static void by_clear(by_key *k, int n) {
    for (int i = 0; i < n; i++) {
        Py_XDECREF(k[i].o_l2); Py_XDECREF(k[i].r_l2); Py_XDECREF(k[i].sip); Py_XDECREF(k[i].host); Py_XDECREF(k[i].item);
    }
}

static PyObject *connections_by(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *recs, *item_of;
    if (!PyArg_ParseTuple(args, "OO:connections_by", &recs, &item_of)) return NULL;
    if (!PyList_CheckExact(recs) && !PyTuple_CheckExact(recs)) {
        PyErr_SetString(PyExc_TypeError, "connections_by(): records must be a list or a tuple");
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(recs);
    obuf o;
    if (obuf_bytes(&o, (size_t)(n ? n : 1) * 1200) < 0) return NULL;   /* a record's item is ~1.1 KiB */
    Py_INCREF(recs);
    by_key keys[BY_KEYS];
    int nkeys = 0, next = 0, r = OK;
    for (Py_ssize_t k = 0; k < n && r == OK; k++) {
        if (PySequence_Fast_GET_SIZE(recs) != n) {
            PyErr_SetString(PyExc_RuntimeError, "connections_by(): the list changed while it was written");
            r = ERR;
            break;
        }
        PyObject *c = PySequence_Fast_GET_ITEM(recs, k);
        if (!PyTuple_Check(c) || PyTuple_CheckExact(c) || PyTuple_GET_SIZE(c) != C_NFIELDS) { r = DECLINE; break; }
        Py_INCREF(c);
        PyObject *s = PyTuple_GET_ITEM(c, C_SMTP), *host = Py_None;
        if (s != Py_None) {
            if (!PyTuple_Check(s) || PyTuple_CheckExact(s) || PyTuple_GET_SIZE(s) != S_NFIELDS) { Py_DECREF(c); r = DECLINE; break; }
            host = PyTuple_GET_ITEM(s, S_HOST);
        }
        int64_t fwd;
        if ((r = as_i64(PyTuple_GET_ITEM(c, C_ORIG_FWD), &fwd))) { Py_DECREF(c); break; }
        PyObject *o_l2 = PyTuple_GET_ITEM(c, C_ORIG_L2), *r_l2 = PyTuple_GET_ITEM(c, C_RESP_L2),
                 *sip = PyTuple_GET_ITEM(c, C_SERVER_IP), *item = NULL;
        for (int i = 0; i < nkeys; i++) {
            by_key *e = &keys[i];
            if (e->o_l2 == o_l2 && e->r_l2 == r_l2 && e->sip == sip && e->host == host && e->fwd == (fwd > 0)) { item = e->item; break; }
        }
        if (!item) {
            item = PyObject_CallOneArg(item_of, c);
            if (!item) { Py_DECREF(c); r = ERR; break; }
            if (item == Py_None) { Py_DECREF(item); Py_DECREF(c); r = DECLINE; break; }
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError, "item_of() must return bytes or None, not %.100s", Py_TYPE(item)->tp_name);
                Py_DECREF(item); Py_DECREF(c); r = ERR; break;
            }
            by_key *e;
            if (nkeys < BY_KEYS) e = &keys[nkeys++];
            else {  /* full: the oldest entry goes */
                e = &keys[next];
                by_clear(e, 1);
                next = (next + 1) % BY_KEYS;
            }
            Py_INCREF(o_l2); Py_INCREF(r_l2); Py_INCREF(sip); Py_INCREF(host);
            *e = (by_key){o_l2, r_l2, sip, host, item, fwd > 0};  /* the cache owns the item's reference */
        }
        if (k) r = W_LIT(&o, ",");
        if (r == OK) r = put_connection(&o, c, item);
        Py_DECREF(c);
    }
    by_clear(keys, nkeys);
    Py_DECREF(recs);
    return obuf_result(&o, r);
}

/* The tests' hooks: a double as connection() writes it (put_double), and round(D/div, nd) */
static PyObject *fmt_double(PyObject *self, PyObject *arg) {
    (void)self;
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) return NULL;
    char stack[128];
    obuf o = {stack, 0, sizeof stack, 0};
    int r = put_double(&o, x);
    PyObject *out = r == OK ? PyBytes_FromStringAndSize(o.p, (Py_ssize_t)o.n) : NULL;
    if (r == DECLINE) { out = Py_None; Py_INCREF(out); }
    if (o.heap) PyMem_Free(o.p);
    return out;
}

static PyObject *fmt_rounded(PyObject *self, PyObject *args) {
    (void)self;
    long long d;
    int ms = 0;
    if (!PyArg_ParseTuple(args, "L|p:_rounded", &d, &ms)) return NULL;
    char stack[128];
    obuf o = {stack, 0, sizeof stack, 0};
    int r = put_rounded(&o, (int64_t)d, ms ? 1e6 : 1e9, ms ? 3 : 6);
    PyObject *out = r == OK ? PyBytes_FromStringAndSize(o.p, (Py_ssize_t)o.n) : NULL;
    if (r == DECLINE) { out = Py_None; Py_INCREF(out); }
    if (o.heap) PyMem_Free(o.p);
    return out;
}

static PyMethodDef methods[] = {
    {"_ts_epoch", ts_epoch, METH_VARARGS,
     "_ts_epoch(first_ns, path=0) -> bytes | None: items()' ts_epoch text; path 1 general, 2 exact (the tests' hook)"},
    {"connection", (PyCFunction)(void (*)(void))connection, METH_FASTCALL,
     "connection(c, backend) -> bytes | None: orjson.dumps(jsondoc._conn(c, b)) with backend the encoded "
     "back-end item, or None where the Python path must write this record"},
    {"connections", connections, METH_VARARGS,
     "connections(records, backends) -> bytes | None: b','.join(connection(c, b) for each pair), or None "
     "where connection() declines any record of the batch"},
    {"connections_by", connections_by, METH_VARARGS,
     "connections_by(records, item_of) -> bytes | None: connections(records, [item_of(c) for c in records]), "
     "item_of asked once per distinct back-end key (by identity) in the call; None where any record declines "
     "or item_of returns None"},
    {"_double", fmt_double, METH_O, "_double(x) -> bytes | None: a float as connection() writes it (the tests' hook)"},
    {"_rounded", fmt_rounded, METH_VARARGS,
     "_rounded(d_ns, ms=False) -> bytes | None: round(d/1e9, 6) (ms: round(d/1e6, 3)) as connection() writes it"},
    {"items", items, METH_VARARGS,
     "items(rows, head, templates, ips, row_group, row_pair, start=0, stop=-1) -> bytes | None: "
     "b','.join(jsondoc._lone_items_py(...)) (of rows start..stop-1, after a comma unless start is 0), "
     "or None where the Python loop must write them"},
    {"items_text", items_text, METH_VARARGS,
     "items_text(rows, head, templates, row_group, start=0, stop=-1) -> bytes | None: items() with each row's "
     "client address written from the row (the text digest's pair_ips holds), so that no pair table is needed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jsonrows",
    "C peers of report/jsondoc.py's connection list items: items() of a block of lone SYNs (_lone_items_py), "
    "connection() of one ordinary record (orjson.dumps(_conn(c, b)))", -1, methods,
    NULL, NULL, NULL, NULL};

/* The field names connection() reads by position, in order: the caller checks them against
   Connection._fields and SmtpDialogue._fields (a record type that changed is never misread) */
static PyObject *names(const char *const *v, int n) {
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(v[i]);
        if (!s) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

PyMODINIT_FUNC PyInit__jsonrows(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (!ROUND_NAME && !(ROUND_NAME = PyUnicode_InternFromString("__round__"))) goto fail;
    PyObject *cf = names(CONN_FIELDS, C_NFIELDS);
    if (!cf || PyModule_AddObject(m, "CONNECTION_FIELDS", cf) < 0) { Py_XDECREF(cf); goto fail; }
    PyObject *sf = names(SMTP_FIELDS, S_NFIELDS);
    if (!sf || PyModule_AddObject(m, "SMTP_FIELDS", sf) < 0) { Py_XDECREF(sf); goto fail; }
    /* items() and items_text() take a row range (start, stop): jsondoc writes a block in pieces */
    if (PyModule_AddIntConstant(m, "ITEM_RANGES", 1) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
