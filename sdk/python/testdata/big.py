"""For batches: the input "<KiB>:<c>" answers <KiB> KiB of the character c."""


def handle(data, ctx):
    kib, c = data.split(b":")
    return c * (int(kib) * 1024)
