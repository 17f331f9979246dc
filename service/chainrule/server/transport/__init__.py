"""The transports: gRPC and HTTP (REST, OpenAPI, pages), their instrumentation, status mapping and auth."""
