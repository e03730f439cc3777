"""Generated protobuf and gRPC stubs for the arcp.v1 contract. DO NOT EDIT."""
