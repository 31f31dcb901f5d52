"""Re-frame OpenPGP packets in the new (RFC 9580 4.2.1) header format.

GnuPG 2.2 writes some packets (PKESK) with old-format headers; the chatmail
encryption rule accepts new-format headers only, as Delta Chat writes them.
The packet bodies stay byte for byte the same, so the result still decrypts.
Usage: reframe.py < armored > armored
"""
import base64
import sys


def new_len(n):
    if n < 192:
        return bytes([n])
    if n < 8384:
        n -= 192
        return bytes([(n >> 8) + 192, n & 0xFF])
    return b"\xff" + n.to_bytes(4, "big")


def reframe(data):
    out, i = bytearray(), 0
    while i < len(data):
        ctb = data[i]
        if ctb & 0xC0 == 0xC0:  # already new format: copy through
            j = i + 1
            while 224 <= data[j] < 255:
                j += 1 + (1 << (data[j] & 0x1F))
            if data[j] < 192:
                j += 1 + data[j]
            elif data[j] < 224:
                j += 2 + ((data[j] - 192) << 8) + data[j + 1] + 192
            else:
                j += 5 + int.from_bytes(data[j + 1 : j + 5], "big")
            out += data[i:j]
            i = j
            continue
        tag, lt = (ctb >> 2) & 0x0F, ctb & 3
        if lt == 3:
            n, hl = len(data) - i - 1, 1
        else:
            w = (1, 2, 4)[lt]
            n, hl = int.from_bytes(data[i + 1 : i + 1 + w], "big"), 1 + w
        out += bytes([0xC0 | tag]) + new_len(n) + data[i + hl : i + hl + n]
        i += hl + n
    return bytes(out)


def crc24(data):
    crc = 0xB704CE
    for b in data:
        crc ^= b << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def rearmor(text):
    lines = text.strip().splitlines()
    body = [l for l in lines[1:-1] if l and not l.startswith("=") and ":" not in l]
    data = reframe(base64.b64decode("".join(body)))
    b64 = base64.b64encode(data).decode()
    rows = [b64[k : k + 64] for k in range(0, len(b64), 64)]
    crc = base64.b64encode(crc24(data).to_bytes(3, "big")).decode()
    return (
        "-----BEGIN PGP MESSAGE-----\n\n"
        + "\n".join(rows)
        + "\n="
        + crc
        + "\n-----END PGP MESSAGE-----\n"
    )


if __name__ == "__main__":
    sys.stdout.write(rearmor(sys.stdin.read()))
