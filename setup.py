"""Only for the optional C reader, tracker and SMTP follower (dsrdiag/capture/_fastpcap.c,
dsrdiag/track/_conntrack.c, dsrdiag/track/_smtpfollow.c);
everything else is in pyproject.toml.

optional=True: where no C compiler or Python headers exist, the install still succeeds and
dsrdiag reads classic pcap through pcapy-ng (libpcap) and tracks in Python instead, slower but with
the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dsrdiag.capture._fastpcap", ["dsrdiag/capture/_fastpcap.c", "dsrdiag/track/_conntrack.c",
                                                      "dsrdiag/track/_smtpfollow.c"],
                             depends=["dsrdiag/track/_conntrack.h", "dsrdiag/track/_smtpfollow.h"],
                             optional=True, extra_compile_args=["-O2", "-std=c99"])])
