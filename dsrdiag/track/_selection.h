/* Replacement selection (track/_selection.c, the peer of track/selection.py SelectionPy), compiled
   into _conntrack: the module's Selection type. */
#ifndef DSRDIAG_SELECTION_H
#define DSRDIAG_SELECTION_H
#include <Python.h>

extern PyTypeObject SelectionType;
#endif
