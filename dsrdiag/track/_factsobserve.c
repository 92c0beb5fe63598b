/* Facts.observe for a batch of records: the C peer of track/facts.py Facts.observe, which defines
 * what is gathered and says why. facts_observe(facts, records, env) takes each record through the
 * same steps, in the same order, on the same tables (the Facts object's own dicts, lists and sets):
 * the two leave equal Facts (tests/test_facts_native.py, on every capture the tests have).
 *
 * Why in C: observe() runs once for every record as the tracker makes it, and on short SMTP
 * sessions it was the largest Python step of a run (0.85 s of 3.3 s of tracking for 200k
 * sessions: building and hashing its keys, a bytecode at a time). The rare steps stay in Python and
 * are called from here where the reference takes them: a failed attempt's details (_attempt) and
 * the forwarding MACs of an L2 path not seen before (_forwarding_of). A record that is not exactly
 * what the trackers make (another type, another dialogue type, an L2 path that is not pairs) goes
 * through the Python observe() whole.
 *
 * env, made by facts.py _native_env() (constants defined there once): FLAGS, HOPS, INITIAL_TTLS,
 * SYN_SRC_MAX, the history bits (SAW_SYN, OPENED, SYNACK, DONE_AFTER_SYNACK, DONE_NO_SYNACK),
 * Attempts, _attempt, _forwarding_of, Connection, SmtpDialogue, the record's field positions (uid,
 * client_ip, client_port, server_ip, server_port, first_ts_ns, history, orig_pkts, resp_pkts,
 * orig_forwarded, orig_l2, resp_l2, orig_ttl, resp_ttl, synack_ack, smtp) and the dialogue's
 * (banner_host, xclient, proxy).
 */
#include "_factsobserve.h"
#include <limits.h>

enum { R_UID, R_CLIENT_IP, R_CLIENT_PORT, R_SERVER_IP, R_SERVER_PORT, R_FIRST, R_HISTORY, R_ORIG_PKTS, R_RESP_PKTS,
       R_ORIG_FWD, R_ORIG_L2, R_RESP_L2, R_ORIG_TTL, R_RESP_TTL, R_SYNACK_ACK, R_SMTP, R_FIELDS };
enum { D_HOST, D_XCLIENT, D_PROXY, D_FIELDS };

typedef struct { PyObject *key, *got; } memo_t;   /* see memo_hit() */

typedef struct {
    PyObject *facts, *flags, *hops, *initial, *attempts_type, *attempt, *forwarding_of;
    PyTypeObject *conn, *dlg;
    Py_ssize_t syn_src_max, conn_size, dlg_size;
    long saw_syn, opened, synack, done_after, done_no;
    Py_ssize_t at[R_FIELDS], dat[D_FIELDS];
    /* the Facts object's tables (borrowed from it: it holds them for the call) */
    PyObject *syn_dst, *syn_ports, *syn_src, *attempts, *replies, *sides, *paths, *fw;
    memo_t m_dst, m_src, m_att, m_sides, m_paths;
    PyObject *last_history, *empty;       /* the last history string and its bits; () */
    long last_flags;
} st_t;

static PyObject *s_syns, *s_forwarded, *s_answered_forwarded, *s_carried, *s_observe;

/* an L2 path as the trackers make it: a tuple of pairs (its first pair is read) */
static int l2_ok(PyObject *t) {
    if (!PyTuple_CheckExact(t)) return 0;
    if (!PyTuple_GET_SIZE(t)) return 1;
    PyObject *p = PyTuple_GET_ITEM(t, 0);
    return PyTuple_CheckExact(p) && PyTuple_GET_SIZE(p) == 2;
}

/* the record's field i (borrowed) */
#define F(S, c, i) PyTuple_GET_ITEM((c), (S)->at[(i)])

/* HOPS.get(ttl): new reference (None when absent) */
static PyObject *hops_of(st_t *S, PyObject *ttl) {
    PyObject *h = PyDict_GetItemWithError(S->hops, ttl);
    if (!h) {
        if (PyErr_Occurred()) return NULL;
        h = Py_None;
    }
    Py_INCREF(h);
    return h;
}

/* A record's place, (first_ts_ns, uid): made only when a table keeps it (most records are not
   the first of their entry, and the comparison below needs no tuple). */
typedef struct { PyObject *ts, *uid, *tuple; } place_t;

static PyObject *place(place_t *p) {
    if (!p->tuple) p->tuple = PyTuple_Pack(2, p->ts, p->uid);
    return p->tuple;
}

/* (ts, uid) < was, as tuples compare; the common case (ints that differ) without a tuple */
static int place_lt(place_t *p, PyObject *was) {
    if (PyTuple_CheckExact(was) && PyTuple_GET_SIZE(was) == 2) {
        PyObject *a = PyTuple_GET_ITEM(was, 0);
        if (PyLong_CheckExact(a) && PyLong_CheckExact(p->ts)) {
            int oa, ob;
            long long x = PyLong_AsLongLongAndOverflow(p->ts, &oa), y = PyLong_AsLongLongAndOverflow(a, &ob);
            if (!oa && !ob && !PyErr_Occurred()) {
                if (x != y) return x < y;
                return PyObject_RichCompareBool(p->uid, PyTuple_GET_ITEM(was, 1), Py_LT);
            }
            PyErr_Clear();
        }
    }
    PyObject *t = place(p);
    return t ? PyObject_RichCompareBool(t, was, Py_LT) : -1;
}

/* got[0] += 1; got[1] = min(got[1], place) (facts.py _seen_n's step on an entry already there) */
static int bump(PyObject *got, place_t *p) {
    if (PyList_CheckExact(got) && PyList_GET_SIZE(got) == 2 && PyLong_CheckExact(PyList_GET_ITEM(got, 0))) {
        PyObject *n = PyList_GET_ITEM(got, 0);
        int over;
        long long v = PyLong_AsLongLongAndOverflow(n, &over);
        PyObject *sum = !over && v != -1 && v < LLONG_MAX ? PyLong_FromLongLong(v + 1) : NULL;
        if (sum) {
            PyList_SET_ITEM(got, 0, sum);
            Py_DECREF(n);
            int lt = place_lt(p, PyList_GET_ITEM(got, 1));
            if (lt <= 0) return lt;
            PyObject *t = place(p), *old = PyList_GET_ITEM(got, 1);
            if (!t) return -1;
            Py_INCREF(t);
            PyList_SET_ITEM(got, 1, t);
            Py_DECREF(old);
            return 0;
        }
        if (PyErr_Occurred()) return -1;
    }
    /* anything else (an entry of another shape, a huge count): as Python does it */
    PyObject *c = PySequence_GetItem(got, 0), *one = PyLong_FromLong(1);
    PyObject *sum = c && one ? PyNumber_Add(c, one) : NULL;
    Py_XDECREF(c);
    Py_XDECREF(one);
    if (!sum) return -1;
    int r = PySequence_SetItem(got, 0, sum);
    Py_DECREF(sum);
    if (r < 0) return -1;
    PyObject *was = PySequence_GetItem(got, 1);
    if (!was) return -1;
    int lt = place_lt(p, was);
    Py_DECREF(was);
    if (lt <= 0) return lt;
    PyObject *t = place(p);
    return t ? PySequence_SetItem(got, 1, t) : -1;
}

/* table[key] = [1, place]: the new entry (borrowed: the table holds it) */
static PyObject *put_new(PyObject *table, PyObject *key, place_t *p) {
    PyObject *t = place(p);
    PyObject *one = t ? PyLong_FromLong(1) : NULL;
    PyObject *v = one ? PyList_New(2) : NULL;
    if (!v) { Py_XDECREF(one); return NULL; }
    PyList_SET_ITEM(v, 0, one);
    Py_INCREF(t);
    PyList_SET_ITEM(v, 1, t);
    int r = PyDict_SetItem(table, key, v);
    Py_DECREF(v);
    return r < 0 ? NULL : v;
}

/* The last key a table was asked for and its entry: consecutive records of one service share
   their server, port, L2 path and banner host as the same objects (the tracker shares them,
   track/intern.py), so the key is found again by the identity of its items, without a tuple made
   and hashed. Equal items give an equal key, so the entry is the one the lookup would find; the
   memo holds references to both (nothing is removed from the tables during a call). */
static void memo_clear(memo_t *m) { Py_CLEAR(m->key); Py_CLEAR(m->got); }

static int memo_hit(const memo_t *m, PyObject *const *items, Py_ssize_t n) {
    if (!m->key || PyTuple_GET_SIZE(m->key) != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyTuple_GET_ITEM(m->key, i) != items[i]) return 0;
    return 1;
}

static void memo_set(memo_t *m, PyObject *key, PyObject *got) {
    Py_INCREF(key);
    Py_INCREF(got);
    memo_clear(m);
    m->key = key;
    m->got = got;
}

/* the entry of the key of items[0..n): *key_out, when not NULL, gets the key made (a new
   reference, or NULL on a memo hit); returns the entry (borrowed), NULL and no error: absent */
static PyObject *find(PyObject *table, memo_t *m, PyObject *const *items, Py_ssize_t n, PyObject **key_out) {
    *key_out = NULL;
    if (memo_hit(m, items, n)) return m->got;
    PyObject *key = PyTuple_New(n);
    if (!key) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) { Py_INCREF(items[i]); PyTuple_SET_ITEM(key, i, items[i]); }
    *key_out = key;
    PyObject *got = PyDict_GetItemWithError(table, key);
    if (got) memo_set(m, key, got);
    return got;
}

/* facts.py _seen_n(table, key, place, 1), the key made of items[0..n) */
static int seen_1(PyObject *table, memo_t *m, PyObject *const *items, Py_ssize_t n, place_t *p) {
    PyObject *key;
    PyObject *got = find(table, m, items, n, &key);
    int r;
    if (got) r = bump(got, p);
    else if (PyErr_Occurred()) r = -1;
    else if ((got = put_new(table, key, p))) { memo_set(m, key, got); r = 0; }
    else r = -1;
    Py_XDECREF(key);
    return r;
}

static int set_true(PyObject *o, PyObject *name) { return PyObject_SetAttr(o, name, Py_True); }

/* the SYN steps: syn_dst, syn_ports, syn_src, attempts */
static int syn_steps(st_t *S, PyObject *c, place_t *p, long f, PyObject *host, PyObject *o_hops, int resp) {
    PyObject *ip = F(S, c, R_SERVER_IP), *port = F(S, c, R_SERVER_PORT);
    PyObject *dst[2] = {ip, port}, *key;
    int r = 0;
    PyObject *got = find(S->syn_dst, &S->m_dst, dst, 2, &key);
    if (got) r = bump(got, p);
    else if (PyErr_Occurred() || !(got = put_new(S->syn_dst, key, p))) r = -1;
    else {
        memo_set(&S->m_dst, key, got);
        PyObject *ports = PyDict_GetItemWithError(S->syn_ports, ip);
        if (ports) Py_INCREF(ports);
        else if (PyErr_Occurred()) r = -1;
        else if (!(ports = PySet_New(NULL)) || PyDict_SetItem(S->syn_ports, ip, ports) < 0) r = -1;
        if (!r) r = PySet_Add(ports, port);
        Py_XDECREF(ports);
    }
    Py_XDECREF(key);
    if (r) return -1;
    PyObject *o_l2 = F(S, c, R_ORIG_L2), *r_l2 = F(S, c, R_RESP_L2);
    PyObject *o0 = PyTuple_GET_SIZE(o_l2) ? PyTuple_GET_ITEM(o_l2, 0) : NULL;
    PyObject *r0 = PyTuple_GET_SIZE(r_l2) ? PyTuple_GET_ITEM(r_l2, 0) : NULL;
    PyObject *src[8] = {ip, port, F(S, c, R_CLIENT_IP), o0 ? PyTuple_GET_ITEM(o0, 0) : Py_None, o0 ? PyTuple_GET_ITEM(o0, 1) : Py_None,
                        r0 ? PyTuple_GET_ITEM(r0, 0) : Py_None, host, o_hops};
    got = find(S->syn_src, &S->m_src, src, 8, &key);
    if (got) r = bump(got, p);
    else if (PyErr_Occurred()) r = -1;
    else if (PyDict_GET_SIZE(S->syn_src) < S->syn_src_max) {
        if ((got = put_new(S->syn_src, key, p))) memo_set(&S->m_src, key, got);
        else r = -1;
    }
    Py_XDECREF(key);
    if (r || !(f & S->opened)) return r;
    /* the client's SYN opened it: an attempt */
    PyObject *v = find(S->attempts, &S->m_att, dst, 2, &key);
    if (v) Py_INCREF(v);
    else if (PyErr_Occurred() || !(v = PyObject_CallNoArgs(S->attempts_type)) || PyDict_SetItem(S->attempts, key, v) < 0) {
        Py_XDECREF(v);
        Py_XDECREF(key);
        return -1;
    } else memo_set(&S->m_att, key, v);
    Py_XDECREF(key);
    PyObject *syns = PyObject_GetAttr(v, s_syns), *one = PyLong_FromLong(1);
    PyObject *more = syns && one ? PyNumber_Add(syns, one) : NULL;
    Py_XDECREF(syns);
    Py_XDECREF(one);
    r = more ? PyObject_SetAttr(v, s_syns, more) : -1;
    Py_XDECREF(more);
    if (!r && !(f & S->done_after || (f & S->done_no && !resp))) {   /* handshake_done(): not */
        PyObject *fl = PyLong_FromLong(f);
        PyObject *out = fl ? PyObject_CallFunctionObjArgs(S->attempt, v, S->facts, c, fl, NULL) : NULL;
        Py_XDECREF(fl);
        if (!out) r = -1;
        Py_XDECREF(out);
    }
    Py_DECREF(v);
    return r;
}

/* observe() of one record of the trackers' kind; 1: not of that kind (the caller defers it) */
static int observe_one(st_t *S, PyObject *c) {
    if (Py_TYPE(c) != S->conn || PyTuple_GET_SIZE(c) != S->conn_size) return 1;
    PyObject *s = F(S, c, R_SMTP);
    if (s != Py_None && (Py_TYPE(s) != S->dlg || PyTuple_GET_SIZE(s) != S->dlg_size)) return 1;
    if (!l2_ok(F(S, c, R_ORIG_L2)) || !l2_ok(F(S, c, R_RESP_L2))) return 1;
    PyObject *history = F(S, c, R_HISTORY);
    if (!PyUnicode_CheckExact(history)) return 1;
    long f;
    if (history == S->last_history) f = S->last_flags;   /* the tracker shares one string per history */
    else {
        PyObject *fo = PyObject_GetItem(S->flags, history);
        if (!fo) return -1;
        f = PyLong_AsLong(fo);
        Py_DECREF(fo);
        if (f == -1 && PyErr_Occurred()) return -1;
        Py_INCREF(history);
        Py_XSETREF(S->last_history, history);
        S->last_flags = f;
    }
    place_t p = {F(S, c, R_FIRST), F(S, c, R_UID), NULL};
    PyObject *ip = F(S, c, R_SERVER_IP), *port = F(S, c, R_SERVER_PORT);
    PyObject *host = s != Py_None ? PyTuple_GET_ITEM(s, S->dat[D_HOST]) : Py_None;
    PyObject *o_hops = hops_of(S, F(S, c, R_ORIG_TTL)), *fw = NULL;
    PyObject *o_l2 = F(S, c, R_ORIG_L2), *r_l2 = F(S, c, R_RESP_L2);
    int r = o_hops ? 0 : -1, resp = 0;
    if (!r && (resp = PyObject_IsTrue(F(S, c, R_RESP_PKTS))) < 0) r = -1;
    if (!r) {
        if (f & S->saw_syn) r = syn_steps(S, c, &p, f, host, o_hops, resp);
        else if (f & S->synack) {
            PyObject *r0 = PyTuple_GET_SIZE(r_l2) ? PyTuple_GET_ITEM(PyTuple_GET_ITEM(r_l2, 0), 0) : Py_None;
            PyObject *pl = place(&p);
            PyObject *t = pl ? PyTuple_Pack(8, pl, F(S, c, R_CLIENT_IP), F(S, c, R_CLIENT_PORT), port, F(S, c, R_SYNACK_ACK),
                                            r0, ip, host) : NULL;
            r = t ? PyList_Append(S->replies, t) : -1;
            Py_XDECREF(t);
        }
    }
    PyObject *resp_ttl = F(S, c, R_RESP_TTL);
    if (!r) {
        int o = PyObject_IsTrue(F(S, c, R_ORIG_PKTS));
        if (o < 0) r = -1;
        else if (o) {
            PyObject *r_hops = resp ? hops_of(S, resp_ttl) : (Py_INCREF(Py_None), Py_None);
            PyObject *side[4] = {ip, port, o_hops, r_hops};
            r = r_hops ? seen_1(S->sides, &S->m_sides, side, 4, &p) : -1;
            Py_XDECREF(r_hops);
        }
    }
    if (!r) {
        int fwd = PyObject_IsTrue(F(S, c, R_ORIG_FWD));
        if (fwd < 0) r = -1;
        else if (fwd) {
            r = set_true(S->facts, s_forwarded);
            if (!r && resp) r = set_true(S->facts, s_answered_forwarded);
            if (!r) {
                fw = PyDict_GetItemWithError(S->fw, o_l2);
                if (fw) Py_INCREF(fw);
                else if (PyErr_Occurred() || !(fw = PyObject_CallOneArg(S->forwarding_of, c)) || PyDict_SetItem(S->fw, o_l2, fw) < 0)
                    r = -1;
            }
        } else {
            fw = S->empty;
            Py_INCREF(fw);
        }
    }
    if (!r && s != Py_None) {   /* carried: a PROXY header or XCLIENT (the flag read only then) */
        int x = PyTuple_GET_ITEM(s, S->dat[D_PROXY]) != Py_None ? 1 : PyObject_IsTrue(PyTuple_GET_ITEM(s, S->dat[D_XCLIENT]));
        if (x < 0) r = -1;
        else if (x) {
            PyObject *now = PyObject_GetAttr(S->facts, s_carried);
            int was = now ? PyObject_IsTrue(now) : -1;
            Py_XDECREF(now);
            r = was < 0 ? -1 : was ? 0 : set_true(S->facts, s_carried);
        }
    }
    if (!r) {
        int init = PySet_Contains(S->initial, resp_ttl);
        PyObject *path[6] = {ip, o_l2, fw, r_l2, init ? Py_True : Py_False, host};
        r = init < 0 ? -1 : seen_1(S->paths, &S->m_paths, path, 6, &p);
    }
    Py_XDECREF(fw);
    Py_XDECREF(o_hops);
    Py_XDECREF(p.tuple);
    return r;
}

static int intern_names(void) {
    return (s_syns || (s_syns = PyUnicode_InternFromString("syns")))
        && (s_forwarded || (s_forwarded = PyUnicode_InternFromString("forwarded")))
        && (s_answered_forwarded || (s_answered_forwarded = PyUnicode_InternFromString("answered_forwarded")))
        && (s_carried || (s_carried = PyUnicode_InternFromString("carried")))
        && (s_observe || (s_observe = PyUnicode_InternFromString("observe"))) ? 0 : -1;
}

static int positions(PyObject *t, Py_ssize_t *out, Py_ssize_t n, Py_ssize_t size) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != n) {
        PyErr_SetString(PyExc_TypeError, "facts_observe: env's field positions do not match");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, i));
        if (out[i] == -1 && PyErr_Occurred()) return -1;
        if (out[i] < 0 || out[i] >= size) {
            PyErr_SetString(PyExc_ValueError, "facts_observe: a field position outside the record");
            return -1;
        }
    }
    return 0;
}

/* the Facts object's table `name` (a new reference), of the type the reference makes */
static PyObject *table(PyObject *facts, const char *name, PyTypeObject *tp) {
    PyObject *t = PyObject_GetAttrString(facts, name);
    if (t && !PyObject_TypeCheck(t, tp)) {
        PyErr_Format(PyExc_TypeError, "facts_observe: Facts.%s is not a %s", name, tp->tp_name);
        Py_CLEAR(t);
    }
    return t;
}

PyObject *fo_facts_observe(PyObject *mod, PyObject *args) {
    PyObject *facts, *records, *env, *bits, *fields, *dfields;
    st_t S = {0};
    if (!PyArg_ParseTuple(args, "OOO!", &facts, &records, &PyTuple_Type, &env) || intern_names() < 0) return NULL;
    if (PyTuple_GET_SIZE(env) != 12) { PyErr_SetString(PyExc_TypeError, "facts_observe: env of 12 items"); return NULL; }
    S.facts = facts;
    S.flags = PyTuple_GET_ITEM(env, 0);
    S.hops = PyTuple_GET_ITEM(env, 1);
    S.initial = PyTuple_GET_ITEM(env, 2);
    S.syn_src_max = PyLong_AsSsize_t(PyTuple_GET_ITEM(env, 3));
    bits = PyTuple_GET_ITEM(env, 4);
    S.attempts_type = PyTuple_GET_ITEM(env, 5);
    S.attempt = PyTuple_GET_ITEM(env, 6);
    S.forwarding_of = PyTuple_GET_ITEM(env, 7);
    S.conn = (PyTypeObject *)PyTuple_GET_ITEM(env, 8);
    S.dlg = (PyTypeObject *)PyTuple_GET_ITEM(env, 9);
    fields = PyTuple_GET_ITEM(env, 10);
    dfields = PyTuple_GET_ITEM(env, 11);
    if (S.syn_src_max == -1 && PyErr_Occurred()) return NULL;
    if (!PyDict_Check(S.hops) || !PyAnySet_Check(S.initial) || !PyType_Check((PyObject *)S.conn) || !PyType_Check((PyObject *)S.dlg)
        || !PyType_IsSubtype(S.conn, &PyTuple_Type) || !PyType_IsSubtype(S.dlg, &PyTuple_Type)
        || !PyTuple_Check(bits) || PyTuple_GET_SIZE(bits) != 5) {
        PyErr_SetString(PyExc_TypeError, "facts_observe: env is not facts.py _native_env()");
        return NULL;
    }
    long *b[5] = {&S.saw_syn, &S.opened, &S.synack, &S.done_after, &S.done_no};
    for (int i = 0; i < 5; i++) {
        *b[i] = PyLong_AsLong(PyTuple_GET_ITEM(bits, i));
        if (*b[i] == -1 && PyErr_Occurred()) return NULL;
    }
    /* the record types' sizes: their fields (a NamedTuple's _fields) */
    PyObject *cf = PyObject_GetAttrString((PyObject *)S.conn, "_fields"), *df = PyObject_GetAttrString((PyObject *)S.dlg, "_fields");
    S.conn_size = cf && PyTuple_Check(cf) ? PyTuple_GET_SIZE(cf) : -1;
    S.dlg_size = df && PyTuple_Check(df) ? PyTuple_GET_SIZE(df) : -1;
    Py_XDECREF(cf);
    Py_XDECREF(df);
    if (S.conn_size < 0 || S.dlg_size < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "facts_observe: the record types are not NamedTuples");
        return NULL;
    }
    if (positions(fields, S.at, R_FIELDS, S.conn_size) < 0 || positions(dfields, S.dat, D_FIELDS, S.dlg_size) < 0) return NULL;
    PyObject *seq = PySequence_Fast(records, "facts_observe: records must be a sequence");
    if (!seq) return NULL;
    PyObject *out = NULL, *observe = NULL;
    int r = (S.empty = PyTuple_New(0)) ? 0 : -1;
    if (!r && (!(S.syn_dst = table(facts, "syn_dst", &PyDict_Type)) || !(S.syn_ports = table(facts, "syn_ports", &PyDict_Type))
        || !(S.syn_src = table(facts, "syn_src", &PyDict_Type)) || !(S.attempts = table(facts, "attempts", &PyDict_Type))
        || !(S.replies = table(facts, "replies", &PyList_Type)) || !(S.sides = table(facts, "sides", &PyDict_Type))
        || !(S.paths = table(facts, "paths", &PyDict_Type)) || !(S.fw = table(facts, "_fw", &PyDict_Type))))
        r = -1;
    /* a snapshot (PySequence_Fast of a list is the list: its items are read by index, each checked) */
    for (Py_ssize_t i = 0; !r && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(c);
        r = observe_one(&S, c);
        if (r == 1) {   /* not the trackers' kind: the reference, whole */
            if (!observe && !(observe = PyObject_GetAttr(facts, s_observe))) r = -1;
            else {
                PyObject *x = PyObject_CallOneArg(observe, c);
                r = x ? 0 : -1;
                Py_XDECREF(x);
            }
        }
        Py_DECREF(c);
    }
    if (!r) { out = Py_None; Py_INCREF(out); }
    memo_clear(&S.m_dst); memo_clear(&S.m_src); memo_clear(&S.m_att); memo_clear(&S.m_sides); memo_clear(&S.m_paths);
    Py_XDECREF(S.last_history);
    Py_XDECREF(S.empty);
    Py_XDECREF(observe);
    Py_XDECREF(S.syn_dst); Py_XDECREF(S.syn_ports); Py_XDECREF(S.syn_src); Py_XDECREF(S.attempts);
    Py_XDECREF(S.replies); Py_XDECREF(S.sides); Py_XDECREF(S.paths); Py_XDECREF(S.fw);
    Py_DECREF(seq);
    return out;
}
