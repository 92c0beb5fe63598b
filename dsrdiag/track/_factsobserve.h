/* Facts.observe over a batch of records (track/_factsobserve.c, the peer of track/facts.py
   Facts.observe), compiled into _conntrack: the module's facts_observe. */
#ifndef DSRDIAG_FACTSOBSERVE_H
#define DSRDIAG_FACTSOBSERVE_H
#include <Python.h>

PyObject *fo_facts_observe(PyObject *mod, PyObject *args);
#endif
