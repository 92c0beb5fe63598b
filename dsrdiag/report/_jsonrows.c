/* The C peer of report/jsondoc.py's _lone_items_py: the JSON list items of a block of lone SYNs.

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

Checks: a buffer that is not whole 104-byte rows is a ValueError; a row's group or pair index
outside templates or ips, or row_group/row_pair shorter than the rows, an IndexError (raised before
anything else is looked at: a caller's bug, not a row this writer declines); templates that are not
6 bytes objects, head not 2, ips not bytes: TypeError/ValueError. Every loop is bounded by the row
count or a piece's length. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ROW 104
#define OFF_NUM 0
#define OFF_FIRST 16
#define OFF_LAST 24
#define OFF_CPORT 72
#define OFF_TTL 100
#define NS 1000000000LL

/* The little-endian uint64 at p (rows are little-endian, on any host; memcpy: no unaligned load) */
static uint64_t ld_u64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

static int64_t ld_i64(const uint8_t *p) {
    uint64_t u = ld_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

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


static PyObject *items(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *head, *templates, *ips, *row_group, *row_pair;
    if (!PyArg_ParseTuple(args, "OOOOOO:items", &data, &head, &templates, &ips, &row_group, &row_pair)) return NULL;
    Py_buffer b, bg, bp;
    int have_b = 0, have_g = 0, have_p = 0;
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
    if (PyObject_GetBuffer(row_pair, &bp, PyBUF_SIMPLE) < 0) goto fail;
    have_p = 1;
    if (b.len % ROW) {
        PyErr_Format(PyExc_ValueError, "rows: length %zd is not a multiple of %d", b.len, ROW);
        goto fail;
    }
    if (bg.len % 4 || bp.len % 4) {
        PyErr_SetString(PyExc_ValueError, "row_group and row_pair must be buffers of uint32");
        goto fail;
    }
    Py_ssize_t n = b.len / ROW;
    if (bg.len / 4 < n || bp.len / 4 < n) {
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
    if (!(fips = PySequence_Fast(ips, "ips must be a sequence"))) goto fail;
    Py_ssize_t nips = PySequence_Fast_GET_SIZE(fips);
    ip = PyMem_Malloc((size_t)(nips ? nips : 1) * sizeof *ip);
    if (!ip) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t k = 0; k < nips; k++)
        if (as_piece(PySequence_Fast_GET_ITEM(fips, k), &ip[k], "an ip") < 0) goto fail;

    /* Pass 1: indexes in range (IndexError, whichever row), rows this writer formats (else None),
       each row's ts_epoch text (kept: pass 2 copies it), the exact size (an exact allocation: the
       caller frees blocks of about one size, which malloc then reuses without new pages). */
    const uint8_t *rows = b.buf;
    const char *gbuf = bg.buf, *pbuf = bp.buf;
    size_t size = 0;
    int decline = 0;
    for (Py_ssize_t g = 0; g < ntpl; g++) {
        size_t tl = 0;
        for (int k = 0; k < 6; k++) tl += (size_t)tp[g * 6 + k].n;
        tlen[g] = tl;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t g, p;
        memcpy(&g, gbuf + 4 * i, 4);
        memcpy(&p, pbuf + 4 * i, 4);
        if ((uint64_t)g >= (uint64_t)ntpl) {
            PyErr_Format(PyExc_IndexError, "row %zd: group %u has no template (%zd)", i, (unsigned)g, ntpl);
            goto fail;
        }
        if ((uint64_t)p >= (uint64_t)nips) {
            PyErr_Format(PyExc_IndexError, "row %zd: pair %u has no ip (%zd)", i, (unsigned)p, nips);
            goto fail;
        }
        if (decline) continue;
        const uint8_t *r = rows + (size_t)i * ROW;
        int64_t first = ld_i64(r + OFF_FIRST), last = ld_i64(r + OFF_LAST);
        /* a second <= 0, a year past 9999 (10000-01-01 is second 253402300800), a duration: Python's */
        if (first < NS || first / NS >= 253402300800LL || last != first) { decline = 1; continue; }
        int en = epoch(first, eps + (size_t)i * EPS);
        if (en < 0) goto fail;
        if (en == 0) { decline = 1; continue; }
        epn[i] = (uint8_t)en;
        unsigned cport = (unsigned)r[OFF_CPORT] | (unsigned)r[OFF_CPORT + 1] << 8;
        size_t add = (size_t)h[0].n + (size_t)h[1].n + tlen[g] + 2 * (size_t)ip[p].n + (i ? 1 : 0)
            + digits(ld_u64(r + OFF_NUM)) + 20 + (first % NS % 1000 ? 9 : 6) + (sizeof ITEM_EPOCH - 1) + (size_t)en
            + (sizeof ITEM_DURATION - 1) + 2 * digits(cport) + digits(r[OFF_TTL]);
        if (size > (size_t)PY_SSIZE_T_MAX - add) { PyErr_NoMemory(); goto fail; }
        size += add;
    }
    if (decline) { out = Py_None; Py_INCREF(out); goto done; }

    /* Pass 2: the items */
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!out) goto fail;
    char *o = PyBytes_AS_STRING(out), *start = o;
    int64_t last_sec = INT64_MIN;
    char base[40];
    size_t base_n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *r = rows + (size_t)i * ROW;
        uint32_t g, p;
        memcpy(&g, gbuf + 4 * i, 4);
        memcpy(&p, pbuf + 4 * i, 4);
        const piece *t = &tp[(size_t)g * 6];
        const piece *a = &ip[p];
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
        if (i) *o++ = ',';
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
        PUT(o, eps + (size_t)i * EPS, epn[i]);
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
    if ((size_t)(o - start) != size) { /* cannot happen: the sizes above are the writes below */
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
    Py_XDECREF(fhead);
    Py_XDECREF(ftpl);
    Py_XDECREF(fips);
    if (have_b) PyBuffer_Release(&b);
    if (have_g) PyBuffer_Release(&bg);
    if (have_p) PyBuffer_Release(&bp);
    return out;
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

static PyMethodDef methods[] = {
    {"_ts_epoch", ts_epoch, METH_VARARGS,
     "_ts_epoch(first_ns, path=0) -> bytes | None: items()' ts_epoch text; path 1 general, 2 exact (the tests' hook)"},
    {"items", items, METH_VARARGS,
     "items(rows, head, templates, ips, row_group, row_pair) -> bytes | None: "
     "b','.join(jsondoc._lone_items_py(...)), or None where the Python loop must write the block"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jsonrows",
    "C peer of report/jsondoc.py's _lone_items_py (the JSON items of a block of lone SYNs).", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jsonrows(void) { return PyModule_Create(&module); }
