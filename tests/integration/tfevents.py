"""An independent reader (and, for its own tests, writer) of TensorBoard event files.

Shares no code with the C++ writer: the TFRecord framing and CRC32C are implemented here from their
specifications, and the Event protocol buffer is decoded by the python3-protobuf runtime from message
descriptors built here for the subset of tensorboard's event.proto / summary.proto the trainer uses.

TFRecord framing, per record:
    uint64 length (little-endian)
    uint32 masked CRC32C of the 8 length bytes
    byte   data[length]
    uint32 masked CRC32C of data
with masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32), CRC32C = Castagnoli, reflected
polynomial 0x82F63B78. A CRC mismatch, a truncated record, trailing garbage or a field the schema does not know
(a misnumbered or mistyped field of a hand-written encoder) raises TFEventsError.
"""
import struct

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


class TFEventsError(Exception):
    pass


# ---------------------------------------------------------------------------------------------- CRC32C
def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC32C check vector"  # RFC 3720 / the Castagnoli check value
assert crc32c(b"") == 0


# ---------------------------------------------------------------------------------------------- framing
def read_records(raw):
    """The records of a TFRecord byte string, both CRCs of every record verified."""
    out = []
    pos = 0
    n = len(raw)
    while pos < n:
        if n - pos < 12:
            raise TFEventsError(f"truncated record header at offset {pos} ({n - pos} bytes left)")
        header = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
        if hcrc != masked_crc32c(header):
            raise TFEventsError(f"length CRC mismatch at offset {pos}")
        if n - pos - 12 < length + 4:
            raise TFEventsError(f"truncated record at offset {pos}: length {length}, {n - pos - 12} bytes left")
        data = raw[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
        if dcrc != masked_crc32c(data):
            raise TFEventsError(f"data CRC mismatch in the record at offset {pos}")
        out.append(bytes(data))
        pos += 16 + length
    return out


def frame_record(data):
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


# ---------------------------------------------------------------------------------------------- schema
def _file_descriptor():
    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="tfevents_check/event_subset.proto", package="tensorboard",
                                            syntax="proto3")

    def message(name, fields, oneofs=()):
        m = fd.message_type.add(name=name)
        for o in oneofs:
            m.oneof_decl.add(name=o)
        for fname, number, ftype, label, type_name, oneof in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = ".tensorboard." + type_name
            if oneof is not None:
                f.oneof_index = oneof
        return m

    OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    # tensorboard/compat/proto/summary.proto (subset; field numbers and types as there).
    message("SummaryMetadata_PluginData", [
        ("plugin_name", 1, F.TYPE_STRING, OPT, None, None),
        ("content", 2, F.TYPE_BYTES, OPT, None, None)])
    message("SummaryMetadata", [
        ("plugin_data", 1, F.TYPE_MESSAGE, OPT, "SummaryMetadata_PluginData", None),
        ("display_name", 2, F.TYPE_STRING, OPT, None, None),
        ("summary_description", 3, F.TYPE_STRING, OPT, None, None),
        ("data_class", 4, F.TYPE_INT32, OPT, None, None)])  # an enum there: the same varint wire type
    message("Image", [
        ("height", 1, F.TYPE_INT32, OPT, None, None),
        ("width", 2, F.TYPE_INT32, OPT, None, None),
        ("colorspace", 3, F.TYPE_INT32, OPT, None, None),
        ("encoded_image_string", 4, F.TYPE_BYTES, OPT, None, None)])
    message("Value", [
        ("tag", 1, F.TYPE_STRING, OPT, None, None),
        ("simple_value", 2, F.TYPE_FLOAT, OPT, None, 0),
        ("obsolete_old_style_histogram", 3, F.TYPE_BYTES, OPT, None, 0),
        ("image", 4, F.TYPE_MESSAGE, OPT, "Image", 0),
        ("node_name", 7, F.TYPE_STRING, OPT, None, None),
        ("metadata", 9, F.TYPE_MESSAGE, OPT, "SummaryMetadata", None)], oneofs=("value",))
    message("Summary", [("value", 1, F.TYPE_MESSAGE, REP, "Value", None)])
    # tensorboard/compat/proto/event.proto (subset).
    message("Event", [
        ("wall_time", 1, F.TYPE_DOUBLE, OPT, None, None),
        ("step", 2, F.TYPE_INT64, OPT, None, None),
        ("file_version", 3, F.TYPE_STRING, OPT, None, 0),
        ("summary", 5, F.TYPE_MESSAGE, OPT, "Summary", 0)], oneofs=("what",))
    return fd


def _classes():
    fd = _file_descriptor()
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    names = ("Event", "Summary", "Value", "Image")
    descs = {n: pool.FindMessageTypeByName("tensorboard." + n) for n in names}
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return {n: message_factory.GetMessageClass(d) for n, d in descs.items()}
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(d) for n, d in descs.items()}


_CLASSES = _classes()
Event = _CLASSES["Event"]
Summary = _CLASSES["Summary"]
Value = _CLASSES["Value"]
Image = _CLASSES["Image"]


def _unknown_fields(msg):
    try:
        from google.protobuf import unknown_fields  # protobuf >= 4.24
        n = len(unknown_fields.UnknownFieldSet(msg))
    except ImportError:
        n = len(msg.UnknownFields())
    if n:
        return [msg.DESCRIPTOR.full_name]
    found = []
    for fd, value in msg.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            for sub in (value if fd.label == fd.LABEL_REPEATED else [value]):
                found += _unknown_fields(sub)
    return found


def parse_event(data):
    ev = Event()
    try:
        ev.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise TFEventsError(f"not an Event message: {e}") from e
    unknown = _unknown_fields(ev)
    if unknown:
        raise TFEventsError(f"fields the schema does not define in {unknown}")
    return ev


def read_events(path):
    with open(path, "rb") as f:
        raw = f.read()
    return [parse_event(r) for r in read_records(raw)]


# ---------------------------------------------------------------------------------------------- writer
def encode_event(wall_time, step=0, file_version=None, scalars=(), images=()):
    """One serialized Event: scalars are (tag, value), images (tag, height, width, colorspace, png)."""
    ev = Event(wall_time=wall_time, step=step)
    if file_version is not None:
        ev.file_version = file_version
    if scalars or images:
        for tag, v in scalars:
            ev.summary.value.add(tag=tag, simple_value=v)
        for tag, h, w, c, png in images:
            ev.summary.value.add(tag=tag, image=Image(height=h, width=w, colorspace=c, encoded_image_string=png))
    return ev.SerializeToString()


def write_events(path, payloads):
    with open(path, "wb") as f:
        for p in payloads:
            f.write(frame_record(p))


# ---------------------------------------------------------------------------------------------- helpers
def scalars(ev):
    """{tag: value} of an event's simple_value values."""
    return {v.tag: v.simple_value for v in ev.summary.value if v.WhichOneof("value") == "simple_value"}


def images(ev):
    """{tag: Image} of an event's image values."""
    return {v.tag: v.image for v in ev.summary.value if v.WhichOneof("value") == "image"}


def png_size(png):
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise TFEventsError("not a PNG")
    return struct.unpack(">II", png[16:24])
