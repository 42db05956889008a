"""The private descriptor pool of these stubs (gateway/protocols/protogen.py)."""

from google.protobuf import any_pb2, descriptor_pool, empty_pb2, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
for _wkt in (any_pb2, wrappers_pb2, empty_pb2):
    POOL.AddSerializedFile(_wkt.DESCRIPTOR.serialized_pb)
