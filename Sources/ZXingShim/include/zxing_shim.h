#ifndef ZXING_SHIM_H
#define ZXING_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One barcode zxing-cpp read: its text (UTF-8, NUL-terminated, cut at 255 bytes), its format as
/// zxing-cpp's BarcodeFormat bit, and the corners of where it was found.
typedef struct {
    char text[256];
    int format;
    int x[4];
    int y[4];
} zxs_result;

/// Reads barcodes from an 8-bit grayscale image (`stride` bytes per row). Writes at most
/// `capacity` results into `out` and answers how many it wrote; -1 when zxing-cpp threw.
/// `try_harder` also tries rotations and inverted images (slower).
int zxs_read_gray(const uint8_t *pixels, int width, int height, int stride, int try_harder, zxs_result *out, int capacity);

#ifdef __cplusplus
}
#endif

#endif
