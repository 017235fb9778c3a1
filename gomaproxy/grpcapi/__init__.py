"""gRPC services that gomaproxy serves, through the bridge in ``gomaproxy.remote.bridge``."""
