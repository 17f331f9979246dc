"""The chainrule server: parser, engine, cache and the gRPC and HTTP transports."""
