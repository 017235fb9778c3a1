"""gomaproxy: a goma-compatible remote compile proxy for REAPI v2 backends.

Layers, from the wire inwards: ``goma`` (HTTP frontend, body codecs, FileBlobs, the file
store), ``exec`` (the adapter that turns an ExecReq into a REAPI action and back),
``remote`` (the Backend interface and CAS transfers), ``local`` (the embedded backend),
``client`` (the ``gomaproxy cc`` launcher).  ``proxy.open_proxy`` wires them together.
"""

__version__ = "0.1.0"
