#!/usr/bin/env python3
"""Makes the label-photo corpus the scanning tests and the benchmark read.

Each label is drawn by zint (Debian's barcode encoder, with the human-readable line under the
bars), laid on a paper label with address lines, photographed onto a 1280x960 table, then
degraded one way: blur, rotation, perspective, noise, JPEG quality, low contrast, glare, bars
partly covered (digits still legible). The manifest (manifest.json) names, for every photo, the
barcode it shows, its format, the degradation, whether its digits are legible, and the session's
barcodes to match against: the true one among look-alikes (one or two characters apart).

With --bad, it writes the images a scan must refuse instead (bad/): empty, garbage, a cut-off
JPEG, a 40000x40000 PNG (a few hundred kilobytes that would decode to 1.6 GB), a GIF, and an
11 MB file.

Usage: scan-corpus.py OUTDIR [--labels N] [--seed S] [--bad]
Needs: zint, Pillow.
"""
import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

PHOTO = (1280, 960)


def gtin_check(digits):
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def s10_number(rng):
    serial = "".join(rng.choice("0123456789") for _ in range(8))
    weights = [8, 6, 4, 2, 3, 5, 9, 7]
    check = 11 - sum(int(d) * w for d, w in zip(serial, weights)) % 11
    check = 0 if check == 10 else 5 if check == 11 else check
    prefix = rng.choice(["AA", "JB", "OB", "PM", "QB", "LX", "NX"])
    return prefix + serial + str(check) + "BR"


def code(rng, kind):
    """(barcode text, zint symbology number, zint input)."""
    if kind == "s10":
        text = s10_number(rng)
        return text, "code128", 20, text
    if kind == "ean13":
        body = "789" + "".join(rng.choice("0123456789") for _ in range(9))
        return body + gtin_check(body), "ean13", 13, body
    if kind == "upca":
        body = "0" + "".join(rng.choice("0123456789") for _ in range(10))
        return body + gtin_check(body), "upca", 34, body
    if kind == "itf":
        body = "1789" + "".join(rng.choice("0123456789") for _ in range(9))
        return body + gtin_check(body), "itf", 89, body
    if kind == "code39":
        text = "PKG" + "".join(rng.choice("0123456789") for _ in range(7))
        return text, "code39", 8, text
    if kind == "qr":
        text = s10_number(rng)
        return text, "qr", 58, text
    raise ValueError(kind)


def lookalikes(rng, text, count=6):
    """Barcodes one or two characters away from `text` (valid check digits not required)."""
    out = set()
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    while len(out) < count:
        chars = list(text)
        for i in rng.sample(digits, rng.choice([1, 2])):
            chars[i] = rng.choice([d for d in "0123456789" if d != chars[i]])
        candidate = "".join(chars)
        if candidate != text:
            out.add(candidate)
    return sorted(out)


def zint_image(symbology, data, scale):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "code.png")
        args = ["zint", "-b", str(symbology), "-d", data, "--scale", str(scale), "-o", path]
        if symbology != 58:
            args += ["--height", "60"]
        subprocess.run(args, check=True, capture_output=True)
        return Image.open(path).convert("L")


def font(size):
    for path in ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    print("scan-corpus: DejaVuSans not found (fonts-dejavu-core); using Pillow's default font, so the corpus differs", file=sys.stderr)
    return ImageFont.load_default()


def label(rng, code_image, text):
    """A paper shipping label with the code in the middle and lines of address text."""
    width = max(code_image.width + 80, 560)
    height = code_image.height + 230
    paper = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(paper)
    small = font(22)
    draw.text((30, 20), "DESTINATARIO: " + rng.choice(["Maria Souza", "Joao Lima", "Ana Costa", "Pedro Alves"]), fill=20, font=small)
    draw.text((30, 50), "Rua " + rng.choice(["das Flores", "Sete", "Augusta", "do Sol"]) + ", " + str(rng.randint(10, 999)), fill=20, font=small)
    paper.paste(code_image, ((width - code_image.width) // 2, 95))
    draw.text((30, height - 60), "CEP " + "%05d-%03d" % (rng.randint(10000, 99999), rng.randint(0, 999)), fill=20, font=small)
    draw.rectangle([2, 2, width - 3, height - 3], outline=90, width=3)
    return paper


def photo(rng, paper, label_fraction=0.62):
    """The label on a table, at a size where it fills about `label_fraction` of the width."""
    table = Image.new("L", PHOTO, rng.randint(95, 140))
    grain = Image.effect_noise(PHOTO, 14).point(lambda v: v - 128)
    table = Image.blend(table, Image.merge("L", [grain]).point(lambda v: v), 0.08)
    scale = PHOTO[0] * label_fraction / paper.width
    scaled = paper.resize((int(paper.width * scale), int(paper.height * scale)), Image.LANCZOS)
    x = (PHOTO[0] - scaled.width) // 2 + rng.randint(-40, 40)
    y = (PHOTO[1] - scaled.height) // 2 + rng.randint(-40, 40)
    table.paste(scaled, (x, y))
    return table, (x, y, scaled.width, scaled.height)


def bars_bottom(code_image):
    """The share of the code image's height the bars take (the printed line is below)."""
    width, height = code_image.size
    pixels = code_image.load()
    row = height // 3
    def dark_share(y):
        return sum(1 for x in range(width // 3, 2 * width // 3) if pixels[x, y] < 128) / (width / 3)
    base = dark_share(row)
    while row < height - 1 and dark_share(row + 1) > base * 0.6:
        row += 1
    return (row + 1) / height


def bars_box(box, paper, code_image):
    """Where the code's bars are in the photo (x, y, w, h: the bars only), from the label's layout."""
    x, y, w, h = box
    scale = w / paper.width
    code_x = x + (paper.width - code_image.width) // 2 * scale
    code_y = y + 95 * scale
    return code_x, code_y, code_image.width * scale, code_image.height * scale * bars_bottom(code_image)


def degrade(rng, kind, picture, bars):
    if kind == "clean":
        return picture
    if kind == "blur":
        return picture.filter(ImageFilter.GaussianBlur(2.2))
    if kind == "rotate-12":
        return picture.rotate(12, resample=Image.BICUBIC, fillcolor=120)
    if kind == "rotate-90":
        return picture.rotate(90, expand=True)
    if kind == "upside-down":
        return picture.rotate(180)
    if kind == "perspective":
        w, h = picture.size
        # Corners pulled in: the label seen from below and to the side.
        quad = (60, 40, 0, h, w, h - 30, w - 120, 0)
        return picture.transform((w, h), Image.QUAD, quad, resample=Image.BICUBIC, fillcolor=120)
    if kind == "noise":
        noise = Image.effect_noise(picture.size, 40)
        return Image.blend(picture, noise, 0.22)
    if kind == "jpeg-q12":
        return picture  # the quality is the degradation (see save)
    if kind == "low-contrast":
        return picture.point(lambda v: 110 + v * 45 // 255)
    if kind == "glare":
        bx, by, bw, bh = bars
        mask = Image.new("L", picture.size, 0)
        ImageDraw.Draw(mask).ellipse([bx + bw * 0.25, by - bh * 0.1, bx + bw * 0.7, by + bh * 0.85], fill=235)
        mask = mask.filter(ImageFilter.GaussianBlur(18))
        return Image.composite(Image.new("L", picture.size, 255), picture, mask)
    if kind in ("covered", "torn"):
        bx, by, bw, bh = bars
        covered = picture.copy()
        draw = ImageDraw.Draw(covered)
        if kind == "covered":
            # A sticker over the middle of the bars, top to bottom; the printed line under them stays.
            draw.rectangle([bx + bw * 0.3, by - 8, bx + bw * 0.62, by + bh + 1], fill=225)
        else:
            # A torn corner takes half of the bars' height on the right side.
            draw.polygon([(bx + bw * 0.35, by - 5), (bx + bw + 20, by - 5), (bx + bw + 20, by + bh * 0.92), (bx + bw * 0.55, by + bh * 0.8)], fill=130)
        return covered
    raise ValueError(kind)


DEGRADATIONS = ["clean", "blur", "rotate-12", "rotate-90", "upside-down", "perspective", "noise", "jpeg-q12", "low-contrast", "glare", "covered", "torn"]
KINDS = ["s10", "ean13", "upca", "itf", "code39", "qr"]


def many_scans(copies):
    """A progressive JPEG (4000 x 3000, one grey) whose last scan is repeated `copies` times: about
    125 KB, and each scan passes over the whole image (3,000 of them took libjpeg a minute)."""
    plain = io.BytesIO()
    Image.new("L", (4000, 3000), 128).save(plain, "JPEG", progressive=True, quality=90)
    data = plain.getvalue()
    index, last = 2, None
    while index < len(data):
        marker = data[index + 1]
        if marker == 0xD9:
            break
        length = int.from_bytes(data[index + 2:index + 4], "big")
        if marker == 0xDA:
            end = index + 2 + length
            while not (data[end] == 0xFF and data[end + 1] != 0x00 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            last, index = (index, end), end
        else:
            index += 2 + length
    scan = data[last[0]:last[1]]
    return data[:last[1]] + scan * copies + data[last[1]:]


def bad_images(outdir):
    """The refusal set: (file, what a scan must answer)."""
    import struct
    import zlib
    os.makedirs(outdir, exist_ok=True)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    good = io.BytesIO()
    Image.new("L", (640, 480), 200).save(good, "JPEG", quality=90)
    files = {
        "blank.jpg": good.getvalue(),  # a photo with nothing to read (not a refusal: found false)
        "empty.jpg": b"",
        "garbage.jpg": bytes(random.Random(1).getrandbits(8) for _ in range(5000)),
        "truncated.jpg": good.getvalue()[: len(good.getvalue()) // 2],
        "header-only.png": b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 640, 480, 8, 0, 0, 0, 0)),
    }
    # 40000 x 40000 one-bit pixels: every row a filter byte and 5000 zero bytes, compressed as a stream.
    squeeze = zlib.compressobj(9)
    row = b"\x00" * 5001
    idat = b"".join(squeeze.compress(row) for _ in range(40000)) + squeeze.flush()
    files["huge-40000.png"] = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 1, 0, 0, 0, 0))
                               + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    gif = io.BytesIO()
    Image.new("L", (64, 64), 0).save(gif, "GIF")
    files["image.gif"] = gif.getvalue()
    files["eleven-mb.jpg"] = good.getvalue()[:-2] + bytes(11 * 1000 * 1000) + b"\xff\xd9"
    # A photo stored on its side with EXIF orientation 6 (turn a quarter clockwise to view): 120
    # wide and 200 tall as stored, 200 x 120 as seen, with the dark square top left once turned.
    seen = Image.new("L", (200, 120), 255)
    ImageDraw.Draw(seen).rectangle([0, 0, 39, 39], fill=0)
    stored = seen.transpose(Image.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = io.BytesIO()
    stored.save(turned, "JPEG", quality=95, exif=exif.tobytes())
    files["exif-orientation-6.jpg"] = turned.getvalue()
    cmyk = io.BytesIO()
    Image.new("L", (320, 200), 230).convert("CMYK").save(cmyk, "JPEG", quality=90)
    files["cmyk.jpg"] = cmyk.getvalue()  # a print file, not a photo: unsupported
    files["many-scans.jpg"] = many_scans(3000)  # the progressive JPEG exploit: refused, never waited for
    for name, data in files.items():
        with open(os.path.join(outdir, name), "wb") as out:
            out.write(data)
    print("%d bad images in %s" % (len(files), outdir))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--labels", type=int, default=12, help="labels per degradation")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad", action="store_true", help="write the images a scan must refuse")
    args = parser.parse_args()
    if args.bad:
        return bad_images(args.outdir)
    rng = random.Random(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
    manifest = []
    for degradation in DEGRADATIONS:
        for index in range(args.labels):
            kind = KINDS[index % len(KINDS)]
            if degradation in ("covered", "torn") and kind == "qr":
                kind = "s10"  # a QR code has no printed line to fall back on
            text, fmt, symbology, data = code(rng, kind)
            code_image = zint_image(symbology, data, 2 if symbology != 58 else 5)
            paper = label(rng, code_image, text)
            picture, box = photo(rng, paper)
            picture = degrade(rng, degradation, picture, bars_box(box, paper, code_image))
            name = "%s-%02d-%s.%s" % (degradation, index, kind, "png" if index % 4 == 3 else "jpg")
            path = os.path.join(args.outdir, name)
            if name.endswith(".png"):
                picture.save(path, optimize=False)
            else:
                picture.save(path, quality=12 if degradation == "jpeg-q12" else 85)
            known = lookalikes(rng, text) + [text]
            rng.shuffle(known)
            manifest.append({
                "file": name, "barcode": text, "format": fmt, "degradation": degradation,
                # QR codes print no digits; everything else here keeps its printed line legible.
                "legible": kind != "qr", "known": known,
            })
    with open(os.path.join(args.outdir, "manifest.json"), "w") as out:
        json.dump(manifest, out, indent=1)
    print("%d photos in %s" % (len(manifest), args.outdir))


if __name__ == "__main__":
    sys.exit(main())
