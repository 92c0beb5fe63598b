"""Only for the optional C reader, tracker and SMTP follower (dsrdiag/capture/_fastpcap.c,
dsrdiag/track/_conntrack.c, dsrdiag/track/_smtpfollow.c, dsrdiag/track/_storepack.c,
dsrdiag/track/_factsobserve.c, dsrdiag/track/_selection.c);
everything else is in pyproject.toml.

Two extension modules, one per layer: the capture walker (capture/_fastpcap) knows nothing of the
tracker (track/_conntrack); the tracker hands the walker a sink (capture/_sink.h) at run time.

optional=True: where no C compiler or Python headers exist, the install still succeeds and
dsrdiag reads captures in Python (classic pcap through pcapy-ng's libpcap) and tracks in Python
instead, slower but with the same results.
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-std=c99"]
setup(ext_modules=[
    Extension("dsrdiag.capture._fastpcap", ["dsrdiag/capture/_fastpcap.c"], depends=["dsrdiag/capture/_sink.h"],
              optional=True, extra_compile_args=_FLAGS),
    Extension("dsrdiag.track._conntrack", ["dsrdiag/track/_conntrack.c", "dsrdiag/track/_smtpfollow.c", "dsrdiag/track/_storepack.c",
                                          "dsrdiag/track/_factsobserve.c", "dsrdiag/track/_selection.c"],
              depends=["dsrdiag/capture/_sink.h", "dsrdiag/track/_conntrack.h", "dsrdiag/track/_smtpfollow.h", "dsrdiag/track/_lonerow.h",
                       "dsrdiag/track/_storepack.h", "dsrdiag/track/_factsobserve.h",
                       "dsrdiag/track/_selection.h"],
              optional=True, extra_compile_args=_FLAGS),
    Extension("dsrdiag.track._lonerows", ["dsrdiag/track/_lonerows.c"], depends=["dsrdiag/track/_ntop.h", "dsrdiag/track/_lonerow.h"], optional=True,
              extra_compile_args=_FLAGS),
    Extension("dsrdiag.report._jsonrows", ["dsrdiag/report/_jsonrows.c"], depends=["dsrdiag/track/_ntop.h", "dsrdiag/track/_lonerow.h"], optional=True,
              extra_compile_args=_FLAGS),
])
