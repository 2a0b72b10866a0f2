"""Image sizes read from the encoded bytes' headers, in TensorFlow ops, before any decoding.

A decompression bomb is small on the wire and huge decoded (a 20,000 x 20,000 PNG of one
colour compresses to a few hundred KB and decodes to 1.2 GB). The serving graph and
``keras-resnet predict`` read each image's width and height from its header and refuse
one over ``max_image_pixels`` before the decoder allocates anything:

- PNG: the IHDR chunk (bytes 16-23, big-endian);
- JPEG: the frame header (SOFn), found by ``tf.image.extract_jpeg_shape`` (libjpeg reads
  the header only);
- GIF: the logical screen (bytes 6-9, little-endian);
- BMP: the DIB header's 32-bit width and height, as TensorFlow's decoder reads them;
- WebP: the VP8 key frame, the VP8L header or the VP8X canvas;
- JPEG XL: the codestream's SizeHeader (bare, or in a ``jxlc`` / ``jxlp`` box).
"""

from __future__ import annotations

from keras_resnet.utils import MAX_IMAGE_PIXELS as DEFAULT_MAX_IMAGE_PIXELS  # noqa: F401

FORMAT_NAMES = ("JPEG", "PNG", "GIF", "BMP", "WebP", "JPEG XL", "JPEG XL")
# Leading bytes of the formats tf.io.decode_image reads, in FORMAT_NAMES order: (offset,
# magic) pairs that must all match.
SIGNATURES = (
    ((0, b"\xff\xd8\xff"),),
    ((0, b"\x89PNG\r\n\x1a\n"),),
    ((0, b"GIF8"),),
    ((0, b"BM"),),
    ((0, b"RIFF"), (8, b"WEBP")),
    ((0, b"\xff\x0a"),),  # JPEG XL codestream
    ((0, b"\x00\x00\x00\x0cJXL \r\n\x87\n"),),  # JPEG XL container
)
NOT_AN_IMAGE = "is not a decodable image (expected JPEG, PNG, GIF, BMP, WebP or JPEG XL bytes)"
_PAD = 64  # bytes appended so that a fixed-size read never runs past the end
_MAX_BOXES = 16  # JPEG XL container boxes looked at before the codestream


def format_index(data):
    """Index into FORMAT_NAMES of the bytes' format, or -1 (int32 scalar)."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 16), b"\x00" * 16]), 0, 16)
    index = tf.constant(-1)
    for i in reversed(range(len(SIGNATURES))):
        ok = tf.reduce_all(tf.stack([tf.equal(tf.strings.substr(head, offset, len(magic)), magic)
                                     for offset, magic in SIGNATURES[i]]))
        index = tf.where(ok, i, index)
    return index


def _reader(data):
    """``read(offset, n)``: n bytes (n <= 64) from ``offset`` as int64, zeros past the end."""
    import tensorflow as tf

    padded = tf.strings.join([data, b"\x00" * _PAD])
    length = tf.cast(tf.strings.length(data), tf.int64)

    def read(offset, n):
        offset = tf.clip_by_value(tf.cast(offset, tf.int64), 0, length)
        chunk = tf.strings.substr(padded, offset, n)
        return tf.reshape(tf.cast(tf.io.decode_raw(chunk, tf.uint8), tf.int64), [n])

    return read, length


def _number(b, little_endian=True):
    import tensorflow as tf

    n = b.shape[0]
    shifts = tf.constant([8 * (i if little_endian else n - 1 - i) for i in range(n)], tf.int64)
    return tf.reduce_sum(tf.bitwise.left_shift(b, shifts))


def _png(read, length):
    b = read(12, 12)
    ihdr = _number(b[:4], False) == 0x49484452  # "IHDR"
    return _number(b[4:8], False), _number(b[8:12], False), ihdr & (length >= 24)


def _gif(read, length):
    b = read(6, 4)
    return _number(b[:2]), _number(b[2:4]), length >= 10


def _bmp(read, length):
    import tensorflow as tf

    # as TensorFlow's decoder reads them, whatever the DIB header's size: 32-bit width and
    # height, a negative height meaning top-down
    b = read(18, 8)

    def signed(v):
        return tf.abs(tf.where(v >= 2**31, v - 2**32, v))

    return signed(_number(b[:4])), signed(_number(b[4:8])), length >= 26


def _webp(read, length):
    import tensorflow as tf

    b = read(12, 18)  # chunk FourCC (12-15), chunk size, then the chunk's first bytes (20-29)
    fourcc = _number(b[:4], False)
    lossy = (fourcc == 0x56503820) & (_number(b[11:14], False) == 0x9D012A)  # "VP8 ", start code
    lossless = (fourcc == 0x5650384C) & (b[8] == 0x2F)  # "VP8L", signature byte
    extended = fourcc == 0x56503858  # "VP8X"
    bits = _number(b[9:13])
    width = tf.where(lossy, _number(b[14:16]) % 16384,
                     tf.where(lossless, bits % 16384 + 1, _number(b[12:15]) + 1))
    height = tf.where(lossy, _number(b[16:18]) % 16384,
                      tf.where(lossless, (bits // 16384) % 16384 + 1, _number(b[15:18]) + 1))
    return width, height, (lossy | lossless | extended) & (length >= 30)


def _jxl_size(read, start):
    """Width and height from a JPEG XL codestream's SizeHeader (ISO/IEC 18181-1, bits
    little-endian) starting at byte ``start`` (the 0xFF 0x0A signature)."""
    import tensorflow as tf

    b = read(start + 2, 16)
    k = tf.range(30, dtype=tf.int64)

    def bits(pos, n):
        index = pos + k
        bit = tf.bitwise.bitwise_and(
            tf.bitwise.right_shift(tf.gather(b, index // 8), index % 8), 1)
        return tf.reduce_sum(tf.where(k < n, tf.bitwise.left_shift(bit, k), 0))

    def u32(pos):  # U32(Bits(9) + 1, Bits(13) + 1, Bits(18) + 1, Bits(30) + 1)
        count = tf.gather(tf.constant([9, 13, 18, 30], tf.int64), bits(pos, 2))
        return bits(pos + 2, count) + 1, pos + 2 + count

    small = bits(0, 1) == 1
    height_u32, pos_u32 = u32(tf.constant(1, tf.int64))
    height = tf.where(small, 8 * (bits(1, 5) + 1), height_u32)
    pos = tf.where(small, tf.constant(6, tf.int64), pos_u32)
    ratio = bits(pos, 3)
    width_u32, _ = u32(pos + 3)
    free_width = tf.where(small, 8 * (bits(pos + 3, 5) + 1), width_u32)
    numerator = tf.gather(tf.constant([1, 1, 12, 4, 3, 16, 5, 2], tf.int64), ratio)
    denominator = tf.gather(tf.constant([1, 1, 10, 3, 2, 9, 4, 1], tf.int64), ratio)
    width = tf.where(ratio == 0, free_width, height * numerator // denominator)
    return width, height


def _jxl_codestream(read, length):
    import tensorflow as tf

    width, height = _jxl_size(read, tf.constant(0, tf.int64))
    return width, height, length >= 12


def _jxl_container(read, length):
    """Walk the ISO BMFF boxes after the signature box to the first jxlc / jxlp box."""
    import tensorflow as tf

    def step(pos, start, steps):
        b = read(pos, 16)
        size, kind = _number(b[:4], False), _number(b[4:8], False)
        header = tf.where(size == 1, tf.constant(16, tf.int64), 8)
        size = tf.where(size == 1, _number(b[8:16], False), tf.where(size == 0, length - pos, size))
        found = tf.where(kind == 0x6A786C63, pos + header,  # "jxlc"
                         tf.where(kind == 0x6A786C70, pos + header + 4, -1))  # "jxlp": + index
        bad = size < header
        return (pos + tf.maximum(size, header), found,
                tf.where(bad | (found >= 0), _MAX_BOXES, steps + 1))

    _, start, _ = tf.while_loop(
        lambda pos, start, steps: (steps < _MAX_BOXES) & (pos + 8 <= length),
        step, (tf.constant(12, tf.int64), tf.constant(-1, tf.int64), tf.constant(0)))
    width, height = _jxl_size(read, tf.maximum(start, 0))
    return width, height, (start >= 0) & (start + 4 <= length)


def _jpeg(data):
    import tensorflow as tf

    shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)  # header only; errors if corrupt
    return shape[1], shape[0], tf.constant(True)


def header_size(data, index):
    """``(width, height, readable)`` int64/int64/bool from ``data``'s header, where
    ``index`` = :func:`format_index` (>= 0)."""
    import tensorflow as tf

    read, length = _reader(data)
    parsers = [lambda: _jpeg(data)] + [
        (lambda parse=parse: parse(read, length))
        for parse in (_png, _gif, _bmp, _webp, _jxl_codestream, _jxl_container)
    ]
    return tf.switch_case(tf.maximum(index, 0), parsers)


def check_image_header(data, index, max_pixels):
    """Assert ops: ``data`` is an image of a known format whose header gives its size, at
    most ``max_pixels`` pixels (None: no limit). ``index`` names the image in messages
    (``image_bytes[i]``). Run them as control dependencies of the decode."""
    import tensorflow as tf

    kind = format_index(data)
    checks = [tf.debugging.Assert(kind >= 0, [tf.strings.format("image_bytes[{}] " + NOT_AN_IMAGE, index)],
                                  name="check_image_bytes")]
    if max_pixels is None:
        return checks
    with tf.control_dependencies(checks):
        width, height, readable = header_size(data, kind)
    name = tf.gather(tf.constant(FORMAT_NAMES), tf.maximum(kind, 0))
    checks.append(tf.debugging.Assert(readable, [tf.strings.format(
        "image_bytes[{}] is a {} whose header gives no image size (truncated or corrupt)",
        (index, name))], name="check_image_header"))
    with tf.control_dependencies(checks):
        pixels = width * height
        over = tf.strings.format(
            "image_bytes[{}] is {}x{} pixels ({} megapixels), over the limit of "
            "max_image_pixels={} (" + f"{max_pixels / 1e6:g}" + " megapixels)",
            (index, width, height, pixels // 1_000_000, tf.constant(max_pixels, tf.int64)))
        checks.append(tf.debugging.Assert(pixels <= max_pixels, [over], name="check_image_pixels"))
    return checks
