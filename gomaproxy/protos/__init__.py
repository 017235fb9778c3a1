"""Protobuf and grpclib modules generated from proto/gomaproxy/protos/ by scripts/gen_protos.py."""
